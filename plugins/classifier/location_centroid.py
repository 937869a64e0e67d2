"""The offline fallback location classifier: nearest centroid over MiniLM embeddings.

Each location type is the mean (renormalised) embedding of its training examples; a text's
probabilities are a softmax over its cosine similarities to the centroids. Fitted on the
training side of the same stratified split the fine-tuning job uses, so its held-out metrics
mean the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from stnlp.plugins.classifier.labels import (
    Example,
    check_classes,
    classification_metrics,
    stratified_split,
)
from stnlp.runtime.encoder import SentenceEncoder


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
        self.labels = sorted({e.label for e in examples})
        vectors = self.encoder.encode([e.text for e in examples])
        rows = []
        for label in self.labels:
            mask = torch.tensor([e.label == label for e in examples])
            rows.append(vectors[mask].mean(dim=0))
        self.centroids = torch.nn.functional.normalize(torch.stack(rows), dim=-1)
        return self

    def probabilities(self, texts: Sequence[str]) -> torch.Tensor:
        """A ``(len(texts), len(labels))`` tensor of class probabilities."""
        return (self.encoder.encode(list(texts)) @ self.centroids.T / self.tau).softmax(dim=-1)

    def predict(self, text: str) -> dict[str, float]:
        """Location type -> probability for one text."""
        probs = self.probabilities([text])[0]
        return {label: float(p) for label, p in zip(self.labels, probs, strict=True)}


def fit_with_holdout(
    encoder: SentenceEncoder, examples: Sequence[Example], test_fraction: float = 0.25
) -> CentroidLocationClassifier:
    """Fit on the training side of a stratified split, measure on the held-out side, then refit
    on everything (the metrics stay those of the held-out evaluation)."""
    labels = [e.label for e in examples]
    classes = check_classes(labels, test_fraction)
    train_idx, test_idx = stratified_split(labels, test_fraction)
    held_out = CentroidLocationClassifier(encoder).fit([examples[i] for i in train_idx])
    test = [examples[i] for i in test_idx]
    probs = held_out.probabilities([e.text for e in test])
    predicted = [held_out.labels[int(i)] for i in probs.argmax(dim=-1)]
    classifier = CentroidLocationClassifier(encoder).fit(examples)
    classifier.metrics = classification_metrics([e.label for e in test], predicted, classes)
    return classifier
