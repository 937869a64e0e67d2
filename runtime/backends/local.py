"""The local backend: a job's entrypoint in a subprocess on this machine.

The run goes through the state machine of :mod:`stnlp.runtime.runs`: ``data_sync`` copies the
current version of each of the job's input datasets into a work folder; ``training`` runs
``python -m stnlp.runtime.worker`` with output to a log file uploaded while it runs,
heartbeats, and watches for `stnlp runs kill` and the job's maximum runtime; ``results_sync``
uploads metrics and checkpoints and publishes the output folder to the model registry, behind
the fence of :func:`publish_outcome`. A signal to the subprocess or a kill request ends in
``killed``, an exception in ``failed``; ``cleanup`` always follows, and the previous model
version stays the latest unless the run succeeded.

No orphans: the worker gets SIGKILL when this process dies (``PR_SET_PDEATHSIG``), and it ends
itself when its supervisor is gone or has not renewed its lease (a file touched after each
heartbeat written) for :attr:`Intervals.lease` seconds, so a supervisor that lost the store
cannot leave a worker training past the stale window. Work folders live under
:data:`WORK_ROOT`, one per run; those whose processes are all gone are removed by the next run
and by `stnlp runs sweep`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from stnlp.common.errors import DataError
from stnlp.common.settings import Settings
from stnlp.plugins.spec import JobSpec
from stnlp.runtime import logs
from stnlp.runtime.datasets import DatasetStore
from stnlp.runtime.procs import ProcessRef, die_with_parent
from stnlp.runtime.registry import ModelRegistry
from stnlp.runtime.runs import (
    STALE_AFTER_SECONDS,
    FencedError,
    InvalidTransition,
    Run,
    sweep_runs,
)
from stnlp.runtime.store import DamagedObjectError, StoreError, Stores, open_stores
from stnlp.runtime.training import TrainingContext, TrainingOutcome

log = logging.getLogger(__name__)

WORK_ROOT = Path(tempfile.gettempdir()) / f"stnlp-work-{os.getuid()}"
"""Where local runs keep their work folders (``<WORK_ROOT>/<run_id>-*/``), one root per user."""
OWNER_FILE = "owner.json"
LEASE_FILE = "lease"
ENV_SUPERVISOR = "STNLP_SUPERVISOR_PID"
ENV_LEASE_FILE = "STNLP_LEASE_FILE"
ENV_LEASE_SECONDS = "STNLP_LEASE_SECONDS"


@dataclass(frozen=True)
class Intervals:
    """How often the backend heartbeats, uploads logs and polls the subprocess (seconds).

    ``lease``: how long the worker trains on without a heartbeat written, before it stops
    itself; half the stale window, so no second run can start while it still trains.
    """

    heartbeat: float = 5.0
    upload: float = 10.0
    poll: float = 0.1
    terminate_grace: float = 10.0
    lease: float = STALE_AFTER_SECONDS / 2


def train_local(
    spec: JobSpec,
    settings: Settings,
    *,
    stores: Stores | None = None,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    run_id: str | None = None,
    progress: bool = True,
    intervals: Intervals = Intervals(),
) -> str:
    """Run ``spec`` locally through the run state machine; return the run id.

    The outcome is in the run record (``result``). Errors before training (a dataset missing
    from the store, the job already running) are raised after the run is recorded and cleaned.
    """
    stores = stores or open_stores(settings)
    params = spec.resolved_hyperparameters(preset, overrides)
    reap_work_dirs()
    run = Run.start(
        stores,
        settings.stack,
        spec.name,
        "local",
        run_id=run_id,
        hyperparameters=params,
        preset=preset,
        model=spec.output_model,
        instance_id=socket.gethostname(),
        supervisor=ProcessRef.current().to_record(),
    )
    work = new_work_dir(run.run_id)
    try:
        with run:
            with run.keep_alive(intervals.heartbeat):
                ctx = _sync_data(run, spec, stores, work, params)
            outcome = _train(run, spec, ctx, work, progress, intervals)
            if outcome is not None:
                publish_outcome(run, spec, stores, ctx, outcome, intervals.heartbeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return run.run_id


def new_work_dir(run_id: str) -> Path:
    """A fresh work folder for ``run_id`` under :data:`WORK_ROOT`, owned by this process."""
    WORK_ROOT.mkdir(mode=0o700, parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{run_id}-", dir=WORK_ROOT))
    _write_owners(work, [ProcessRef.current()])
    return work


def _write_owners(work: Path, owners: list[ProcessRef]) -> None:
    body = json.dumps([owner.to_record() for owner in owners])
    (work / OWNER_FILE).write_text(body, encoding="utf-8")


def reap_work_dirs(root: Path | None = None) -> list[Path]:
    """Remove work folders whose owning processes (supervisor, worker) are all gone.

    A folder with no readable owner file is left alone unless it is older than the stale
    window. Returns the folders removed.
    """
    root = root or WORK_ROOT
    removed = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            stored = json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))
            owners = [ProcessRef.from_record(owner) for owner in stored]
        except (OSError, ValueError, TypeError):
            with contextlib.suppress(OSError):
                if time.time() - folder.stat().st_mtime < STALE_AFTER_SECONDS:
                    continue
            owners = []
        if any(owner is None or owner.alive() is not False for owner in owners):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    if removed:
        logs.event(log, "work folders removed", count=len(removed))
    return removed


def sweep_local(stores: Stores, stack: str, stale_after: float = STALE_AFTER_SECONDS) -> list[str]:
    """What `stnlp runs sweep` does for local runs: end those nobody carries on (stopping a
    worker that outlived its supervisor), clear abandoned locks, remove dead work folders."""
    done = sweep_runs(stores, stack, stale_after)
    done += [f"removed work folder {folder}" for folder in reap_work_dirs()]
    return done


def _sync_data(
    run: Run, spec: JobSpec, stores: Stores, work: Path, params: dict[str, Any]
) -> TrainingContext:
    run.transition("data_sync")
    data_dir = work / "data"
    run.heartbeat(datasets=sync_datasets(spec, stores, data_dir))
    return TrainingContext.in_directory(work / "job", run.run_id, spec.name, params, data_dir)


def sync_datasets(spec: JobSpec, stores: Stores, data_dir: Path) -> dict[str, str | None]:
    """Copy the current version of each of the job's input datasets to ``data_dir/<name>``.

    Reads each dataset's pointer and manifest, downloads (confined to ``data_dir/<name>``) and
    verifies every file (see :meth:`stnlp.runtime.datasets.DatasetStore.fetch`). Returns the
    version used per dataset (``None`` for the unversioned layout); fails on a missing one.
    """
    datasets = DatasetStore(stores.datasets)
    used = {}
    for name in spec.input_datasets:
        try:
            used[name] = datasets.fetch(name, data_dir / name).version
        except DataError as exc:
            raise DataError(
                f"job {spec.name!r}: dataset {name!r} has no files under raw/{name}/ in "
                f"{stores.datasets.description}; load it with `stnlp data upload PATH`"
            ) from exc
    return used


def write_work_file(work_file: Path, spec: JobSpec, ctx: TrainingContext) -> None:
    """Write the worker's ``WORK_JSON`` (see :mod:`stnlp.runtime.worker`)."""
    body = {"entrypoint": spec.entrypoint, "context": json.loads(ctx.to_json())}
    work_file.write_text(json.dumps(body), encoding="utf-8")


def read_outcome(work: Path) -> TrainingOutcome:
    """The outcome a successful worker wrote beside its ``WORK_JSON``."""
    return TrainingOutcome(**json.loads((work / "outcome.json").read_text(encoding="utf-8")))


def worker_env(lease_file: Path | None = None, lease: float | None = None) -> dict[str, str]:
    """The parent's environment, with its import path, so the worker sees the same modules.

    With ``lease_file``, the worker watches this process and the lease (see the module).
    """
    paths = [p for p in sys.path if p and Path(p).is_dir()]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1"}
    if lease_file is not None:
        env.update({ENV_SUPERVISOR: str(os.getpid()), ENV_LEASE_FILE: str(lease_file),
                    ENV_LEASE_SECONDS: str(lease)})  # fmt: skip
    return env


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        disable=not enabled,
        transient=True,
    )


def _train(
    run: Run,
    spec: JobSpec,
    ctx: TrainingContext,
    work: Path,
    progress: bool,
    intervals: Intervals,
) -> TrainingOutcome | None:
    """Run the worker; return its outcome, or ``None`` after recording ``failed``/``killed``."""
    work_file = work / "work.json"
    write_work_file(work_file, spec, ctx)
    log_path = work / "train.log"
    lease = work / LEASE_FILE
    lease.touch()
    run.transition("training")
    kill_reason = None
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stnlp.runtime.worker", str(work_file)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=worker_env(lease, intervals.lease),
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
    worker = ProcessRef.of(proc.pid)
    _write_owners(work, [ProcessRef.current(), worker])
    try:
        run.heartbeat(instance_id=f"{socket.gethostname()}:{proc.pid}", worker=worker.to_record())
        kill_reason = _watch(run, spec, ctx, proc, (log_path, lease), progress, intervals)
    finally:
        stop_process(proc, intervals.terminate_grace)
        with contextlib.suppress(StoreError):
            run.upload_logs(log_path)
            run.write_metrics(ctx.read_metrics())
    if isinstance(kill_reason, FencedError):
        raise kill_reason
    code = proc.returncode
    if kill_reason or code < 0:
        reason = kill_reason or f"training process ended by {signal.Signals(-code).name}"
        run.transition("killed", error=reason)
        return None
    if code != 0:
        run.transition("failed", error=worker_error(work, code))
        return None
    return read_outcome(work)


def _beat(run: Run, lease: Path) -> dict[str, Any] | FencedError | None:
    """One heartbeat: the record, a :class:`FencedError` when the run was ended elsewhere, or
    ``None`` when the store could not be written (the lease is not renewed)."""
    try:
        record = run.heartbeat()
    except (InvalidTransition, DamagedObjectError) as exc:
        return FencedError(f"run {run.run_id} was ended or damaged elsewhere: {exc}")
    except Exception as exc:  # the store is unreachable: try again at the next beat
        logs.event(log, "heartbeat failed", logging.WARNING, run_id=run.run_id,
                   error=f"{type(exc).__name__}: {exc}")  # fmt: skip
        return None
    lease.touch()
    return record


def _watch(
    run: Run,
    spec: JobSpec,
    ctx: TrainingContext,
    proc: subprocess.Popen,
    files: tuple[Path, Path],
    progress: bool,
    intervals: Intervals,
) -> str | FencedError | None:
    """Poll the worker until it exits; heartbeat, upload logs, act on kills and the deadline.

    Returns why the worker was stopped: a message, or a :class:`FencedError` when the run was
    ended by someone else (a sweep, a kill of a stale run).
    """
    log_path, lease = files
    started = time.monotonic()
    deadline = started + spec.max_runtime_minutes * 60
    next_beat = next_upload = last_beat = started
    kill_reason: str | FencedError | None = None
    total = ctx.param("steps")
    with _progress(progress) as bar:
        task = bar.add_task(f"{spec.name} {run.run_id}", total=total, status="starting")
        while proc.poll() is None:
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + intervals.heartbeat
                record = _beat(run, lease)
                if isinstance(record, FencedError):
                    kill_reason = kill_reason or record
                    proc.terminate()
                elif record is not None:
                    last_beat = now
                    if record.get("kill_requested") and kill_reason is None:
                        kill_reason = "killed by request (stnlp runs kill)"
                        proc.terminate()
                elif now - last_beat > intervals.lease and kill_reason is None:
                    kill_reason = f"no heartbeat could be written for {intervals.lease:.0f}s"
                    proc.terminate()
            if now >= next_upload:
                next_upload = now + intervals.upload
                with contextlib.suppress(StoreError):  # uploaded again at the next interval
                    run.upload_logs(log_path)
                    run.upload_checkpoints(ctx.checkpoint_dir)
            if now >= deadline and kill_reason is None:
                kill_reason = f"exceeded max_runtime_minutes={spec.max_runtime_minutes}"
                proc.terminate()
            metrics = ctx.read_metrics()
            if metrics:
                bar.update(
                    task, completed=metrics[-1].get("step") or 0, status=_status(metrics[-1])
                )
            time.sleep(intervals.poll)
    return kill_reason


def _status(record: dict[str, Any]) -> str:
    shown = {k: v for k, v in record.items() if k not in ("time", "step")}
    return " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()
    )


def stop_process(proc: subprocess.Popen, grace: float) -> None:
    """Terminate the worker if it still runs; kill it after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def worker_error(work: Path, code: int) -> str:
    """The worker's recorded error (from ``error.json``), or its exit status."""
    error_file = work / "error.json"
    if error_file.exists():
        error = json.loads(error_file.read_text(encoding="utf-8"))
        return f"{error['type']}: {error['message']}"
    return f"training process exited with status {code}"


def publish_outcome(
    run: Run,
    spec: JobSpec,
    stores: Stores,
    ctx: TrainingContext,
    outcome: TrainingOutcome,
    heartbeat: float = Intervals.heartbeat,
    extra: dict[str, Any] | None = None,
) -> None:
    """Sync checkpoints, then publish the job's output as the model's new version: the fence.

    Heartbeats go on while it uploads. The version is staged (complete, not yet the latest),
    claimed in the run record (only while the run holds its lock in ``results_sync``), and
    then the pointer moves; the record is read again after, and if the run was ended in the
    meantime the pointer is moved back (:meth:`Run.settle_publish`) and this raises
    :class:`FencedError`. Publishing is the run's last step: ``cleanup`` (``succeeded``)
    follows. ``extra`` adds fields to the version's manifest (a batch run's ``sharding``).
    """
    run.transition("results_sync")
    registry = ModelRegistry(stores.models)
    with run.keep_alive(heartbeat):
        run.upload_checkpoints(ctx.checkpoint_dir)
        version = registry.stage(
            spec.output_model,
            ctx.output_dir,
            base_model=outcome.base_model,
            run_id=run.run_id,
            metrics=outcome.metrics,
            extra=extra,
        )
        run.claim_publish(version, metrics=outcome.metrics)
        registry.move_latest(spec.output_model, version, "publish", run_id=run.run_id)
        if not run.settle_publish():
            raise FencedError(f"run {run.run_id} was ended while publishing {version}")
    logs.event(log, "model published", model=spec.output_model, version=version, run_id=run.run_id)
