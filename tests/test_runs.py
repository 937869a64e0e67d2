"""Run records: transitions, the job lock, heartbeats, logs, kill requests."""

from __future__ import annotations

import json
import threading

import pytest

from stnlp.common.errors import UserError
from stnlp.runtime.runs import (
    TRANSITIONS,
    InvalidTransition,
    JobLock,
    JobLockedError,
    Run,
    list_runs,
    load_run,
    request_kill,
)


def test_happy_path_is_recorded(stores, tmp_path):
    run = Run.start(stores, "dev", "job-a", "local", hyperparameters={"lr": 0.1})
    for state in ("data_sync", "training", "results_sync"):
        run.transition(state)
    run.heartbeat(instance_id="host:1")
    log = tmp_path / "train.log"
    log.write_text("step 1\n")
    run.upload_logs(log)
    log.write_text("step 1\nstep 2\n")
    run.upload_logs(log)
    run.write_metrics([{"step": 1, "loss": 2.0}])
    run.cleanup()
    stored = load_run(stores, "dev", run.run_id).record
    assert stored["state"] == "cleanup" and stored["result"] == "succeeded"
    assert stored["instance_id"] == "host:1" and stored["hyperparameters"] == {"lr": 0.1}
    assert [h["state"] for h in stored["history"]] == [
        "initialization",
        "data_sync",
        "training",
        "results_sync",
        "cleanup",
    ]
    assert stores.results.get(f"dev/runs/{run.run_id}/logs/train.log") == b"step 1\nstep 2\n"
    assert json.loads(stores.results.get(f"dev/runs/{run.run_id}/training.json"))[0]["loss"] == 2
    assert JobLock(stores.results, "dev", "job-a").holder() is None
    assert [r["run_id"] for r in list_runs(stores, "dev")] == [run.run_id]


def test_invalid_transitions_are_refused_and_not_stored(stores):
    run = Run.start(stores, "dev", "job-a", "local")
    with pytest.raises(InvalidTransition, match="cannot go from 'initialization' to 'training'"):
        run.transition("training")
    with pytest.raises(InvalidTransition, match="unknown state"):
        run.transition("sleeping")
    run.transition("data_sync")
    with pytest.raises(InvalidTransition):
        run.transition("killed")
    assert load_run(stores, "dev", run.run_id).state == "data_sync"
    run.cleanup()
    with pytest.raises(InvalidTransition, match="terminal"):
        run.transition("failed")


def test_exception_inside_a_run_records_failed_then_cleanup(stores):
    with pytest.raises(RuntimeError), Run.start(stores, "dev", "job-a", "local") as run:
        run.transition("data_sync")
        raise RuntimeError("disk full")
    stored = load_run(stores, "dev", run.run_id).record
    assert [h["state"] for h in stored["history"]][-2:] == ["failed", "cleanup"]
    assert stored["error"] == "RuntimeError: disk full" and stored["result"] == "failed"


def test_cleanup_from_the_middle_marks_failed(stores):
    run = Run.start(stores, "dev", "job-a", "local")
    run.transition("data_sync")
    run.cleanup()
    run.cleanup()  # idempotent
    stored = load_run(stores, "dev", run.run_id).record
    assert stored["error"] == "interrupted during data_sync" and stored["result"] == "failed"


def test_sixteen_threads_take_one_job_lock(stores):
    winners, holders = [], []
    barrier = threading.Barrier(16)

    def start(i: int) -> None:
        barrier.wait()
        try:
            winners.append(Run.start(stores, "dev", "job-a", "local", run_id=f"job-a-{i}"))
        except JobLockedError as exc:
            holders.append(exc.holder)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1 and len(holders) == 15
    assert set(holders) == {winners[0].run_id}
    with pytest.raises(JobLockedError, match=f"active run {winners[0].run_id}"):
        Run.start(stores, "dev", "job-a", "local")
    Run.start(stores, "dev", "job-b", "local").cleanup()  # other jobs are not blocked
    winners[0].cleanup()
    Run.start(stores, "dev", "job-a", "local").cleanup()
    assert len(list_runs(stores, "dev", job="job-a")) == 2


def test_concurrent_writers_do_not_lose_updates(stores):
    run = Run.start(stores, "dev", "job-a", "local")
    other = load_run(stores, "dev", run.run_id)
    run.transition("data_sync")
    other.heartbeat(instance_id="i-123")  # stale etag: rereads, keeps data_sync
    run.transition("training")  # stale etag: rereads, keeps instance_id
    stored = load_run(stores, "dev", run.run_id).record
    assert stored["state"] == "training" and stored["instance_id"] == "i-123"
    with pytest.raises(InvalidTransition):
        other.transition("data_sync")


def test_kill_request_and_stale_runs(stores):
    run = Run.start(stores, "dev", "job-a", "local")
    run.transition("data_sync")
    run.transition("training")
    request_kill(stores, "dev", run.run_id)
    assert run.heartbeat()["kill_requested"] is True
    assert run.state == "training"
    request_kill(stores, "dev", run.run_id, stale_after=-1)  # nobody heartbeating: ended here
    stored = load_run(stores, "dev", run.run_id).record
    assert stored["result"] == "killed" and stored["state"] == "cleanup"
    assert JobLock(stores.results, "dev", "job-a").holder() is None
    with pytest.raises(UserError, match="already ended"):
        request_kill(stores, "dev", run.run_id)
    with pytest.raises(UserError, match="no run 'nope'"):
        load_run(stores, "dev", "nope")


def test_transition_table_matches_the_guide():
    assert TRANSITIONS["initialization"] == {"data_sync", "failed"}
    assert TRANSITIONS["training"] == {"results_sync", "failed", "killed"}
    assert TRANSITIONS["failed"] == TRANSITIONS["killed"] == {"cleanup"}
    assert TRANSITIONS["cleanup"] == set()


def test_lock_left_by_an_ended_run_is_taken_over(stores):
    run = Run.start(stores, "dev", "job-a", "local")
    run.transition("failed", error="x")
    lock_body = stores.results.get("dev/locks/job-a.json")
    run.cleanup()
    stores.results.put("dev/locks/job-a.json", lock_body)  # as if the release had failed
    nxt = Run.start(stores, "dev", "job-a", "local")
    assert JobLock(stores.results, "dev", "job-a").holder() == nxt.run_id
    with pytest.raises(JobLockedError, match=nxt.run_id):
        Run.start(stores, "dev", "job-a", "local")
    nxt.cleanup()


def test_logs_and_checkpoints_carry_the_expiry_tags(s3_client, tmp_path):
    """S3 lifecycle rules expire run logs and checkpoints by tag, so a run's uploads carry it."""
    from stnlp.common.names import EXPIRE_TAG
    from stnlp.runtime.runs import Run
    from stnlp.runtime.store import S3Store, Stores
    from tests.conftest import new_bucket

    stores = Stores(*(S3Store(new_bucket(s3_client, kind), s3_client) for kind in "dmr"))
    log = tmp_path / "worker.log"
    log.write_text("step 1\n")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "state.json").write_text("{}")
    run = Run.start(stores, "dev", "tagged-job", "local")
    run.upload_logs(log)
    run.upload_checkpoints(tmp_path / "ckpt")
    run.cleanup()
    for key, value in (("logs/worker.log", "logs"), ("checkpoints/state.json", "checkpoints")):
        full_key = f"dev/runs/{run.run_id}/{key}"
        tagging = s3_client.get_object_tagging(Bucket=stores.results.bucket, Key=full_key)
        assert tagging["TagSet"] == [{"Key": EXPIRE_TAG, "Value": value}]


def test_a_sweep_never_ends_a_run_whose_supervisor_lives_here(stores):
    """However stale its heartbeat, a run carried on by a live process here is left alone;
    a run whose supervisor is gone is ended at once, without waiting for the stale window."""
    from stnlp.runtime.procs import ProcessRef
    from stnlp.runtime.runs import sweep_runs

    alive = Run.start(stores, "dev", "job-a", "local",
                      supervisor=ProcessRef.current().to_record())  # fmt: skip
    assert sweep_runs(stores, "dev", stale_after=-1) == []
    gone = Run.start(stores, "dev", "job-b", "local",
                     supervisor={"host": ProcessRef.current().host, "pid": 2**22 + 7})  # fmt: skip
    (done,) = sweep_runs(stores, "dev", stale_after=3600)
    assert gone.run_id in done and "supervisor" in done
    assert load_run(stores, "dev", gone.run_id).record["result"] == "failed"
    assert JobLock(stores.results, "dev", "job-a").holder() == alive.run_id
    alive.cleanup()
