"""Two ways to score sentences against themes, both returning a sentences x themes matrix.

- :class:`EmbeddingThemeScorer` (default, offline): one MiniLM pass per batch of sentences,
  one for the theme descriptions, then cosine similarities (an encoder with ``queries`` embeds
  the descriptions with that one, and one with ``calibrate`` maps the cosines first: the
  static encoder). A sentence whose best similarity
  is below ``min_similarity`` relates to no theme ("Okay.", "No.") and gets a row of zeros: it
  does not vote. Any other sentence spreads one unit of weight over the themes by a softmax with
  temperature ``tau``.
- :class:`NliThemeScorer`: the transformers zero-shot pipeline over an NLI model, as the original
  project ran ``valhalla/distilbart-mnli-12-3``: batches of sentences, every (sentence, theme)
  pair one NLI forward, ``multi_label=True`` (an independent entailment probability per theme;
  a sentence entailing no theme is all below 0.5).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from stnlp.common.errors import UserError
from stnlp.plugins.classifier.defaults import NLI_MODEL_ID
from stnlp.plugins.classifier.themes import theme_descriptions
from stnlp.runtime.encoder import SentenceEncoder, load_pretrained

Progress = Callable[[int], None] | None


MIN_SIMILARITY = 0.15
"""Below this best cosine a sentence relates to no theme (chosen in docs/benchmarks.md)."""


class EmbeddingThemeScorer:
    """Softmax over cosine similarities between sentence and theme-description embeddings, for
    the sentences that relate to some theme at all."""

    def __init__(
        self, encoder: SentenceEncoder, tau: float = 0.05, min_similarity: float = MIN_SIMILARITY
    ):
        self.encoder = encoder
        self.tau = tau
        self.min_similarity = min_similarity

    @property
    def method(self) -> str:
        """Identifies the method and its settings (part of the cache key)."""
        return f"embedding:{self.encoder.name}:tau={self.tau}:min={self.min_similarity}"

    def score(
        self, sentences: Sequence[str], themes: Sequence[str], progress: Progress = None
    ) -> torch.Tensor:
        """A ``(len(sentences), len(themes))`` tensor; each row sums to 1, or to 0 for a
        sentence that relates to no theme.

        Repeated sentences are embedded once.
        """
        unique = list(dict.fromkeys(sentences))
        where = {s: i for i, s in enumerate(unique)}
        vectors = self.encoder.encode(unique, progress=progress)
        queries = getattr(self.encoder, "queries", self.encoder)  # static: the full MiniLM
        theme_vectors = queries.encode(theme_descriptions(themes))
        similarity = vectors @ theme_vectors.T
        calibrate = getattr(self.encoder, "calibrate", None)  # static: onto the fp32 scale
        if calibrate is not None:
            similarity = calibrate(similarity)
        relevant = similarity.max(dim=-1, keepdim=True).values >= self.min_similarity
        scores = (similarity / self.tau).softmax(dim=-1) * relevant
        if progress is not None and len(unique) < len(sentences):
            progress(len(sentences) - len(unique))
        return scores[torch.tensor([where[s] for s in sentences], dtype=torch.long)]


class NliThemeScorer:
    """Zero-shot NLI through the transformers pipeline: one forward per (sentence, theme)."""

    def __init__(self, model, tokenizer, name: str, batch_size: int = 20):
        from transformers import pipeline

        self.pipe = pipeline(
            "zero-shot-classification", model=model, tokenizer=tokenizer, device=-1
        )
        self.name = name
        self.batch_size = batch_size

    @classmethod
    def from_hub(cls, model_id: str = NLI_MODEL_ID) -> NliThemeScorer:
        """Load ``model_id`` from the local Hugging Face cache only; a clear error otherwise."""
        from transformers import AutoModelForSequenceClassification

        try:
            model, tokenizer = load_pretrained(model_id, AutoModelForSequenceClassification)
        except OSError as exc:
            raise UserError(
                f"NLI model {model_id!r} is not available offline (no hub access here); "
                "use the default embedding method or download the model first"
            ) from exc
        return cls(model, tokenizer, model_id)

    @property
    def method(self) -> str:
        """Identifies the method and its model (part of the cache key)."""
        return f"nli:{self.name}"

    def score(
        self, sentences: Sequence[str], themes: Sequence[str], progress: Progress = None
    ) -> torch.Tensor:
        """A ``(len(sentences), len(themes))`` tensor of entailment probabilities."""
        rows = []
        for start in range(0, len(sentences), self.batch_size):
            batch = list(sentences[start : start + self.batch_size])
            results = self.pipe(batch, candidate_labels=list(themes), multi_label=True)
            for result in results if isinstance(results, list) else [results]:
                by_label = dict(zip(result["labels"], result["scores"], strict=True))
                rows.append([by_label[t] for t in themes])
            if progress is not None:
                progress(len(batch))
        return torch.tensor(rows, dtype=torch.float32).reshape(len(sentences), len(themes))
