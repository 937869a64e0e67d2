"""The packaged MiniLM run by ONNX Runtime: the same model and pooling as
:class:`stnlp.runtime.encoder.SentenceEncoder`, about twice as fast on a CPU.

On first use the fp32 model is exported with ``torch.onnx.export`` into
``$XDG_CACHE_HOME/stnlp/onnx/`` (a few seconds, once per machine); ONNX Runtime then runs it
with its graph optimisations (fused attention, layer norm and GELU). The weights are not
quantized: dynamic int8 quantization agreed with fp32 at a mean cosine of only 0.985
(docs/benchmarks.md). Without ``onnxruntime``, :func:`theme_encoder` falls back to the torch
encoder. On a CPU with native bf16 the default is the torch model in bf16 instead
(:func:`concrete_kind`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from stnlp.common.cache import cache_root
from stnlp.runtime.encoder import (
    BATCH_TOKENS,
    SentenceEncoder,
    native_bf16,
    shared_encoder,
    token_batches,
    weights_digest,
)

Progress = Callable[[int], None] | None


def cache_folder() -> Path:
    """Where exported models are kept: ``$XDG_CACHE_HOME/stnlp/onnx``."""
    return cache_root("onnx")


class _LastHidden(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export(encoder: SentenceEncoder, folder: Path | None = None) -> Path:
    """The ONNX file of ``encoder``'s model, exported once (keyed by its weights' checksum)."""
    path = (folder or cache_folder()) / f"minilm-{weights_digest(encoder)}.onnx"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    sample = encoder.tokenizer(["a sample sentence"], return_tensors="pt")
    names = ["input_ids", "attention_mask"]
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with torch.inference_mode():
        torch.onnx.export(
            _LastHidden(encoder.model).eval(),
            (sample["input_ids"], sample["attention_mask"]),
            str(tmp),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]},
            opset_version=17,
            dynamo=False,
        )
    tmp.replace(path)
    return path


class OnnxSentenceEncoder:
    """Mean-pooled, normalised MiniLM embeddings computed by ONNX Runtime."""

    def __init__(self, encoder: SentenceEncoder, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(export(encoder)), options, providers=["CPUExecutionProvider"]
        )
        self.tokenizer = encoder.tokenizer
        self.max_length = encoder.max_length
        self.dim = encoder.dim
        self.name = f"{encoder.name} (onnxruntime)"

    def encode(
        self, texts: Sequence[str], batch_tokens: int = BATCH_TOKENS, progress: Progress = None
    ):
        """Embed ``texts`` as a ``(len(texts), dim)`` tensor of unit vectors (as the torch one)."""
        out = torch.empty(len(texts), self.dim)
        for idx, input_ids in token_batches(self.tokenizer, texts, self.max_length, batch_tokens):
            ids = input_ids.numpy()
            feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
            hidden = torch.from_numpy(self.session.run(None, feeds)[0])
            out[idx] = torch.nn.functional.normalize(hidden.mean(dim=1), dim=-1)
            if progress is not None:
                progress(len(idx))
        return out


class Bf16SentenceEncoder(SentenceEncoder):
    """The torch MiniLM in bf16 for the sentences, the few theme descriptions (``queries``)
    embedded by an fp32 encoder: on the labelled scenes, bf16 descriptions flip a near tie
    that fp32 descriptions keep (docs/benchmarks.md).

    Attention is torch's plain ("eager") one: on short sentences in bf16 it is faster than the
    fused kernel (40 s against 45 s for 62,011 sentences), about as close to fp32."""

    def __init__(self, queries):
        super().__init__(dtype=torch.bfloat16)
        self.model.set_attn_implementation("eager")
        self.queries = queries


_ENCODERS: dict[str, object] = {}
ENCODER_KINDS = ("auto", "onnx", "bf16", "torch", "static")


def concrete_kind(kind: str) -> str:
    """``kind`` with ``auto`` made concrete: ``bf16`` on a CPU that multiplies bf16 natively
    (1.6 times as fast as ``onnx`` on 62,011 sentences; embeddings within 3e-4 of fp32's
    cosine), ``onnx`` elsewhere."""
    if kind not in ENCODER_KINDS:
        from stnlp.common.errors import UserError

        valid = ", ".join(repr(k) for k in ENCODER_KINDS)
        raise UserError(f"theme encoder must be one of {valid}; got {kind!r}")
    if kind == "auto":
        return "bf16" if native_bf16() else "onnx"
    return kind


def theme_encoder(kind: str = "auto"):
    """The encoder themes are scored with, one per kind per process: ``auto`` (default, see
    :func:`concrete_kind`), ``onnx`` (falls back to ``torch`` when onnxruntime is not
    installed), ``bf16`` (:class:`Bf16SentenceEncoder`), ``torch`` (fp32), or ``static``
    (:class:`stnlp.plugins.classifier.static_encoder.StaticSentenceEncoder`, its theme
    descriptions embedded by the ``onnx`` one)."""
    kind = concrete_kind(kind)
    if kind not in _ENCODERS:
        base = shared_encoder()
        if kind == "static":
            from stnlp.plugins.classifier.static_encoder import StaticSentenceEncoder

            _ENCODERS[kind] = StaticSentenceEncoder(base, queries=theme_encoder("onnx"))
        elif kind == "onnx":
            try:
                _ENCODERS[kind] = OnnxSentenceEncoder(base)
            except ImportError:
                _ENCODERS[kind] = base
        elif kind == "bf16":
            _ENCODERS[kind] = Bf16SentenceEncoder(queries=theme_encoder("onnx"))
        else:
            _ENCODERS[kind] = base
    return _ENCODERS[kind]
