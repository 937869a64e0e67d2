"""Labelled texts for the location classifier: examples, stratified folds, class weights, metrics.

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


def check_classes(labels: Sequence[str], source: str = "data") -> list[str]:
    """The sorted class names, after checking cross-validation is possible.

    Raises :class:`UserError` for a single class, or for a class with fewer than 2 examples
    (each needs one to train on and one to test on).
    """
    counts = Counter(labels)
    if len(counts) < 2:
        only = next(iter(counts), "none")
        raise UserError(
            f"{source}: the location classifier needs at least 2 location types, "
            f"found {len(counts)} ({only!r}, {counts.get(only, 0)} examples)"
        )
    for label, count in sorted(counts.items()):
        if count < 2:
            raise UserError(
                f"{source}: location type {label!r} has {count} example(s); cross-validation "
                "needs at least 2 per type (one to train on, one to test on)"
            )
    return sorted(counts)


def stratified_folds(labels: Sequence[str], folds: int, seed: int = 0) -> list[list[int]]:
    """``folds`` disjoint test folds covering every index, each class dealt round-robin after a
    seeded shuffle, so every fold holds every class with at least ``folds`` examples.

    ``folds`` is capped at the smallest class's size (each fold must test every class once a
    class allows it); fewer than 2 folds is a :class:`UserError`.
    """
    check_classes(labels)
    counts = Counter(labels)
    if int(folds) < 2:
        raise UserError(f"cv_folds must be at least 2, got {folds}")
    k = min(int(folds), min(counts.values()))
    rng = random.Random(seed)
    out: list[list[int]] = [[] for _ in range(k)]
    offset = 0
    for label in sorted(counts):
        indices = [i for i, x in enumerate(labels) if x == label]
        rng.shuffle(indices)
        for n, index in enumerate(indices):
            out[(n + offset) % k].append(index)
        offset += len(indices)
    return [sorted(fold) for fold in out]


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
