"""The local backend: a job's entrypoint in a subprocess on this machine.

The run goes through the state machine of :mod:`stnlp.runtime.runs`: ``data_sync`` copies the job's
input datasets (``raw/<dataset>/``) into a work folder; ``training`` runs
``python -m stnlp.runtime.worker`` with output to a log file uploaded while it runs, heartbeats, and
watches for `stnlp runs kill` and the job's maximum runtime; ``results_sync`` uploads metrics and
checkpoints and publishes the output folder to the model registry. A signal to the subprocess
or a kill request ends in ``killed``, an exception in ``failed``; ``cleanup`` always follows,
and the previous model version stays the latest unless the run succeeded.
"""

from __future__ import annotations

import json
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
from stnlp.runtime.registry import ModelRegistry
from stnlp.runtime.runs import Run
from stnlp.runtime.store import Stores, open_stores
from stnlp.runtime.training import TrainingContext, TrainingOutcome


@dataclass(frozen=True)
class Intervals:
    """How often the backend heartbeats, uploads logs and polls the subprocess (seconds)."""

    heartbeat: float = 5.0
    upload: float = 10.0
    poll: float = 0.1
    terminate_grace: float = 10.0


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
    )
    work = Path(tempfile.mkdtemp(prefix=f"stnlp-{run.run_id}-"))
    try:
        with run:
            ctx = _sync_data(run, spec, stores, work, params)
            outcome = _train(run, spec, ctx, work, progress, intervals)
            if outcome is not None:
                publish_outcome(run, spec, stores, ctx, outcome)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return run.run_id


def _sync_data(
    run: Run, spec: JobSpec, stores: Stores, work: Path, params: dict[str, Any]
) -> TrainingContext:
    run.transition("data_sync")
    data_dir = work / "data"
    sync_datasets(spec, stores, data_dir)
    return TrainingContext.in_directory(work / "job", run.run_id, spec.name, params, data_dir)


def sync_datasets(spec: JobSpec, stores: Stores, data_dir: Path) -> None:
    """Download each of the job's input datasets to ``data_dir/<name>``; fail on an empty one."""
    for name in spec.input_datasets:
        stores.datasets.sync_down(f"raw/{name}/", data_dir / name)
        if not (data_dir / name).is_dir():
            raise DataError(
                f"job {spec.name!r}: dataset {name!r} has no files under raw/{name}/ in "
                f"{stores.datasets.description}; load it with `stnlp data upload PATH`"
            )


def write_work_file(work_file: Path, spec: JobSpec, ctx: TrainingContext) -> None:
    """Write the worker's ``WORK_JSON`` (see :mod:`stnlp.runtime.worker`)."""
    body = {"entrypoint": spec.entrypoint, "context": json.loads(ctx.to_json())}
    work_file.write_text(json.dumps(body), encoding="utf-8")


def read_outcome(work: Path) -> TrainingOutcome:
    """The outcome a successful worker wrote beside its ``WORK_JSON``."""
    return TrainingOutcome(**json.loads((work / "outcome.json").read_text(encoding="utf-8")))


def worker_env() -> dict[str, str]:
    """The parent's environment, with its import path, so the worker sees the same modules."""
    paths = [p for p in sys.path if p and Path(p).is_dir()]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1"}


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
    run.transition("training")
    kill_reason = None
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stnlp.runtime.worker", str(work_file)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=worker_env(),
            start_new_session=True,
        )
    try:
        run.heartbeat(instance_id=f"{socket.gethostname()}:{proc.pid}")
        kill_reason = _watch(run, spec, ctx, proc, log_path, progress, intervals)
    finally:
        stop_process(proc, intervals.terminate_grace)
        run.upload_logs(log_path)
        run.write_metrics(ctx.read_metrics())
    code = proc.returncode
    if kill_reason or code < 0:
        reason = kill_reason or f"training process ended by {signal.Signals(-code).name}"
        run.transition("killed", error=reason)
        return None
    if code != 0:
        run.transition("failed", error=worker_error(work, code))
        return None
    return read_outcome(work)


def _watch(
    run: Run,
    spec: JobSpec,
    ctx: TrainingContext,
    proc: subprocess.Popen,
    log_path: Path,
    progress: bool,
    intervals: Intervals,
) -> str | None:
    """Poll the worker until it exits; heartbeat, upload logs, act on kills and the deadline."""
    started = time.monotonic()
    deadline = started + spec.max_runtime_minutes * 60
    next_beat = next_upload = started
    kill_reason = None
    total = ctx.param("steps")
    with _progress(progress) as bar:
        task = bar.add_task(f"{spec.name} {run.run_id}", total=total, status="starting")
        while proc.poll() is None:
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + intervals.heartbeat
                if run.heartbeat().get("kill_requested") and kill_reason is None:
                    kill_reason = "killed by request (stnlp runs kill)"
                    proc.terminate()
            if now >= next_upload:
                next_upload = now + intervals.upload
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
    run: Run, spec: JobSpec, stores: Stores, ctx: TrainingContext, outcome: TrainingOutcome
) -> None:
    """Sync checkpoints and metrics, then publish the job's output as a new model version."""
    run.transition("results_sync")
    run.upload_checkpoints(ctx.checkpoint_dir)
    version = ModelRegistry(stores.models).publish(
        spec.output_model,
        ctx.output_dir,
        base_model=outcome.base_model,
        run_id=run.run_id,
        metrics=outcome.metrics,
    )
    run.heartbeat(model_version=version, metrics=outcome.metrics)
