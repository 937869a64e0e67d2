"""The local backend runs the example plugin's job end to end through the state machine."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from stnlp.common.errors import DataError, UserError
from stnlp.common.settings import Settings
from stnlp.runtime.backends.local import Intervals, train_local
from stnlp.runtime.cli.train import parse_overrides
from stnlp.runtime.registry import ModelRegistry, fetch_latest
from stnlp.runtime.runs import JobLock, list_runs, load_run, request_kill, run_prefix
from stnlp.runtime.store import open_stores
from stnlp.runtime.upload import upload_path
from tests.extension import install_example_plugin

sys.path.insert(0, str(Path(__file__).parent / "example_plugin"))
from stnlp_example import plugin as example_plugin  # noqa: E402

from stnlp.plugins.manager import build_plugin_manager  # noqa: E402
from tests.helpers import run_stnlp

FAST = Intervals(heartbeat=0.2, upload=0.3, poll=0.05, terminate_grace=5)


@pytest.fixture
def job(stores_settings):
    """The example plugin's job spec, from a registry with the plugin registered."""
    registry = build_plugin_manager(stores_settings, extra=(("example", example_plugin),))
    return registry.job("example-linefit")


@pytest.fixture
def loaded(stores, tmp_path):
    """Small transcripts loaded into the datasets store."""
    folder = tmp_path / "sample" / "transcripts"
    folder.mkdir(parents=True)
    rows = ["name,line", "Eleven,Friends don't lie.", "Mike,She's our friend and she's crazy!"]
    rows += [f"Dustin,Line number {i} with some words" for i in range(30)]
    (folder / "S01E01.csv").write_text("\n".join(rows) + "\n")
    first = upload_path(tmp_path / "sample", stores.datasets, progress=False)
    version = first.versions["transcripts"]
    assert first.uploaded == [f"raw/transcripts/{version}/S01E01.csv"]
    again = upload_path(tmp_path / "sample", stores.datasets, progress=False)
    assert again.uploaded == [] and again.unchanged == ["transcripts"]
    return stores


def _train(job, settings, stores, **kwargs):
    return train_local(job, settings, stores=stores, progress=False, intervals=FAST, **kwargs)


def test_example_job_end_to_end(job, stores_settings, loaded):
    run_id = _train(job, stores_settings, loaded, preset="tiny")
    run = load_run(loaded, stores_settings.stack, run_id)
    assert run.state == "cleanup" and run.record["result"] == "succeeded"
    assert [h["state"] for h in run.record["history"]] == [
        "initialization",
        "data_sync",
        "training",
        "results_sync",
        "cleanup",
    ]
    assert JobLock(loaded.results, stores_settings.stack, job.name).holder() is None
    metrics = json.loads(loaded.results.get(f"{run.prefix}/training.json"))
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5]
    log_text = loaded.results.get(f"{run.prefix}/logs/train.log").decode()
    assert f"run {run_id} finished" in log_text
    assert loaded.results.exists(f"{run.prefix}/checkpoints/state.json")
    registry = ModelRegistry(loaded.models)
    version = registry.latest("line-length")
    assert run.record["model_version"] == version
    assert registry.manifest("line-length", version)["run_id"] == run_id
    model = fetch_latest(stores_settings, "line-length")
    means = json.loads((model.path / "model.json").read_text())["mean_length"]
    assert means["Eleven"] == len("Friends don't lie.")


def test_exception_in_training_fails_and_keeps_previous_model(job, stores_settings, loaded):
    good = _train(job, stores_settings, loaded, preset="tiny")
    previous = ModelRegistry(loaded.models).latest("line-length")
    run_id = _train(job, stores_settings, loaded, overrides={"fail_at_step": 2})
    run = load_run(loaded, stores_settings.stack, run_id)
    assert run.record["result"] == "failed" and run_id != good
    assert "RuntimeError: injected failure at step 2" in run.record["error"]
    assert [h["state"] for h in run.record["history"]][-2:] == ["failed", "cleanup"]
    assert ModelRegistry(loaded.models).latest("line-length") == previous
    assert JobLock(loaded.results, stores_settings.stack, job.name).holder() is None
    metrics = json.loads(loaded.results.get(f"{run.prefix}/training.json"))
    assert [m["step"] for m in metrics] == [1, 2]


def _worker_pid(stores, stack, job_name):
    """Wait for the running run's worker pid (recorded as host:pid) and its first metric."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        holder = JobLock(stores.results, stack, job_name).holder()
        # The lock is taken just before the run record is first written.
        if holder and stores.results.exists(f"{run_prefix(stack, holder)}/state.json"):
            record = load_run(stores, stack, holder).record
            instance = record.get("instance_id") or ""
            logged = stores.results.exists(f"{run_prefix(stack, holder)}/logs/train.log")
            if ":" in instance and logged:
                return holder, int(instance.rsplit(":", 1)[1])
        time.sleep(0.05)
    raise AssertionError("the training subprocess never started")


def _train_long_in_thread(job, stores_settings, loaded) -> tuple[dict, threading.Thread]:
    """Start a long run in a thread; its run id lands in the returned dict's ``run_id``."""
    result: dict = {}
    overrides = {"steps": 2000, "step_seconds": 0.05}
    thread = threading.Thread(
        target=lambda: result.update(
            run_id=_train(job, stores_settings, loaded, overrides=overrides)
        )
    )
    thread.start()
    return result, thread


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_signal_to_training_process_ends_killed(job, stores_settings, loaded, sig):
    result, thread = _train_long_in_thread(job, stores_settings, loaded)
    holder, pid = _worker_pid(loaded, stores_settings.stack, job.name)
    os.kill(pid, sig)
    thread.join(300)
    assert not thread.is_alive(), "the run did not end"
    assert result["run_id"] == holder
    run = load_run(loaded, stores_settings.stack, holder)
    assert run.record["result"] == "killed"
    assert sig.name in run.record["error"]
    assert JobLock(loaded.results, stores_settings.stack, job.name).holder() is None
    assert ModelRegistry(loaded.models).latest("line-length") is None


def test_runs_kill_request_stops_the_run(job, stores_settings, loaded):
    _, thread = _train_long_in_thread(job, stores_settings, loaded)
    holder, _ = _worker_pid(loaded, stores_settings.stack, job.name)
    request_kill(loaded, stores_settings.stack, holder)
    thread.join(300)
    assert not thread.is_alive(), "the run did not end"
    run = load_run(loaded, stores_settings.stack, holder)
    assert run.record["result"] == "killed" and "stnlp runs kill" in run.record["error"]
    assert JobLock(loaded.results, stores_settings.stack, job.name).holder() is None


def test_missing_dataset_fails_the_run_with_a_clear_error(job, stores_settings, stores):
    with pytest.raises(
        DataError, match="dataset 'transcripts' has no files under raw/transcripts/"
    ):
        _train(job, stores_settings, stores)
    (record,) = list_runs(stores, stores_settings.stack)
    assert record["result"] == "failed" and record["state"] == "cleanup"
    assert JobLock(stores.results, stores_settings.stack, job.name).holder() is None


@pytest.mark.slow
def test_cli_data_train_models_runs(tmp_path):
    """`stnlp data upload`, `train`, `models`, `runs` on the local store, as a user runs them."""
    site = install_example_plugin(tmp_path / "site")
    sample = tmp_path / "sample" / "transcripts"
    sample.mkdir(parents=True)
    (sample / "S01E01.csv").write_text("name,line\nEleven,Friends don't lie.\nMike,Hi\n")
    env = {**os.environ, "STNLP_STORE": str(tmp_path / "store"), "PYTHONPATH": str(site)}
    env.pop("STNLP_SETTINGS", None)

    def stnlp(*args: str):
        return run_stnlp(*args, env=env, replace_env=True)

    assert (
        "1 file(s) uploaded" in stnlp("data", "upload", str(tmp_path / "sample")).stdout
    )
    first = stnlp("train", "example-linefit", "--preset", "tiny")
    assert first.returncode == 0, first.stderr
    assert "succeeded" in first.stdout and "published line-length v" in first.stdout
    failed = stnlp("train", "example-linefit", "--set", "fail_at_step=1")
    assert failed.returncode == 2 and "injected failure at step 1" in failed.stderr
    listing = stnlp("runs", "list").stdout
    assert listing.count("example-linefit-") == 2 and "failed" in listing
    run_id = first.stdout.split()[1].rstrip(":")
    assert "finished" in stnlp("runs", "logs", run_id).stdout
    assert '"result": "succeeded"' in stnlp("runs", "show", run_id).stdout
    assert "line-length" in stnlp("models", "list").stdout
    assert f'"run_id": "{run_id}"' in stnlp("models", "show", "line-length").stdout
    version = first.stdout.split()[-1]
    rollback = stnlp("models", "rollback", "line-length", version)
    assert rollback.stdout.strip() == f"line-length: latest {version} -> {version}"


def test_set_overrides_are_parsed_and_checked():
    from stnlp.plugins.spec import JobSpec

    spec = JobSpec("job", "c", "m.n:f", "model", hyperparameters={"steps": 20, "name": "x"})
    assert parse_overrides(("steps=5", "name=abc"), spec) == {"steps": 5, "name": "abc"}
    with pytest.raises(UserError, match="job 'job' has no hyperparameter 'nope'"):
        parse_overrides(("nope=1",), spec)
    with pytest.raises(UserError, match="expected key=value"):
        parse_overrides(("steps",), spec)
    with pytest.raises(UserError, match="steps='abc' is not an integer"):  # issue #13.12
        parse_overrides(("steps=abc",), spec)


@pytest.mark.slow
def test_every_builtin_job_runs_on_the_local_backend(tmp_path):
    """Each built-in job's ``tiny`` preset trains on data/sample and publishes its model."""
    settings = Settings(store=str(tmp_path / "store"), stack="test")
    stores = open_stores(settings)
    upload_path(Path(__file__).parents[1] / "data" / "sample", stores.datasets, progress=False)
    specs = build_plugin_manager(settings).job_specs()
    assert specs, "no built-in jobs"
    outcomes = {}
    for spec in specs:
        preset = "tiny" if "tiny" in spec.presets else None
        run_id = train_local(spec, settings, stores=stores, preset=preset, progress=False)
        record = load_run(stores, settings.stack, run_id).record
        outcomes[spec.name] = (record["result"], record.get("error"))
        if record["result"] == "succeeded":
            assert ModelRegistry(stores.models).latest(spec.output_model) == record["model_version"]
    assert {name: r for name, (r, _) in outcomes.items()} == {s.name: "succeeded" for s in specs}, (
        outcomes
    )
