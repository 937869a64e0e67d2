"""Honest models: a trained version is used only where it beats its baseline on the same split.

A training entrypoint measures its held-out metric and a baseline's (the nearest-centroid
classifier for locations, the offline responder for chatbots, ...) on the *same* held-out
split, and returns both under ``metrics["heldout"]`` (:func:`heldout_record`). The registry
keeps them in the version's manifest. A tab or CLI command asks :func:`judge` whether to use a
trained version; when it must not, the verdict's ``reason`` is the sentence the interface
shows to say why it uses the next source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

HELDOUT = "heldout"
"""The key of the held-out comparison in a model's metrics."""


def heldout_record(
    metric: str, value: float, baseline: str, baseline_value: float, *, split: str,
    higher_is_better: bool = True, examples: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The ``metrics["heldout"]`` block: ``metric`` of the trained model and of ``baseline``,
    both measured on the held-out ``split`` (a short description, e.g. ``"5-fold CV"``)."""
    return {
        "metric": metric, "value": float(value), "baseline": baseline,
        "baseline_value": float(baseline_value), "higher_is_better": bool(higher_is_better),
        "split": split, "examples": examples,
    }  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    """Whether to use a trained version, and the sentence that says why."""

    use: bool
    reason: str


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def judge(manifest: dict[str, Any] | None, label: str = "the trained model") -> Verdict:
    """Use a version only when its manifest records a held-out metric that beats its baseline.

    A version without a comparison, with a missing or non-finite value, or that ties or loses
    is not used; the reason names the metric, both values and the split.
    """
    record = ((manifest or {}).get("metrics") or {}).get(HELDOUT)
    if not isinstance(record, dict):
        return Verdict(False, f"{label} has no held-out comparison with a baseline recorded")
    metric, baseline = record.get("metric", "metric"), record.get("baseline", "the baseline")
    value, base = _number(record.get("value")), _number(record.get("baseline_value"))
    if value is None or base is None:
        return Verdict(False, f"{label}'s held-out {metric} is not a number")
    higher = bool(record.get("higher_is_better", True))
    wins = value > base if higher else value < base
    split = f" on {record['split']}" if record.get("split") else ""
    verb = "beats" if wins else ("ties" if value == base else "does not beat")
    return Verdict(wins, f"{label}'s held-out {metric} {value:.3g} {verb} {baseline}'s "
                         f"{base:.3g}{split}")  # fmt: skip
