"""Fenced publish: a run's model becomes the latest only if the run succeeds (issue #13.5).

The invariant checked after every scenario: the run record and the model pointer agree. A run
recorded ``failed`` or ``killed`` never has its version as the latest; a run whose version is
the latest is recorded ``succeeded``. Scenarios: the run is ended (a kill of a run that looks
stale) before, during and after the pointer moves, and the store fails right after it moved.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from stnlp.common.settings import Settings
from stnlp.runtime.backends.local import Intervals, train_local
from stnlp.runtime.registry import ModelRegistry
from stnlp.runtime.runs import JobLock, Run, list_runs, load_run, request_kill
from stnlp.runtime.store import LocalStore, Stores, open_stores
from stnlp.runtime.upload import upload_path

sys.path.insert(0, str(Path(__file__).parent / "example_plugin"))
from tests.kill_harness import SPEC  # noqa: E402  the example plugin's job, without Gradio

FAST = Intervals(heartbeat=0.1, upload=0.3, poll=0.05, terminate_grace=5)
MODEL = SPEC.output_model


@pytest.fixture
def loaded(tmp_path):
    settings = Settings(store=str(tmp_path / "store"), stack="test")
    folder = tmp_path / "transcripts"
    folder.mkdir()
    rows = ["name,line"] + [f"Dustin,Line number {i}" for i in range(12)]
    (folder / "S01E01.csv").write_text("\n".join(rows) + "\n")
    stores = open_stores(settings)
    upload_path(folder, stores.datasets, progress=False)
    return settings, stores


def _train(settings, stores) -> str | None:
    try:
        return train_local(SPEC, settings, stores=stores, progress=False, intervals=FAST)
    except Exception:  # noqa: BLE001  the scenario decides; the record is what is checked
        return None


def _agree(stores, stack) -> dict:
    """The one run's record, checked against the pointer; the job's lock is free."""
    (record,) = list_runs(stores, stack)
    latest = ModelRegistry(stores.models).latest(MODEL)
    assert record["state"] == "cleanup"
    if record["result"] == "succeeded":
        assert latest == record["model_version"] is not None
    else:
        assert latest is None, f"a {record['result']} run's version {latest} is the latest"
    assert JobLock(stores.results, stack, SPEC.name).holder() is None
    return record


def _kill_stale(stores, stack):
    """What `stnlp runs kill` on another machine does to a run that looks stale from there."""
    (record,) = [r for r in list_runs(stores, stack) if r["state"] != "cleanup"]
    elsewhere = load_run(stores, stack, record["run_id"])
    elsewhere._update(lambda r: r.update(supervisor={"host": "another-host", "pid": 1}))
    request_kill(stores, stack, record["run_id"], stale_after=-1)  # "no heartbeat": ended here


def test_kill_before_the_publish_keeps_the_model_out(loaded, monkeypatch):
    settings, stores = loaded
    original = Run.upload_checkpoints

    def then_killed(self, folder):
        keys = original(self, folder)
        if self.state == "results_sync":
            _kill_stale(stores, settings.stack)
        return keys

    monkeypatch.setattr(Run, "upload_checkpoints", then_killed)
    _train(settings, stores)
    assert _agree(stores, settings.stack)["result"] == "failed"


@pytest.mark.parametrize("when", ["before", "after"])
def test_kill_racing_the_pointer_move(loaded, monkeypatch, when):
    """Killed just before the pointer moves: retracted; just after: the run succeeded."""
    settings, stores = loaded
    original = ModelRegistry.move_latest

    def racing(self, *args, **kwargs):
        if when == "before":
            _kill_stale(stores, settings.stack)
        previous = original(self, *args, **kwargs)
        if when == "after":
            _kill_stale(stores, settings.stack)
        return previous

    monkeypatch.setattr(ModelRegistry, "move_latest", racing)
    _train(settings, stores)
    record = _agree(stores, settings.stack)
    assert record["result"] == ("failed" if when == "before" else "succeeded")


def test_store_failing_right_after_the_pointer_moved(loaded, monkeypatch):
    """The heartbeat after the publish failed and the run said failed while its model served."""
    settings, stores = loaded

    class FailsAfterPointer(LocalStore):
        failures = 0

        def _fail(self):
            if FailsAfterPointer.failures > 0:
                FailsAfterPointer.failures -= 1
                raise OSError("injected: the results store is unreachable")

        def get_with_etag(self, key):
            self._fail()
            return super().get_with_etag(key)

        def put(self, key, data, **kwargs):
            self._fail()
            return super().put(key, data, **kwargs)

    class ArmsTheFault(LocalStore):
        def put(self, key, data, **kwargs):
            etag = super().put(key, data, **kwargs)
            if key.endswith("latest.json"):
                FailsAfterPointer.failures = 3
            return etag

    faulty = Stores(stores.datasets, ArmsTheFault(stores.models.root),
                    FailsAfterPointer(stores.results.root))  # fmt: skip
    monkeypatch.setattr("stnlp.runtime.runs.CLEANUP_BACKOFF", 0.01)
    _train(settings, faulty)
    assert _agree(stores, settings.stack)["result"] == "succeeded"


def test_a_long_publish_keeps_heartbeating(loaded, monkeypatch):
    """A publish longer than the stale window no longer looks like a dead run."""
    settings, stores = loaded
    beats = []
    original = ModelRegistry.stage

    def slow_stage(self, *args, **kwargs):
        (record,) = list_runs(stores, settings.stack)
        beats.append(record["heartbeat"])
        time.sleep(0.6)
        beats.append(load_run(stores, settings.stack, record["run_id"]).record["heartbeat"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ModelRegistry, "stage", slow_stage)
    _train(settings, stores)
    assert beats[1] > beats[0]
    assert _agree(stores, settings.stack)["result"] == "succeeded"
