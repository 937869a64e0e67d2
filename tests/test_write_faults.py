"""Every conditional write survives a request that lands but whose response is lost.

S3 faults come from :class:`tests.s3_faults.LostResponse`: the request reaches moto's server,
then the client sees the connection drop, so its retry meets its own write (AWS documents a
412 for a conditional write that finds the condition broken, which is what the retry gets).
Checked per write: the lock, the run record (create and update), the model version (artifact
and manifest) and pointer, the dataset version and pointer, and the lock's release. Then the
locks that no command could clear (issue #13.1) and the release that deleted a takeover's lock
(issue #13.6).
"""

from __future__ import annotations

import json

import pytest

from stnlp.common.errors import ConflictError
from stnlp.common.names import BUCKET_KINDS
from stnlp.runtime import runs
from stnlp.runtime.registry import ModelRegistry
from stnlp.runtime.runs import JobLock, JobLockedError, Run, load_run
from stnlp.runtime.store import LocalStore, S3Store, Stores
from stnlp.runtime.upload import upload_path
from tests.conftest import new_bucket
from tests.helpers import run_cli
from tests.s3_faults import LostResponse


@pytest.fixture
def s3(s3_client):
    """Fresh S3 stores on moto with quick retries, and their client."""
    stores = Stores(*(S3Store(new_bucket(s3_client, kind), s3_client, backoff=0.01)
                      for kind in BUCKET_KINDS))  # fmt: skip
    return stores, s3_client


def _model(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "weights.bin").write_bytes(b"w" * 64)
    return folder


def test_lock_write_that_landed_counts_as_taken(s3):
    """Issue #13.1: the retry got 412 and the run was "locked by" its own id."""
    stores, client = s3
    with LostResponse(client, "PutObject", key_contains="locks") as lost:
        run = Run.start(stores, "dev", "job-a", "local")
    assert lost.landed == [200]
    assert JobLock(stores.results, "dev", "job-a").holder() == run.run_id
    assert load_run(stores, "dev", run.run_id).state == "initialization"
    run.cleanup()
    assert JobLock(stores.results, "dev", "job-a").holder() is None


def test_lock_takeover_that_landed_counts_as_taken(s3):
    """The conditional replace of an abandoned lock, its response lost."""
    stores, client = s3
    stores.results.put("dev/locks/job-a.json", b"{}")  # damaged: taken over
    with LostResponse(client, "PutObject", key_contains="locks", header="If-Match") as lost:
        run = Run.start(stores, "dev", "job-a", "local")
    assert lost.landed == [200]
    assert JobLock(stores.results, "dev", "job-a").holder() == run.run_id
    run.cleanup()


def test_record_create_and_update_that_landed_count_once(s3):
    """Issue #13.7: the retry failed the run: cannot go from 'training' to 'training'."""
    stores, client = s3
    with LostResponse(client, "PutObject", key_contains="state.json"):
        run = Run.start(stores, "dev", "job-a", "local")
    for state in ("data_sync", "training"):
        with LostResponse(client, "PutObject", key_contains="state.json") as lost:
            run.transition(state)
        assert lost.landed == [200]
    history = [h["state"] for h in load_run(stores, "dev", run.run_id).record["history"]]
    assert history == ["initialization", "data_sync", "training"]
    run.cleanup()


def test_update_that_landed_under_a_later_write_is_not_reapplied(tmp_path):
    """The run record's ``writes`` settle a lost response even after someone else wrote."""
    base = Stores(*(LocalStore(tmp_path / kind) for kind in BUCKET_KINDS))
    run = Run.start(base, "dev", "job-a", "local")

    class LandThenLose(LocalStore):
        """Lands the next record write, lets another writer in, then reports a conflict."""

        armed = True

        def put(self, key, data, *, if_none_match=False, if_match=None):
            etag = super().put(key, data, if_none_match=if_none_match, if_match=if_match)
            if self.armed and key.endswith("state.json"):
                self.armed = False
                load_run(base, "dev", run.run_id).heartbeat(instance_id="someone-else")
                raise ConflictError("injected: the response was lost")
            return etag

    run.stores = Stores(base.datasets, base.models, LandThenLose(tmp_path / "results"))
    run.transition("data_sync")
    record = load_run(base, "dev", run.run_id).record
    assert [h["state"] for h in record["history"]] == ["initialization", "data_sync"]
    assert record["instance_id"] == "someone-else"
    run.cleanup()


def test_model_version_and_pointer_writes_that_landed(s3, tmp_path):
    stores, client = s3
    registry = ModelRegistry(stores.models)
    with LostResponse(client, "PutObject", count=3) as lost:  # weights, manifest, pointer
        version = registry.publish("demo", _model(tmp_path / "m"))
    assert lost.landed == [200, 200, 200]
    assert registry.latest("demo") == version
    assert registry.pointer("demo")[0]["previous"] is None  # moved once, not twice
    assert registry.fetch("demo", dest=tmp_path / "copy").version == version


def test_dataset_version_and_pointer_writes_that_landed(s3, tmp_path):
    stores, client = s3
    folder = tmp_path / "transcripts"
    folder.mkdir()
    (folder / "S01E01.csv").write_text("name,line\nMike,Hello there.\n")
    with LostResponse(client, "PutObject", count=3) as lost:  # file, manifest, pointer
        report = upload_path(folder, stores.datasets, progress=False)
    assert lost.landed == [200, 200, 200]
    from stnlp.runtime.datasets import DatasetStore

    datasets = DatasetStore(stores.datasets)
    assert datasets.latest("transcripts") == report.versions["transcripts"]
    assert datasets.versions("transcripts") == [report.versions["transcripts"]]


def test_lock_release_that_landed(s3):
    stores, client = s3
    run = Run.start(stores, "dev", "job-a", "local")
    with LostResponse(client, "DeleteObject") as lost:
        run.cleanup()
    assert lost.landed == [204]
    assert JobLock(stores.results, "dev", "job-a").holder() is None


@pytest.fixture
def no_grace(monkeypatch):
    monkeypatch.setattr(runs, "LOCK_GRACE_SECONDS", 0.0)


def test_crash_right_after_taking_the_lock_is_cleared_by_runs_kill(
    stores, stores_settings, capsys, monkeypatch, no_grace
):
    """Issue #13.1: `runs kill ID` answered "no run" and the job stayed locked."""
    lock = JobLock(stores.results, stores_settings.stack, "job-a")
    lock.acquire("job-a-20260101T000000-abcdef")  # the process died here: no record
    code, out, err = run_cli(capsys, monkeypatch, stores_settings, "runs", "kill",
                             "job-a-20260101T000000-abcdef")  # fmt: skip
    assert code == 0, err
    assert "released lock" in out and "has no record" in out
    Run.start(stores, stores_settings.stack, "job-a", "local").cleanup()


def test_a_young_lock_without_record_is_not_cleared(stores, stores_settings, capsys,
                                                    monkeypatch):
    JobLock(stores.results, stores_settings.stack, "job-a").acquire("job-a-1")
    code, _, err = run_cli(capsys, monkeypatch, stores_settings, "runs", "kill", "job-a-1")
    assert code == 2 and "is starting" in err and err.count("\n") == 1
    with pytest.raises(JobLockedError):
        Run.start(stores, stores_settings.stack, "job-a", "local")


@pytest.mark.parametrize("body", [b"{}", b"", b"[1]", b"{\"run_id\": \"../../x\"}", b"\xff"])
def test_a_damaged_lock_is_taken_over_and_swept(stores, stores_settings, capsys, monkeypatch,
                                                body):
    """Issue #13.1: a lock holding ``{}`` blocked the job until deleted by hand."""
    key = f"{stores_settings.stack}/locks/job-a.json"
    stores.results.put(key, body)
    code, out, err = run_cli(capsys, monkeypatch, stores_settings, "runs", "sweep")
    assert code == 0, err
    assert "released lock" in out and "damaged" in out
    stores.results.put(key, body)
    run = Run.start(stores, stores_settings.stack, "job-a", "local")  # taken over
    assert json.loads(stores.results.get(key))["run_id"] == run.run_id
    run.cleanup()


def test_release_never_deletes_a_takeovers_lock(tmp_path):
    """Issue #13.6: check-then-delete removed the lock a new run had just taken over."""
    stores = Stores(*(LocalStore(tmp_path / kind) for kind in BUCKET_KINDS))
    first = Run.start(stores, "dev", "job-a", "local")
    first.transition("failed", error="x")
    stale_lock = stores.results.get("dev/locks/job-a.json")
    first.transition("cleanup")
    stores.results.put("dev/locks/job-a.json", stale_lock)  # as if its release had failed
    takeover = {}

    class TakeoverBeforeDelete(LocalStore):
        def delete(self, key, *, if_match=None):
            if key.endswith("locks/job-a.json") and not takeover:
                takeover["run"] = Run.start(stores, "dev", "job-a", "local")
            super().delete(key, **({"if_match": if_match} if if_match else {}))

    racing = TakeoverBeforeDelete(tmp_path / "results")
    first.stores = Stores(stores.datasets, stores.models, racing)
    first.cleanup()  # releases again: must not remove the takeover's lock
    assert JobLock(stores.results, "dev", "job-a").holder() == takeover["run"].run_id
    with pytest.raises(JobLockedError):
        Run.start(stores, "dev", "job-a", "local")  # no third run
    takeover["run"].cleanup()
