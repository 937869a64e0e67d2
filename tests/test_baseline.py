"""A trained version is used only where its held-out metric beats its baseline's."""

from __future__ import annotations

import math

import pytest

from stnlp.runtime.baseline import HELDOUT, heldout_record, judge


def _manifest(**kwargs):
    defaults = {"metric": "accuracy", "value": 0.8, "baseline": "nearest-centroid",
                "baseline_value": 0.7, "split": "5-fold CV"}  # fmt: skip
    return {"metrics": {HELDOUT: heldout_record(**{**defaults, **kwargs})}}


def test_a_win_is_used_and_says_so():
    verdict = judge(_manifest(), "registry classifier-location v1")
    assert verdict.use
    assert verdict.reason == (
        "registry classifier-location v1's held-out accuracy 0.8 beats nearest-centroid's 0.7 "
        "on 5-fold CV"
    )


@pytest.mark.parametrize(
    ("value", "baseline_value", "verb"),
    [(0.7, 0.71, "does not beat"), (0.7, 0.7, "ties")],
)
def test_a_loss_or_a_tie_is_not_used(value, baseline_value, verb):
    verdict = judge(_manifest(value=value, baseline_value=baseline_value))
    assert not verdict.use and verb in verdict.reason


def test_lower_is_better_metrics():
    assert judge(_manifest(metric="loss", value=2.0, baseline_value=3.0,
                           higher_is_better=False)).use  # fmt: skip
    assert not judge(_manifest(metric="loss", value=3.0, baseline_value=2.0,
                               higher_is_better=False)).use  # fmt: skip


@pytest.mark.parametrize("manifest", [None, {}, {"metrics": {}}, {"metrics": {HELDOUT: "x"}}])
def test_no_comparison_is_not_used(manifest):
    verdict = judge(manifest)
    assert not verdict.use and "no held-out comparison" in verdict.reason


@pytest.mark.parametrize("bad", [math.nan, math.inf, None, "abc"])
def test_a_value_that_is_not_a_number_is_not_used(bad):
    manifest = _manifest()
    manifest["metrics"][HELDOUT]["value"] = bad
    assert not judge(manifest).use
