"""`stnlp batch JOB`: a sharded job's corpus split by episode, merged into one model version.

A job that declares ``JobSpec.sharding`` (``units``, ``shard``, ``merge``; see
docs/user-guide.md) runs as one *batch run* through the usual state machine and job lock:

- ``data_sync``: the job's datasets are fetched into a work folder; ``units(ctx)`` lists the
  corpus's episodes and :func:`plan_shards` deals them round-robin into N disjoint shards. The
  plan, and a key over the job, hyperparameters, dataset versions and plan, go in the record
  (``batch``).
- ``training``: every shard runs ``shard(ctx, episodes)`` (locally one after the other, or as
  one SageMaker processing job per shard, :mod:`stnlp.runtime.backends.sagemaker_batch`);
  :func:`run_shard` uploads its output to ``<run>/shards/<i>/output/`` and then ``done.json``.
  A shard whose ``done.json`` a former batch run with the same key holds is copied from it,
  not run again: a rerun after a failure resumes. Any shard failing fails the run.
- ``results_sync``: the shards' outputs are downloaded in order, ``merge(ctx, parts)`` writes
  the output, which is published behind the usual fence as one version whose manifest's
  ``sharding`` says how (shards, plan, where each shard came from).

A failure anywhere ends in ``failed`` (``killed`` for a kill request or an interrupt), with the
lock released and nothing published.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.progress import Progress

from stnlp.common.errors import UserError
from stnlp.common.settings import Settings
from stnlp.plugins.spec import JobSpec
from stnlp.runtime import logs
from stnlp.runtime.backends.local import new_work_dir, publish_outcome, sync_datasets
from stnlp.runtime.runs import Run, list_runs, load_run, now, run_prefix
from stnlp.runtime.store import Stores, encode_json, open_stores
from stnlp.runtime.training import TrainingContext, import_entrypoint

log = logging.getLogger(__name__)

DONE_FILE = "done.json"
HEARTBEAT_SECONDS = 5.0

ShardRunner = Callable[[Run, list[int], Path], None]
"""Runs the shards numbered in the list of a batch run (its record holds the plan), given the
run's local data folder; each finished shard has its ``done.json``."""


class ShardError(UserError):
    """A shard failed or ended without its results; the batch run fails."""


def sharding_hook(spec: JobSpec, hook: str) -> Callable[..., Any]:
    """The job's ``units``, ``shard`` or ``merge`` function; UserError if it does not shard."""
    if not spec.sharding:
        raise UserError(f"job {spec.name!r} does not shard (its JobSpec has no sharding)")
    return import_entrypoint(spec.sharding[hook])


def plan_shards(units: Sequence[str], shards: int) -> list[list[str]]:
    """``units`` dealt round-robin into ``shards`` disjoint, non-empty lists, in order."""
    if len(set(units)) != len(units):
        raise UserError("the corpus lists an episode twice")
    if not 1 <= shards <= len(units):
        raise UserError(f"--shards {shards}: must be between 1 and the corpus's {len(units)} "
                        "episode(s)")  # fmt: skip
    return [list(units[i::shards]) for i in range(shards)]


def batch_key(spec: JobSpec, params: dict[str, Any], datasets: dict[str, Any],
              plan: list[list[str]]) -> str:  # fmt: skip
    """What a shard's result depends on: job, hyperparameters, dataset versions, the plan."""
    question = {"job": spec.name, "params": params, "datasets": datasets, "plan": plan}
    return hashlib.sha256(json.dumps(question, sort_keys=True).encode()).hexdigest()


def shard_prefix(stack: str, run_id: str, index: int) -> str:
    """Where shard ``index`` of a batch run keeps its output and ``done.json``."""
    return f"{run_prefix(stack, run_id)}/shards/{index}"


def is_done(stores: Stores, stack: str, run_id: str, index: int) -> bool:
    """Whether shard ``index`` of the run has finished (its ``done.json`` is stored)."""
    return stores.results.exists(f"{shard_prefix(stack, run_id, index)}/{DONE_FILE}")


def run_shard(spec: JobSpec, stores: Stores, stack: str, record: dict[str, Any], index: int,
              data_dir: Path, work: Path) -> None:  # fmt: skip
    """Shard ``index`` of the batch run ``record``, as every backend runs it: the shard hook
    over its episodes, the output uploaded, then ``done.json`` (written last)."""
    units = record["batch"]["plan"][index]
    ctx = TrainingContext.in_directory(work / f"shard-{index}", record["run_id"], spec.name,
                                       record["hyperparameters"], data_dir)  # fmt: skip
    try:
        sharding_hook(spec, "shard")(ctx, units)
    except Exception as exc:
        raise ShardError(f"shard {index}: {type(exc).__name__}: {exc}") from exc
    prefix = shard_prefix(stack, record["run_id"], index)
    stores.results.sync_up(ctx.output_dir, f"{prefix}/output")
    stores.results.put(f"{prefix}/{DONE_FILE}", encode_json({"units": units, "finished": now()}))
    logs.event(log, "shard done", run_id=record["run_id"], shard=index, episodes=len(units))


def shard_job(env: Mapping[str, str], spec: JobSpec, stack: str, stores: Stores) -> None:
    """What a shard's processing job runs (:mod:`stnlp.runtime.backends.container`, mode
    ``shard``): the batch run's datasets at the versions it recorded, then :func:`run_shard`.
    It never changes the run's record: the batch run's supervisor does."""
    record = load_run(stores, stack, env["STNLP_RUN_ID"]).record
    work = Path(env.get("STNLP_WORKDIR") or tempfile.mkdtemp(prefix="stnlp-shard-"))
    used = sync_datasets(spec, stores, work / "data")
    if used != record.get("datasets"):
        raise ShardError(f"run {record['run_id']}: the datasets moved since the batch started "
                         f"({record.get('datasets')} -> {used}); run the batch again")
    run_shard(spec, stores, stack, record, int(env["STNLP_SHARD"]), work / "data", work)


def _reuse(run: Run, key: str, shards: int) -> dict[int, str]:
    """Copy the finished shards of former batch runs with the same key; index -> run id."""
    stores, stack = run.stores, run.stack
    former = [r["run_id"] for r in list_runs(stores, stack, run.record["job"])
              if r["run_id"] != run.run_id and (r.get("batch") or {}).get("key") == key]
    reused = {}
    for index in range(shards):
        source = next((r for r in former if is_done(stores, stack, r, index)), None)
        if source is None:
            continue
        old, new = shard_prefix(stack, source, index), shard_prefix(stack, run.run_id, index)
        keys = sorted(stores.results.list(f"{old}/"), key=lambda k: k.endswith(DONE_FILE))
        for key_ in keys:
            stores.results.put(new + key_[len(old):], stores.results.get(key_))
        reused[index] = source
    if reused:
        logs.event(log, "shards reused", run_id=run.run_id, shards=sorted(reused))
    return reused


def run_local_shards(spec: JobSpec, progress: bool = True) -> ShardRunner:
    """The local backend's shards: one after the other in this process, through
    :func:`run_shard`; a kill request is honoured between shards."""

    def runner(run: Run, todo: list[int], data_dir: Path) -> None:
        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task(f"{spec.name} shards", total=len(todo))
            for index in todo:
                if run.reload().get("kill_requested"):
                    raise KeyboardInterrupt("killed by request (stnlp runs kill)")
                run_shard(spec, run.stores, run.stack, run.record, index, data_dir,
                          data_dir.parent / "shards")  # fmt: skip
                bar.advance(task)

    return runner


def run_batch(
    spec: JobSpec,
    settings: Settings,
    *,
    shards: int,
    backend: str = "local",
    runner: ShardRunner | None = None,
    stores: Stores | None = None,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    run_id: str | None = None,
    progress: bool = True,
) -> str:
    """Run ``spec`` sharded ``shards`` ways on ``backend`` (``runner`` runs the shards; default:
    locally) and publish the merged output; return the run id (its outcome is in the record)."""
    sharding_hook(spec, "units")
    stores = stores or open_stores(settings)
    params = spec.resolved_hyperparameters(preset, overrides)
    runner = runner or run_local_shards(spec, progress)
    run = Run.start(stores, settings.stack, spec.name, backend, run_id=run_id,
                    hyperparameters=params, preset=preset, model=spec.output_model,
                    batch={"shards": shards})  # fmt: skip
    work = new_work_dir(run.run_id)
    try:
        with run:
            with run.keep_alive(HEARTBEAT_SECONDS):
                plan, data_dir, reused = _prepare(run, spec, stores, work, params, shards)
                todo = [i for i in range(shards) if i not in reused]
                runner(run, todo, data_dir)
                missing = [i for i in todo if not is_done(stores, settings.stack, run.run_id, i)]
                if missing:
                    raise ShardError(f"shard(s) {', '.join(map(str, missing))} ended without "
                                     "their results")  # fmt: skip
                ctx, outcome = _merge(run, spec, work, data_dir, params, shards)
            sharding = {"shards": shards, "units": "episodes", "plan": plan, "backend": backend,
                        "reused": {str(i): r for i, r in reused.items()}}  # fmt: skip
            publish_outcome(run, spec, stores, ctx, outcome, HEARTBEAT_SECONDS,
                            extra={"sharding": sharding})  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return run.run_id


def _prepare(run: Run, spec: JobSpec, stores: Stores, work: Path, params: dict[str, Any],
             shards: int) -> tuple[list[list[str]], Path, dict[int, str]]:  # fmt: skip
    """``data_sync``: the datasets, the plan and key recorded; then ``training`` with the
    shards a former run finished copied."""
    run.transition("data_sync")
    data_dir = work / "data"
    datasets = sync_datasets(spec, stores, data_dir)
    ctx = TrainingContext.in_directory(work / "units", run.run_id, spec.name, params, data_dir)
    plan = plan_shards(sharding_hook(spec, "units")(ctx), shards)
    key = batch_key(spec, params, datasets, plan)
    run.heartbeat(datasets=datasets, batch={"shards": shards, "plan": plan, "key": key})
    run.transition("training")
    reused = _reuse(run, key, shards)
    if reused:
        run.heartbeat(batch={**run.record["batch"], "reused": {str(i): r
                                                               for i, r in reused.items()}})
    return plan, data_dir, reused


def _merge(run: Run, spec: JobSpec, work: Path, data_dir: Path, params: dict[str, Any],
           shards: int):  # fmt: skip
    """Download every shard's output in order and merge them into the output to publish."""
    parts = []
    for index in range(shards):
        folder = work / "parts" / str(index)
        run.stores.results.sync_down(f"{shard_prefix(run.stack, run.run_id, index)}/output",
                                     folder)  # fmt: skip
        parts.append(folder)
    ctx = TrainingContext.in_directory(work / "merge", run.run_id, spec.name, params, data_dir)
    outcome = sharding_hook(spec, "merge")(ctx, parts)
    run.write_metrics(ctx.read_metrics())
    return ctx, outcome
