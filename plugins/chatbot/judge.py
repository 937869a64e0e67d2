"""The "who said this?" judge: a speaker-attribution classifier trained on the transcripts.

A reply is in character when a judge that knows how each character speaks attributes it to
the intended one (as role-play chatbot work judges it). The judge embeds a line with the
packaged all-MiniLM-L6-v2 and scores the speakers with a multinomial logistic regression
(class-balanced, L2-regularised, fitted by L-BFGS), trained on the transcript lines of the
training episodes only. Speakers are named through the shared name index, so ``MIKE`` and
``Mike Wheeler`` are one class; speakers with too few lines are left out.

Lines that a candidate source returns verbatim (the offline responder answers with the
character's real lines) are left out of the judge's training set before it is fitted
(``exclude``): every candidate is then text the judge has not seen, and the comparison is
fair to all sources.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from stnlp.common.errors import UserError
from stnlp.runtime.data.names import CharacterNames, name_key
from stnlp.runtime.encoder import shared_encoder

MIN_LINES = 5
"""A speaker needs this many training lines to be a class of the judge."""


def speaker_of(names: CharacterNames, label: str) -> str:
    """The canonical character a speaker label names, else the label itself (normalised)."""
    return names.speaker(label) or " ".join(name_key(label).split()).title()


def _normal(text: str) -> str:
    return " ".join(text.casefold().split())


@dataclass(frozen=True)
class SpeakerJudge:
    """A fitted judge: its classes and the linear model over sentence embeddings."""

    classes: tuple[str, ...]
    weight: torch.Tensor  # (classes, dim)
    bias: torch.Tensor  # (classes,)

    @classmethod
    def fit(
        cls,
        lines: Iterable,
        names: CharacterNames,
        exclude: Iterable[str] = (),
        min_lines: int = MIN_LINES,
        l2: float = 1e-3,
    ) -> SpeakerJudge:
        """Fit on transcript ``lines`` (``.name``, ``.line``), without the texts in ``exclude``."""
        banned = {_normal(text) for text in exclude}
        pairs = [
            (speaker_of(names, line.name), line.line)
            for line in lines
            if line.line.strip() and _normal(line.line) not in banned
        ]
        counts = Counter(speaker for speaker, _ in pairs)
        classes = tuple(sorted(s for s, n in counts.items() if n >= min_lines))
        if len(classes) < 2:
            raise UserError(
                f"the speaker judge needs 2 speakers with {min_lines}+ lines; "
                f"the transcripts have {len(classes)}"
            )
        pairs = [(s, text) for s, text in pairs if s in classes]
        features = shared_encoder().encode([text for _, text in pairs]).clone()  # not inference
        target = torch.tensor([classes.index(s) for s, _ in pairs])
        balance = torch.tensor([len(pairs) / (len(classes) * counts[c]) for c in classes])
        weight = torch.zeros(len(classes), features.shape[1], requires_grad=True)
        bias = torch.zeros(len(classes), requires_grad=True)
        optimizer = torch.optim.LBFGS([weight, bias], max_iter=200, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            logits = features @ weight.T + bias
            loss = torch.nn.functional.cross_entropy(logits, target, weight=balance)
            loss = loss + l2 * weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        return cls(classes, weight.detach(), bias.detach())

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The speaker the judge attributes each text to."""
        if not texts:
            return []
        logits = shared_encoder().encode(list(texts)) @ self.weight.T + self.bias
        return [self.classes[i] for i in logits.argmax(dim=1).tolist()]

    def score(self, texts: Sequence[str], character: str) -> float:
        """The fraction of ``texts`` attributed to ``character`` (an empty text counts as not)."""
        if not texts:
            return float("nan")
        said = self.predict([text if text.strip() else "..." for text in texts])
        pairs = zip(said, texts, strict=True)
        hits = sum(who == character and bool(text.strip()) for who, text in pairs)
        return hits / len(texts)
