"""What runs on a training instance: ``python -m stnlp.runtime.bootstrap --stack S --job J``.

The launching side (:mod:`stnlp.runtime.backends.ec2` or
:mod:`stnlp.runtime.backends.sagemaker`) has already taken the job lock, created the run
record (with the resolved hyperparameters and the run id the bootstrap gets as ``--run-id``) and
shipped the release this code was installed from (the project's wheel, plugin wheels, the
dependency lock). The bootstrap then drives the run's state machine on the instance:

``initialization``: start the watchdog (EC2), run the preflight checks (GPUs seen by torch,
free disk, input data reachable). ``data_sync``: input datasets, the hub models the job names
(cached once per stack in the models bucket, :mod:`stnlp.runtime.hub`) and, when resuming, the
run's checkpoints and metrics come down. ``training``: the job's entrypoint runs
through ``stnlp.runtime.worker`` (under torchrun when the job asks for several GPUs) while a
heartbeat thread uploads logs, metrics and checkpoints and watches for `stnlp runs kill`, and
(EC2 spot) a poller watches the spot notice. ``results_sync``: the output is published to the
model registry. Then ``cleanup`` releases the lock, and on EC2 the instance shuts itself down
(its shutdown behaviour is ``terminate``; the instance role may terminate nothing).

Any error records ``failed`` with its message and uploads the logs. A spot notice stops the
worker, uploads the checkpoints, records the interruption and leaves the run in ``training``
with its lock held, so relaunching the same run id resumes from the last checkpoint.

Settings come from the environment (see :class:`Options`), so a sandbox can stand for an
instance: a work folder, a metadata stub, S3 on moto.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stnlp.common.errors import UserError
from stnlp.common.settings import Settings, load_settings
from stnlp.plugins.spec import JobSpec
from stnlp.runtime import logs, watchdog
from stnlp.runtime.backends.local import (
    publish_outcome,
    read_outcome,
    stop_process,
    sync_datasets,
    worker_env,
    worker_error,
    write_work_file,
)
from stnlp.runtime.distributed import launch_command
from stnlp.runtime.environ import parse_number
from stnlp.runtime.hub import fetch_hub_models, hub_models, ssm_token
from stnlp.runtime.manifest import load_manifest
from stnlp.runtime.preflight import check_data, check_disk, check_gpus, run_preflight
from stnlp.runtime.runs import Run, load_run
from stnlp.runtime.spot import DEFAULT_IMDS_URL, Imds, SpotNotice, SpotPoller
from stnlp.runtime.store import Stores, open_stores, s3_client
from stnlp.runtime.training import TrainingContext, TrainingOutcome
from stnlp.runtime.tune import metric_lines

log = logging.getLogger(__name__)

PLATFORMS = ("ec2", "sagemaker")
STAGES = ("initialization", "data_sync", "training", "results_sync")
EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 3
DEFAULT_MAX_RUNTIME = 24 * 3600.0  # when the run record has none; user data's shutdown backs up


@dataclass(frozen=True)
class Options:
    """How the bootstrap behaves on this machine; each field has an environment variable.

    ==========================  ===============================  ==========================
    field                       variable                         default
    ==========================  ===============================  ==========================
    workdir                     STNLP_WORKDIR                    /opt/stnlp/work
    imds_url                    STNLP_IMDS_URL                   http://169.254.169.254
    spot_poll_seconds           STNLP_SPOT_POLL_SECONDS          5
    heartbeat_seconds           STNLP_HEARTBEAT_SECONDS          30
    max_runtime_seconds         STNLP_MAX_RUNTIME_SECONDS        the job's max runtime
    required_gpus               STNLP_PREFLIGHT_GPUS             the job's gpu_count
    min_free_gb                 STNLP_PREFLIGHT_MIN_FREE_GB      10
    checkpoint_dir              STNLP_CHECKPOINT_DIR             <workdir>/job/checkpoints
    ==========================  ===============================  ==========================
    """

    platform: str = "ec2"
    workdir: Path = Path("/opt/stnlp/work")
    imds_url: str = DEFAULT_IMDS_URL
    spot_poll_seconds: float = 5.0
    heartbeat_seconds: float = 30.0
    max_runtime_seconds: float | None = None
    required_gpus: int | None = None
    min_free_gb: float = 10.0
    checkpoint_dir: Path | None = None
    env: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_env(cls, platform: str = "ec2", env: dict[str, str] | None = None) -> Options:
        """Read the options from ``env`` (the process environment by default)."""
        env = dict(os.environ if env is None else env)

        def number(name: str, cast, default, low: float, high: float):
            if name not in env:
                return default
            return parse_number(name, env[name], cast, low, high)

        if platform not in PLATFORMS:
            raise UserError(f"unknown platform {platform!r} (known: {', '.join(PLATFORMS)})")
        checkpoint = env.get("STNLP_CHECKPOINT_DIR")
        return cls(
            platform=platform,
            workdir=Path(env.get("STNLP_WORKDIR", str(cls.workdir))),
            imds_url=env.get("STNLP_IMDS_URL", DEFAULT_IMDS_URL),
            spot_poll_seconds=number("STNLP_SPOT_POLL_SECONDS", float, 5.0, 0.01, 3600),
            heartbeat_seconds=number("STNLP_HEARTBEAT_SECONDS", float, 30.0, 0.01, 3600),
            max_runtime_seconds=number("STNLP_MAX_RUNTIME_SECONDS", float, None, 1, 30 * 86400),
            required_gpus=number("STNLP_PREFLIGHT_GPUS", int, None, 0, 64),
            min_free_gb=number("STNLP_PREFLIGHT_MIN_FREE_GB", float, 10.0, 0, 1 << 20),
            checkpoint_dir=Path(checkpoint) if checkpoint else None,
            env=env,
        )


class Instance:
    """The cloud as seen from the training machine: settings, stores, EC2, instance metadata."""

    def __init__(self, settings: Settings, stores: Stores, imds: Imds):
        self.settings = settings
        self.stores = stores
        self.imds = imds

    @classmethod
    def from_env(cls, stack: str, options: Options | None = None) -> Instance:
        """Settings from the environment for ``stack``'s S3 buckets (found by its manifest)."""
        options = options or Options.from_env()
        settings = load_settings().with_overrides(store="s3", stack=stack)
        return cls(settings, open_stores(settings), Imds(options.imds_url))

    def terminate(self) -> None:
        """Shut this EC2 instance down; its launch template makes shutdown terminate it."""
        logs.event(log, "instance shutting down")
        subprocess.run(["shutdown", "-h", "now"], check=True, timeout=60)

    def record_failure(self, job: str, run_id: str, message: str, log_dir: Path) -> None:
        """Record ``failed`` with ``message`` and clean the run up (lock released), then upload
        the logs, so a failing upload cannot keep the lock."""
        run = load_run(self.stores, self.settings.stack, run_id)
        if run.record["job"] != job:
            raise UserError(f"run {run_id} belongs to job {run.record['job']!r}, not {job!r}")
        run.fail(message)
        run.cleanup()
        with contextlib.suppress(Exception):
            upload_log_dir(run, log_dir)


def upload_log_dir(run: Run, log_dir: Path) -> None:
    """Upload every log file in ``log_dir`` to the run's ``logs/``."""
    for path in sorted(log_dir.glob("*.log")):
        run.upload_logs(path)


def prune_checkpoints(stores: Stores, run_prefix: str, folder: Path) -> list[str]:
    """Delete the run's stored checkpoints that the job deleted here (it keeps its last few),
    so old ones do not pile up in S3 and a resume downloads only what the job kept."""
    if not folder.is_dir():
        return []
    kept = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    if not kept:
        return []
    prefix = f"{run_prefix}/checkpoints/"
    gone = [key for key in stores.results.list(prefix) if key[len(prefix):] not in kept]
    for key in gone:
        stores.results.delete(key)
    return gone


class Bootstrap:
    """One run of the state machine on this machine; :meth:`execute` returns the exit status."""

    def __init__(self, instance: Instance, job: str, run_id: str, options: Options):
        self.instance = instance
        self.stores = instance.stores
        self.stack = instance.settings.stack
        self.job = job
        self.run_id = run_id
        self.options = options
        self.workdir = options.workdir
        self.log_dir = options.workdir / "logs"
        self.lock = threading.RLock()
        self.notice: SpotNotice | None = None
        self.kill_reason: str | None = None
        self.proc: subprocess.Popen | None = None
        self._stop_beats = threading.Event()
        self.run: Run | None = None
        self._printed = 0  # metrics entries printed to stdout so far (SageMaker)

    # -- the run record, shared by the main thread and the heartbeat thread ----------------

    def _advance(self, state: str, **fields: Any) -> None:
        """Move to ``state``, or only record ``fields`` when a resumed run is already past it."""
        with self.lock:
            self.run.reload()
            current = self.run.state
            if current in STAGES and STAGES.index(current) >= STAGES.index(state):
                self.run.heartbeat(**fields)
            else:
                self.run.transition(state, **fields)

    def _beat(self, **fields: Any) -> dict[str, Any]:
        with self.lock:
            return self.run.heartbeat(**fields)

    def _machine_id(self) -> str:
        if self.options.platform == "sagemaker":
            return self.options.env.get("TRAINING_JOB_NAME", "sagemaker")
        return self.instance.imds.instance_id()

    # -- stages ------------------------------------------------------------------------------

    def _initialize(self) -> JobSpec:
        from stnlp.plugins.manager import build_plugin_manager

        spec = build_plugin_manager(self.instance.settings).job(self.job)
        model = self.run.record.get("model")
        if model and model != spec.output_model:  # a tuning trial publishes to its trial model
            spec = replace(spec, output_model=model)
        required = self.options.required_gpus
        checks = run_preflight([
            check_gpus(spec.gpu_count if required is None else required),
            check_disk(self.workdir, self.options.min_free_gb),
            check_data(spec.input_datasets,
                       lambda name: bool(self.stores.datasets.list(f"raw/{name}/"))),
        ])  # fmt: skip
        for check in checks:
            logs.event(log, "preflight", check=check.name, detail=check.detail)
        return spec

    def _sync(self, spec: JobSpec) -> TrainingContext:
        attempts = int(self.run.record.get("attempts", 0)) + 1
        self._advance("data_sync", instance_id=self._machine_id(), attempts=attempts)
        data_dir = self.workdir / "data"
        sync_datasets(spec, self.stores, data_dir)
        params = self.run.record.get("hyperparameters") or spec.resolved_hyperparameters()
        self._fetch_hub_models(spec, params)
        ctx = TrainingContext.in_directory(
            self.workdir / "job", self.run_id, spec.name, params, data_dir
        )
        if self.options.checkpoint_dir is not None:
            ctx = replace(ctx, checkpoint_dir=self.options.checkpoint_dir)
            ctx.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        restored = self.stores.results.sync_down(f"{self.run.prefix}/checkpoints/",
                                                 ctx.checkpoint_dir)
        metrics_key = f"{self.run.prefix}/training.json"
        if restored and self.stores.results.exists(metrics_key):
            ctx.restore_metrics(json.loads(self.stores.results.get(metrics_key)))
        if restored:
            logs.event(log, "resuming from checkpoint", files=len(restored))
        return ctx

    def _fetch_hub_models(self, spec: JobSpec, params: dict[str, Any]) -> None:
        settings = self.instance.settings
        repos = hub_models(params, settings.models.get(spec.component))
        if not repos:
            return
        parameter = load_manifest(settings).get("hub_token_parameter")
        token = ssm_token(s3_client(settings, "ssm"), parameter)
        sources = fetch_hub_models(self.stores.models, repos, self.workdir / "hf", token)
        logs.event(log, "hub models ready", **{repo.replace("/", "--"): where
                                              for repo, where in sources.items()})

    def _train(self, spec: JobSpec, ctx: TrainingContext) -> TrainingOutcome | None:
        work_file = self.workdir / "work.json"
        write_work_file(work_file, spec, ctx)
        self._advance("training")
        poller = None
        if self.options.platform == "ec2" and self.run.record.get("spot", spec.spot):
            poller = SpotPoller(self.instance.imds, self._on_notice,
                                self.options.spot_poll_seconds).start()
        beats = threading.Thread(target=self._heartbeats, args=(ctx,), daemon=True)
        with (self.log_dir / "worker.log").open("ab") as out:
            self.proc = subprocess.Popen(
                launch_command([str(work_file)], spec.gpu_count),
                stdout=out, stderr=subprocess.STDOUT, env=worker_env(), cwd=self.workdir,
            )
        beats.start()
        try:
            self.proc.wait()
        finally:
            self._stop_beats.set()
            beats.join()
            if poller is not None:
                poller.stop()
            stop_process(self.proc, 10.0)
        self._upload_progress(ctx)
        return self._outcome()

    def _outcome(self) -> TrainingOutcome | None:
        """The worker's outcome; ``None`` after a spot notice or a recorded kill or failure."""
        code = self.proc.returncode
        if code == 0:
            return read_outcome(self.workdir)
        if self.notice is not None:
            return None
        with self.lock:
            if self.kill_reason is not None:
                self.run.transition("killed", error=self.kill_reason)
            else:
                self.run.transition("failed", error=worker_error(self.workdir, code))
        return None

    def _on_notice(self, notice: SpotNotice) -> None:
        self.notice = notice
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def _upload_progress(self, ctx: TrainingContext) -> None:
        with self.lock:
            upload_log_dir(self.run, self.log_dir)
            metrics = ctx.read_metrics()
            self.run.write_metrics(metrics)
            if self.options.platform == "sagemaker":  # what a tuning job's metric regexes read
                for entry in metrics[self._printed:]:
                    for line in metric_lines(entry):
                        print(line, flush=True)
                self._printed = len(metrics)
            self.run.upload_checkpoints(ctx.checkpoint_dir)
            prune_checkpoints(self.stores, self.run.prefix, ctx.checkpoint_dir)

    def _heartbeats(self, ctx: TrainingContext) -> None:
        while not self._stop_beats.wait(self.options.heartbeat_seconds):
            try:
                record = self._beat()
                self._upload_progress(ctx)
            except Exception as exc:  # a missed heartbeat must not stop training
                logs.event(log, "heartbeat failed", logging.WARNING, error=str(exc))
                continue
            if record.get("kill_requested") and self.kill_reason is None:
                self.kill_reason = "killed by request (stnlp runs kill)"
                if self.proc is not None:
                    self.proc.terminate()

    def _record_interruption(self) -> None:
        keys = self.stores.results.list(f"{self.run.prefix}/checkpoints/")
        interruptions = list(self.run.record.get("spot_interruptions", []))
        interruptions.append({"action": self.notice.action, "time": self.notice.time,
                              "instance_id": self._machine_id(), "checkpoints": len(keys)})
        self._beat(spot_interruptions=interruptions)
        logs.event(log, "spot interruption recorded", run_id=self.run_id, checkpoints=len(keys))

    # -- the whole run -----------------------------------------------------------------------

    def load(self) -> Run:
        """Read the run record and check it belongs to this job and has not ended."""
        self.run = load_run(self.stores, self.stack, self.run_id)
        if self.run.record["job"] != self.job:
            raise UserError(f"run {self.run_id} is a run of {self.run.record['job']!r}, "
                            f"not {self.job!r}")
        if self.run.state == "cleanup":
            raise UserError(f"run {self.run_id} has already ended ({self.run.record['result']})")
        return self.run

    def execute(self) -> int:
        """Run every stage; record failures; always clean up (unless interrupted) and return."""
        status = EXIT_FAILED
        try:
            spec = self._initialize()
            ctx = self._sync(spec)
            outcome = self._train(spec, ctx)
            if outcome is not None:
                with self.lock:
                    publish_outcome(self.run, spec, self.stores, ctx, outcome)
                status = EXIT_OK
            elif self.notice is not None:
                self._record_interruption()
                status = EXIT_INTERRUPTED
        except Exception as exc:
            logs.event(log, "run failed", logging.ERROR, run_id=self.run_id,
                       error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(Exception), self.lock:
                self.run.reload()
                self.run.fail(f"{type(exc).__name__}: {exc}")
        finally:
            with contextlib.suppress(Exception), self.lock:
                upload_log_dir(self.run, self.log_dir)
            if status != EXIT_INTERRUPTED:
                self.run.cleanup()
        return status


def _file_logging(log_dir: Path) -> None:
    """Log INFO and up to ``bootstrap.log``; the console keeps its configured level."""
    log_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for handler in root.handlers:
        handler.setLevel(root.level)
    handler = logging.FileHandler(log_dir / "bootstrap.log")
    handler.setFormatter(logs.KeyValueFormatter())
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def run_instance(stack: str, job: str, run_id: str, options: Options) -> int:
    """The whole life of a training machine: watchdog, bootstrap, and (EC2) termination."""
    with contextlib.suppress(PermissionError):
        os.setpgid(0, 0)  # lead a process group, so the watchdog can stop the worker with us
    log_dir = options.workdir / "logs"
    _file_logging(log_dir)
    instance = Instance.from_env(stack, options)
    guard = None
    status = EXIT_FAILED
    try:
        bootstrap = Bootstrap(instance, job, run_id, options)
        run = bootstrap.load()
        if options.platform == "ec2":
            limit = options.max_runtime_seconds or run.record.get("max_runtime_seconds")
            limit = parse_number("max_runtime_seconds of the run record",
                                 str(limit or DEFAULT_MAX_RUNTIME), float, 1, 30 * 86400)
            guard = watchdog.start(time.time() + limit, os.getpid(), stack, job, run_id, log_dir)
        status = bootstrap.execute()
    except Exception as exc:
        logs.event(log, "bootstrap failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}")
    finally:
        if guard is not None:
            guard.terminate()
            guard.wait()
        if options.platform == "ec2":
            instance.terminate()
    return status


def main(argv: list[str] | None = None) -> int:
    """Command line of the bootstrap (run by the instance's user data or the container)."""
    parser = argparse.ArgumentParser(prog="stnlp.runtime.bootstrap")
    parser.add_argument("--stack", required=True)
    parser.add_argument("--job", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--platform", choices=PLATFORMS, default="ec2")
    args = parser.parse_args(argv)
    logs.configure(os.environ.get("STNLP_LOG_LEVEL", "WARNING"))
    options = Options.from_env(args.platform)
    return run_instance(args.stack, args.job, args.run_id, options)


if __name__ == "__main__":
    sys.exit(main())
