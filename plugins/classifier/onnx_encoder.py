"""The packaged MiniLM run by ONNX Runtime: the same model and pooling as
:class:`stnlp.runtime.encoder.SentenceEncoder`, about twice as fast on a CPU.

On first use the fp32 model is exported with ``torch.onnx.export`` into
``$XDG_CACHE_HOME/stnlp/onnx/`` (a few seconds, once per machine); ONNX Runtime then runs it
with its graph optimisations (fused attention, layer norm and GELU). The weights are not
quantized: dynamic int8 quantization agreed with fp32 at a mean cosine of only 0.985 and
was no faster on these AVX2 cores (docs/benchmarks.md). Without ``onnxruntime``,
:func:`theme_encoder` falls back to the torch encoder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from stnlp.common.cache import cache_root
from stnlp.runtime.encoder import SentenceEncoder, shared_encoder, weights_digest

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

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: Progress = None):
        """Embed ``texts`` as a ``(len(texts), dim)`` tensor of unit vectors (as the torch one)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = self.tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True,
                max_length=self.max_length, return_tensors="np",
            )  # fmt: skip
            mask = batch["attention_mask"].astype(np.int64)
            feeds = {"input_ids": batch["input_ids"].astype(np.int64), "attention_mask": mask}
            hidden = self.session.run(None, feeds)[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            out[idx] = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            if progress is not None:
                progress(len(idx))
        return torch.from_numpy(out)


_ENCODERS: dict[str, object] = {}
ENCODER_KINDS = ("onnx", "torch", "static")


def theme_encoder(kind: str = "onnx"):
    """The encoder themes are scored with, one per kind per process: ``onnx`` (default; falls
    back to ``torch`` when onnxruntime is not installed), ``torch``, or ``static``
    (:class:`stnlp.plugins.classifier.static_encoder.StaticSentenceEncoder`, its theme
    descriptions embedded by the ``onnx`` one)."""
    if kind not in ENCODER_KINDS:
        from stnlp.common.errors import UserError

        valid = ", ".join(repr(k) for k in ENCODER_KINDS)
        raise UserError(f"theme encoder must be one of {valid}; got {kind!r}")
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
        else:
            _ENCODERS[kind] = base
    return _ENCODERS[kind]
