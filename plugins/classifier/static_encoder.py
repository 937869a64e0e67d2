"""Static embeddings distilled from the packaged MiniLM: one vector per WordPiece token.

A token's vector is what the real MiniLM gives the one-token sentence ``[CLS] token [SEP]``
(mean-pooled and normalised as :class:`stnlp.runtime.encoder.SentenceEncoder` pools), so a
one-token word embeds exactly as MiniLM embeds it. A sentence's embedding is the weighted
mean of its tokens' vectors, normalised: one table lookup per token instead of six
transformer layers, about 50x faster on these cores (docs/benchmarks.md).

Token vectors are computed lazily, only for the tokens the texts use, and kept in memory and
in ``$XDG_CACHE_HOME/stnlp/static/minilm-<checksum>.npz`` (keyed by the weights' checksum,
written atomically; a damaged file is rebuilt). A vector depends on its token alone and a
weight on the token's vocabulary rank alone, never on the corpus, so a corpus scored in shards
gives the unsharded scores.

Weights: a token's weight is ``sqrt(rank)`` (Zipf-style: rarer tokens say more), ``rank``
counted from the first whole word of the vocabulary (BERT's WordPiece list is ordered by
frequency from there); punctuation and single characters, below it, weigh as rank 1. Of
none, ``log(1 + rank)``, ``rank / (rank + k)`` and ``sqrt(rank)``, the last agreed best with
the fp32 encoder on the sample sentences (docs/benchmarks.md).

Trained (:data:`TRAINED_PATH`, shipped with the package; ``bench/classifier/train_static.py``
makes it, seeded, in about a minute on one core): Model2Vec's "tokenlearn" step on the sample
data (never ``data/eval``): a linear map of every distilled vector plus a correction of the
1,443 tokens the training sentences use, fitted so that the sentence vectors regress fp32
MiniLM's (cosine loss, and the cosines with the default theme descriptions). Tokens training
never saw keep their distilled vector under the map. ``trained=None`` gives the distilled
vectors alone.

Theme descriptions are few: they are embedded by the full MiniLM (:attr:`queries`), whose
cosines with static sentence vectors follow fp32's far better than static descriptions do.
Those cosines spread differently from fp32's, so :meth:`StaticSentenceEncoder.calibrate` maps
them linearly onto the fp32 scale (:data:`CALIBRATION`: the mean and standard deviation of
every sample sentence x default theme cosine matched to fp32's: the trained file carries the
fit on its training sentences; for the distilled vectors it is :data:`CALIBRATION`, fitted by
``bench/classifier/bench_themes.py --fit-calibration``) before the theme threshold and softmax
see them.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from stnlp.common.cache import cache_root
from stnlp.runtime.encoder import SentenceEncoder, mean_pool, weights_digest
from stnlp.runtime.logs import event

log = logging.getLogger(__name__)
Progress = Callable[[int], None] | None

FIRST_WORD = "the"
"""The first whole word of BERT's WordPiece vocabulary; ranks count from it."""
CALIBRATION = (1.153, -0.1152)
"""``(scale, shift)``: fp32 cosine ~ scale * static cosine + shift on the sample sentences
(the distilled vectors alone; a trained file carries its own)."""
TRAINED_PATH = Path(__file__).with_name("static_minilm.npz")
"""Token vectors trained to regress fp32 sentence embeddings (bench/classifier/train_static.py)."""


def cache_folder() -> Path:
    """Where token tables are kept: ``$XDG_CACHE_HOME/stnlp/static``."""
    return cache_root("static")


def token_weights(tokenizer) -> np.ndarray:
    """One weight per vocabulary id, from its rank alone (see the module docstring)."""
    size = len(tokenizer)
    first = tokenizer.convert_tokens_to_ids(FIRST_WORD)
    rank = np.arange(size, dtype=np.float64) - first
    return np.sqrt(np.clip(rank, 1, None)).astype(np.float32)


class TokenTable:
    """Token vectors by vocabulary id, computed on demand by the real MiniLM and cached."""

    def __init__(self, encoder: SentenceEncoder, path: Path, batch_size: int = 512):
        self.encoder = encoder
        self.path = path
        self.batch_size = batch_size
        size = len(encoder.tokenizer)
        self.vectors = np.zeros((size, encoder.dim), dtype=np.float32)
        self.known = np.zeros(size, dtype=bool)
        self._load()

    def _load(self) -> None:
        """Take the vectors a readable cache file holds; a damaged one is ignored (rebuilt)."""
        if not self.path.exists():
            return
        try:
            with np.load(self.path, allow_pickle=False) as data:
                ids, vectors = data["ids"], data["vectors"]
            if ids.ndim != 1 or vectors.shape != (len(ids), self.encoder.dim):
                raise ValueError(f"shapes {ids.shape} and {vectors.shape}")
            if len(ids) and (ids.min() < 0 or ids.max() >= len(self.known)):
                raise ValueError("token id out of the vocabulary")
            if not np.isfinite(vectors).all():
                raise ValueError("non-finite vectors")
        except Exception as exc:  # noqa: BLE001 - any unreadable file is rebuilt, never fatal
            event(log, "static token cache damaged, rebuilding", logging.WARNING,
                  path=str(self.path), error=f"{type(exc).__name__}: {exc}")  # fmt: skip
            return
        self.vectors[ids] = vectors
        self.known[ids] = True

    def _save(self) -> None:
        """Write every known vector atomically (a tmp file per process, then a rename)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.stem}.{os.getpid()}.tmp.npz")
        ids = np.flatnonzero(self.known).astype(np.int32)
        np.savez(tmp, ids=ids, vectors=self.vectors[ids])
        tmp.replace(self.path)

    @torch.inference_mode()
    def ensure(self, ids: np.ndarray) -> None:
        """Compute (and cache) the vectors of the ``ids`` not known yet."""
        missing = np.unique(ids[~self.known[ids]])
        if not len(missing):
            return
        tokenizer = self.encoder.tokenizer
        for start in range(0, len(missing), self.batch_size):
            chunk = torch.from_numpy(missing[start : start + self.batch_size].astype(np.int64))
            ones = torch.ones_like(chunk)
            input_ids = torch.stack(
                [ones * tokenizer.cls_token_id, chunk, ones * tokenizer.sep_token_id], dim=1
            )
            mask = torch.ones_like(input_ids)
            hidden = self.encoder.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            pooled = torch.nn.functional.normalize(mean_pool(hidden, mask), dim=-1)
            self.vectors[chunk.numpy()] = pooled.numpy()
            self.known[chunk.numpy()] = True
        self._save()


class StaticSentenceEncoder:
    """Weighted means of per-token MiniLM vectors, normalised (same interface as the others)."""

    def __init__(
        self,
        encoder: SentenceEncoder,
        queries=None,
        folder: Path | None = None,
        trained: Path | None = TRAINED_PATH,
    ):
        self.queries = queries or encoder
        """What embeds the theme descriptions: the full MiniLM (ONNX Runtime or torch)."""
        digest = weights_digest(encoder)
        self.table = TokenTable(encoder, (folder or cache_folder()) / f"minilm-{digest}.npz")
        self.matrix: torch.Tensor | None = None
        """The trained linear map of every distilled vector (None: the distilled ones)."""
        self.deltas = torch.zeros(len(encoder.tokenizer), encoder.dim)
        """The trained corrections of the vectors of the tokens training saw (else 0)."""
        self.calibration, kind = CALIBRATION, "sqrt-rank"
        if trained is not None and trained.exists():
            with np.load(trained, allow_pickle=False) as data:
                self.matrix = torch.from_numpy(data["matrix"].astype(np.float32))
                ids = torch.from_numpy(data["ids"].astype(np.int64))
                self.deltas[ids] = torch.from_numpy(data["deltas"].astype(np.float32))
                self.calibration = tuple(float(x) for x in data["calibration"])
            kind = f"trained-{hashlib.sha256(trained.read_bytes()).hexdigest()[:8]}"
        self.tokenizer = encoder.tokenizer
        self.max_length = encoder.max_length
        self.weights = torch.from_numpy(token_weights(encoder.tokenizer))
        self.dim = encoder.dim
        scale, shift = self.calibration
        self.name = f"{encoder.name} (static:{kind}:cal={scale:.4f},{shift:.4f})"

    def encode(self, texts: Sequence[str], batch_size: int = 4096, progress: Progress = None):
        """Embed ``texts`` as a ``(len(texts), dim)`` tensor of unit vectors; a text with no
        token is the zero vector (it relates to nothing)."""
        out = torch.zeros(len(texts), self.dim)
        for start in range(0, len(texts), batch_size):
            batch = list(texts[start : start + batch_size])
            ids = self.tokenizer(
                batch, add_special_tokens=False, truncation=True, max_length=self.max_length - 2
            )["input_ids"]  # fmt: skip
            flat = np.fromiter((t for row in ids for t in row), dtype=np.int64)
            self.table.ensure(flat)
            lengths = torch.tensor([len(row) for row in ids], dtype=torch.long)
            flat_ids = torch.from_numpy(flat)
            offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
            weights = self.weights[flat_ids]
            pooled = torch.nn.functional.embedding_bag(
                flat_ids, torch.from_numpy(self.table.vectors), offsets,
                mode="sum", per_sample_weights=weights,
            )  # fmt: skip
            if self.matrix is not None:
                pooled = pooled @ self.matrix.T + torch.nn.functional.embedding_bag(
                    flat_ids, self.deltas, offsets, mode="sum", per_sample_weights=weights
                )  # fmt: skip
            out[start : start + len(batch)] = torch.nn.functional.normalize(pooled, dim=-1)
            if progress is not None:
                progress(len(batch))
        return out

    def calibrate(self, similarity: torch.Tensor) -> torch.Tensor:
        """Static cosines mapped onto the fp32 encoder's scale (:attr:`calibration`)."""
        scale, shift = self.calibration
        return similarity * scale + shift
