"""No orphans: a supervisor killed at any phase leaves nothing stuck and no second worker.

Issue #13.3: SIGKILL of `stnlp train` left its worker training (started in a new session)
with the run `training` and the lock held; after the stale window a second run started while
the orphan trained on. Each test kills a real supervisor process (``tests/kill_harness.py``)
with SIGKILL, then recovers with the commands a user has (`stnlp runs sweep`, `runs kill`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from stnlp.common.settings import Settings
from stnlp.runtime.registry import ModelRegistry
from stnlp.runtime.runs import JobLock, JobLockedError, Run, list_runs, request_kill
from stnlp.runtime.store import open_stores
from stnlp.runtime.upload import upload_path
from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
JOB = "example-linefit"


def _loaded(tmp_path: Path) -> Settings:
    settings = Settings(store=str(tmp_path / "store"), stack="test")
    folder = tmp_path / "sample" / "transcripts"
    folder.mkdir(parents=True)
    rows = ["name,line"] + [f"Dustin,Line number {i} with some words" for i in range(40)]
    (folder / "S01E01.csv").write_text("\n".join(rows) + "\n")
    upload_path(folder, open_stores(settings).datasets, progress=False)
    return settings


def _harness(phase: str, settings: Settings, marker: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.kill_harness", phase, settings.store, settings.stack,
         str(marker)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _wait(condition, what: str, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _training_worker(stores, stack: str):
    """The live worker of the stack's training run, as recorded (on main: as host:pid)."""
    from stnlp.runtime.procs import ProcessRef

    for record in list_runs(stores, stack):
        worker = ProcessRef.from_record(record.get("worker"))
        if record["state"] == "training" and worker and worker.alive():
            return worker
    return None


def live_workers(run_ids) -> list[int]:
    """Pids of live worker processes (``stnlp.runtime.worker``) of the given runs."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        mine = any(f"/{run_id}-" in cmdline for run_id in run_ids)
        if "stnlp.runtime.worker" in cmdline and mine and state not in "ZX":
            found.append(int(entry.name))
    return found


PHASES = ["locked", "data_sync", "training", "claimed", "published", "unguarded"]
EXPECTED = {"data_sync": "failed", "training": "killed", "claimed": "failed",
            "published": "succeeded", "unguarded": "killed"}  # fmt: skip


@pytest.mark.parametrize("phase", PHASES)
def test_sigkill_of_the_supervisor_at_each_phase(phase, tmp_path, capsys, monkeypatch):
    settings = _loaded(tmp_path)
    stores = open_stores(settings)
    marker = tmp_path / "marker"
    proc = _harness(phase, settings, marker)
    worker = None
    try:
        if phase in ("training", "unguarded"):
            worker = _wait(lambda: _training_worker(stores, settings.stack), "the worker")
        else:
            _wait(marker.exists, f"phase {phase}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    if phase == "training":  # it dies with its supervisor, before anyone sweeps
        _wait(lambda: worker.alive() is False, "the worker to die with its supervisor", 15)
    if phase == "unguarded":
        assert worker.alive(), "the unguarded worker should outlive its supervisor"

    code, out, err = run_cli(capsys, monkeypatch, settings, "runs", "sweep")
    assert code == 0, err

    assert JobLock(stores.results, settings.stack, JOB).holder() is None
    if worker is not None:
        assert worker.alive() is False  # never ended while its worker trains
    records = list_runs(stores, settings.stack)
    latest = ModelRegistry(stores.models).latest("line-length")
    if phase == "locked":
        assert records == [] and "has no record" in out
        return
    else:
        (record,) = records
        assert record["state"] == "cleanup" and record["result"] == EXPECTED[phase], record
        # the record and the pointer agree: a failed run's model never serves
        published = record["result"] == "succeeded"
        assert latest == (record["model_version"] if published else None)
        from stnlp.runtime.backends.local import WORK_ROOT

        assert not [p for p in WORK_ROOT.glob(f"{record['run_id']}-*")]  # no leaked folder
    Run.start(stores, settings.stack, JOB, "local").cleanup()  # the job is free again


def test_runs_kill_ends_a_run_whose_supervisor_is_gone_and_stops_its_worker(
    tmp_path, capsys, monkeypatch
):
    settings = _loaded(tmp_path)
    stores = open_stores(settings)
    proc = _harness("unguarded", settings, tmp_path / "marker")
    try:
        worker = _wait(lambda: _training_worker(stores, settings.stack), "the worker")
        (record,) = list_runs(stores, settings.stack)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    code, out, err = run_cli(capsys, monkeypatch, settings, "runs", "kill", record["run_id"])
    assert code == 0, err
    assert worker.alive() is False
    (ended,) = list_runs(stores, settings.stack)
    assert ended["result"] == "killed" and "supervisor" in ended["error"]


class OneWorkerPerJob(RuleBasedStateMachine):
    """Supervisors start, get killed, get swept; at no step do two workers of the job live."""

    def __init__(self):
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.settings = _loaded(Path(self.tmp.name))
        self.stores = open_stores(self.settings)
        self.procs: list[subprocess.Popen] = []
        self.started = 0

    def run_ids(self) -> list[str]:
        holder = JobLock(self.stores.results, self.settings.stack, JOB).holder()
        return [r["run_id"] for r in list_runs(self.stores, self.settings.stack)] + [holder or "-"]

    def live(self) -> list[subprocess.Popen]:
        return [p for p in self.procs if p.poll() is None]

    @precondition(lambda self: self.started < 4)
    @rule(guarded=st.booleans())
    def start(self, guarded):
        self.started += 1
        phase = "training" if guarded else "unguarded"
        proc = _harness(phase, self.settings, Path(self.tmp.name) / f"m{self.started}")
        self.procs.append(proc)
        # it either trains or is refused (the job is locked) and exits
        _wait(lambda: proc.poll() is not None or _training_worker(self.stores, self.settings.stack),
              "a worker or a refusal")  # fmt: skip

    @precondition(lambda self: self.live())
    @rule(sig=st.sampled_from([signal.SIGKILL, signal.SIGTERM]))
    def kill_supervisor(self, sig):
        for proc in self.live():
            proc.send_signal(sig)
            proc.wait(60)

    @rule()
    def sweep(self):
        from stnlp.runtime.backends.local import sweep_local

        sweep_local(self.stores, self.settings.stack)

    @rule()
    def kill_request(self):
        holder = JobLock(self.stores.results, self.settings.stack, JOB).holder()
        if holder:
            try:
                request_kill(self.stores, self.settings.stack, holder)
            except Exception as exc:  # noqa: BLE001  a run that just ended answers UserError
                assert "already ended" in str(exc) or "no run" in str(exc), exc

    @invariant()
    def at_most_one_live_worker(self):
        assert len(live_workers(self.run_ids())) <= 1

    @invariant()
    def no_worker_trains_for_an_ended_run(self):
        ended = [r["run_id"] for r in list_runs(self.stores, self.settings.stack)
                 if r["state"] == "cleanup"]  # fmt: skip
        assert live_workers(ended) == []

    def teardown(self):
        from stnlp.runtime.backends.local import sweep_local

        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        sweep_local(self.stores, self.settings.stack)
        assert live_workers(self.run_ids()) == []
        try:
            Run.start(self.stores, self.settings.stack, JOB, "local").cleanup()
        except JobLockedError as exc:
            raise AssertionError(f"the job stayed locked: {exc}") from None
        self.tmp.cleanup()


OneWorkerPerJob.TestCase.settings = settings(
    max_examples=6, stateful_step_count=8, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
test_at_most_one_live_worker_per_job = OneWorkerPerJob.TestCase
