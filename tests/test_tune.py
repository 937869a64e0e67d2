"""`stnlp tune` on the local backend: real trials of the example job, the best one published.

The truth the trials are judged by is computed here by hand from the uploaded transcript: each
trial's held-out mean absolute error for the shrinkage it drew (every 3rd line held out, the
speaker means shrunk towards the overall mean), independently of the example plugin's code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from stnlp.common.errors import UserError
from stnlp.common.settings import Settings
from stnlp.plugins.manager import build_plugin_manager
from stnlp.plugins.spec import JobSpec, SpecError, validate_job
from stnlp.runtime.backends.local import Intervals
from stnlp.runtime.registry import ModelRegistry
from stnlp.runtime.store import open_stores
from stnlp.runtime.tune import Objective, tune_local
from stnlp.runtime.upload import upload_path

sys.path.insert(0, str(Path(__file__).parent / "example_plugin"))
from stnlp_example import plugin as example_plugin  # noqa: E402

FAST = Intervals(heartbeat=0.2, upload=0.3, poll=0.05, terminate_grace=5)
ROWS = [("Eleven", "Friends don't lie."), ("Mike", "She's our friend and she's crazy!"),
        *(("Dustin", f"Line number {i} with some words") for i in range(12)),
        ("Eleven", "Mouth breather."), ("Mike", "Just wait, okay?"), ("Eleven", "Bitchin.")]


def _hand_mae(shrinkage: float) -> float:
    fit = [r for i, r in enumerate(ROWS) if i % 3 != 2]
    held = [r for i, r in enumerate(ROWS) if i % 3 == 2]
    overall = sum(len(line) for _, line in fit) / len(fit)
    mean = {}
    for name in {n for n, _ in fit}:
        lengths = [len(line) for n, line in fit if n == name]
        mean[name] = (sum(lengths) + shrinkage * overall) / (len(lengths) + shrinkage)
    return sum(abs(mean.get(n, overall) - len(line)) for n, line in held) / len(held)


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return Settings(store=str(tmp_path / "store"), stack="dev")


@pytest.fixture
def stores(settings, tmp_path):
    stores = open_stores(settings)
    folder = tmp_path / "data" / "transcripts"
    folder.mkdir(parents=True)
    lines = ["name,line", *(f'{n},"{line}"' for n, line in ROWS)]
    (folder / "S01E01.csv").write_text("\n".join(lines) + "\n")
    upload_path(tmp_path / "data", stores.datasets, progress=False)
    return stores


def _job(settings) -> JobSpec:
    registry = build_plugin_manager(settings, extra=(("example", example_plugin),))
    return registry.job("example-linefit")


def test_local_tuning_publishes_the_trial_with_the_best_held_out_error(settings, stores):
    spec = _job(settings)
    goal = Objective("heldout_mae", maximize=False)
    result = tune_local(spec, settings, max_trials=3, objective=goal, preset="tiny",
                        overrides={"heldout_every": 3}, seed=7, stores=stores, progress=False,
                        intervals=FAST)
    assert [row["result"] for row in result.trials] == ["succeeded"] * 3
    for row in result.trials:  # each trial's logged objective is the hand-computed error
        assert row["heldout_mae"] == pytest.approx(_hand_mae(row["hyperparameters"]["shrinkage"]))
    hand_best = min(result.trials, key=lambda r: _hand_mae(r["hyperparameters"]["shrinkage"]))
    assert result.best["run_id"] == hand_best["run_id"]
    registry = ModelRegistry(stores.models)
    assert registry.latest("line-length") == result.version
    manifest = registry.manifest("line-length", result.version)
    assert manifest["hyperparameters"] == hand_best["hyperparameters"]
    assert [row["run_id"] for row in manifest["trials"]] == [r["run_id"] for r in result.trials]
    assert manifest["tuning"]["direction"] == "Minimize"
    assert manifest["run_id"] == hand_best["run_id"]
    # the published files are the best trial's own version, byte for byte
    trial = registry.manifest("line-length-trials", hand_best["model_version"])
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == \
        {f["path"]: f["sha256"] for f in trial["files"]}
    assert len(registry.versions("line-length-trials")) == 3


def test_a_tuning_whose_trials_never_log_the_objective_publishes_nothing(settings, stores):
    spec = _job(settings)
    with pytest.raises(UserError, match="no trial of 1 succeeded with a value of 'nosuch'"):
        tune_local(spec, settings, max_trials=1, objective=Objective("nosuch"), preset="tiny",
                   stores=stores, progress=False, intervals=FAST)
    assert ModelRegistry(stores.models).latest("line-length") is None


@pytest.mark.parametrize(("space", "message"), [
    ({"nosuch": {"values": [1]}}, "has no hyperparameter 'nosuch'"),
    ({"steps": {"min": 0, "max": 5, "scale": "log"}}, "log scale needs min above 0"),
    ({"steps": {"min": 5, "max": 5}}, "must be below max"),
    ({"steps": {"values": ["a"]}}, "steps"),
])
def test_a_bad_search_space_names_the_plugin_and_the_key(space, message):
    job = JobSpec(name="tiny-job", component="c", entrypoint="pkg.m:f", output_model="model-x",
                  hyperparameters={"steps": 3}, search_space=space)
    with pytest.raises(SpecError, match=message):
        validate_job("myplugin", job)


def test_a_job_without_a_search_space_is_refused_before_any_run(settings, stores):
    from dataclasses import replace

    spec = replace(_job(settings), search_space={})
    with pytest.raises(UserError, match="declares no search_space"):
        tune_local(spec, settings, max_trials=2, objective=Objective("x"), stores=stores)
    assert stores.results.list("dev/runs/") == []
