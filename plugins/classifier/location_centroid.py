"""The baseline and offline fallback location classifier: nearest centroid over MiniLM
embeddings, with no training.

Each location type is the mean (renormalised) embedding of its training examples; a text's
probabilities are a softmax over its cosine similarities to the centroids. Its held-out
metrics come from stratified k-fold cross-validation, on the same folds the fine-tuning job
uses, so the two are compared on the same split.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from stnlp.plugins.classifier.labels import (
    Example,
    check_classes,
    classification_metrics,
    stratified_folds,
)
from stnlp.runtime.encoder import SentenceEncoder

BASELINE = "nearest-centroid"


def centroids(vectors: torch.Tensor, labels: Sequence[str]) -> tuple[list[str], torch.Tensor]:
    """The sorted classes of ``labels`` and one unit centroid per class."""
    classes = sorted(set(labels))
    rows = [vectors[torch.tensor([x == c for x in labels])].mean(dim=0) for c in classes]
    return classes, torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def nearest(vectors: torch.Tensor, classes: Sequence[str], centres: torch.Tensor) -> list[str]:
    """The class of the nearest centroid for each vector."""
    return [classes[int(i)] for i in (vectors @ centres.T).argmax(dim=-1)]


def cross_validated(
    vectors: torch.Tensor, labels: Sequence[str], folds: Sequence[Sequence[int]]
) -> list[str]:
    """Out-of-fold predictions: each fold predicted by centroids of the other folds."""
    predicted = [""] * len(labels)
    for fold in folds:
        held = set(fold)
        train = [i for i in range(len(labels)) if i not in held]
        classes, centres = centroids(vectors[train], [labels[i] for i in train])
        for i, label in zip(fold, nearest(vectors[list(fold)], classes, centres), strict=True):
            predicted[i] = label
    return predicted


class CentroidLocationClassifier:
    """Nearest-centroid classifier over sentence embeddings."""

    def __init__(self, encoder: SentenceEncoder, tau: float = 0.05):
        self.encoder = encoder
        self.tau = tau
        self.labels: list[str] = []
        self.centroids = torch.empty(0)
        self.metrics: dict = {}

    def fit(self, examples: Sequence[Example]) -> CentroidLocationClassifier:
        """Compute one centroid per label from ``examples``."""
        vectors = self.encoder.encode([e.text for e in examples])
        self.labels, self.centroids = centroids(vectors, [e.label for e in examples])
        return self

    def probabilities(self, texts: Sequence[str]) -> torch.Tensor:
        """A ``(len(texts), len(labels))`` tensor of class probabilities."""
        return (self.encoder.encode(list(texts)) @ self.centroids.T / self.tau).softmax(dim=-1)

    def predict(self, text: str) -> dict[str, float]:
        """Location type -> probability for one text."""
        probs = self.probabilities([text])[0]
        return {label: float(p) for label, p in zip(self.labels, probs, strict=True)}


def fit_with_cv(
    encoder: SentenceEncoder, examples: Sequence[Example], folds: int = 5, seed: int = 0
) -> CentroidLocationClassifier:
    """Fit on every example; ``metrics`` are those of stratified ``folds``-fold CV."""
    labels = [e.label for e in examples]
    classes = check_classes(labels)
    split = stratified_folds(labels, folds, seed)
    vectors = encoder.encode([e.text for e in examples])
    classifier = CentroidLocationClassifier(encoder)
    classifier.labels, classifier.centroids = centroids(vectors, labels)
    predicted = cross_validated(vectors, labels, split)
    classifier.metrics = {
        **classification_metrics(labels, predicted, classes),
        "split": f"{len(split)}-fold stratified CV",
    }
    return classifier
