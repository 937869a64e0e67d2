"""Labelled texts for the location classifier: examples, stratified split, class weights, metrics.

Pure functions over plain lists, shared by the fine-tuning job and the offline fallback, so
both report held-out metrics computed the same way.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from stnlp.common.errors import UserError


@dataclass(frozen=True)
class Example:
    """One text and its label."""

    text: str
    label: str


def location_text(name: str, description: str) -> str:
    """The text a location is classified from: its name, then its description."""
    return f"{name}. {description}".strip() if description else name


def examples_from_locations(locations: Sequence) -> list[Example]:
    """Examples from :class:`stnlp.runtime.data.Location` records (name + description -> type)."""
    return [Example(location_text(loc.name, loc.description), loc.type) for loc in locations]


def check_classes(labels: Sequence[str], test_fraction: float, source: str = "data") -> list[str]:
    """The sorted class names, after checking a stratified split is possible.

    Raises :class:`UserError` for a single class, or for a class with fewer examples than a
    stratified split needs (at least one to train on and one to test on).
    """
    counts = Counter(labels)
    if len(counts) < 2:
        only = next(iter(counts), "none")
        raise UserError(
            f"{source}: the location classifier needs at least 2 location types, "
            f"found {len(counts)} ({only!r}, {counts.get(only, 0)} examples)"
        )
    if not 0 < test_fraction < 1:
        raise UserError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    for label, count in sorted(counts.items()):
        if count < 2:
            raise UserError(
                f"{source}: location type {label!r} has {count} example(s); a stratified "
                "split needs at least 2 per type (one to train on, one to test on)"
            )
    return sorted(counts)


def stratified_split(
    labels: Sequence[str], test_fraction: float = 0.2, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Indices ``(train, test)`` with every class on both sides.

    Each class puts ``round(n * test_fraction)`` examples (at least 1, at most ``n - 1``) into
    the test side, chosen by a seeded shuffle.
    """
    check_classes(labels, test_fraction)
    rng = random.Random(seed)
    by_class: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    train: list[int] = []
    test: list[int] = []
    for label in sorted(by_class):
        indices = by_class[label][:]
        rng.shuffle(indices)
        n_test = min(len(indices) - 1, max(1, round(len(indices) * test_fraction)))
        test += indices[:n_test]
        train += indices[n_test:]
    return sorted(train), sorted(test)


def class_weights(labels: Sequence[str], classes: Sequence[str]) -> list[float]:
    """Balanced weights ``n / (k * count_c)`` per class, in the order of ``classes``.

    A class absent from ``labels`` is an error: its weight would be infinite.
    """
    counts = Counter(labels)
    missing = [c for c in classes if counts[c] == 0]
    if missing:
        raise UserError(f"no training examples for location type(s) {', '.join(missing)}")
    total, k = len(labels), len(classes)
    return [total / (k * counts[c]) for c in classes]


def confusion_matrix(
    truth: Sequence[str], predicted: Sequence[str], classes: Sequence[str]
) -> list[list[int]]:
    """``matrix[i][j]``: examples of class ``classes[i]`` predicted as ``classes[j]``."""
    index = {c: i for i, c in enumerate(classes)}
    matrix = [[0] * len(classes) for _ in classes]
    for t, p in zip(truth, predicted, strict=True):
        matrix[index[t]][index[p]] += 1
    return matrix


def classification_metrics(
    truth: Sequence[str], predicted: Sequence[str], classes: Sequence[str]
) -> dict:
    """Accuracy, macro-F1 (over ``classes``), per-class F1 and the confusion matrix."""
    if not truth:
        raise UserError("no held-out examples to evaluate")
    matrix = confusion_matrix(truth, predicted, classes)
    f1 = {}
    for i, c in enumerate(classes):
        tp = matrix[i][i]
        predicted_c = sum(row[i] for row in matrix)
        actual_c = sum(matrix[i])
        f1[c] = 2 * tp / (predicted_c + actual_c) if predicted_c + actual_c else 0.0
    correct = sum(matrix[i][i] for i in range(len(classes)))
    return {
        "accuracy": correct / len(truth),
        "macro_f1": sum(f1.values()) / len(classes),
        "f1_per_class": f1,
        "confusion_matrix": {"labels": list(classes), "matrix": matrix},
        "test_examples": len(truth),
    }
