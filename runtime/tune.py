"""Hyperparameter tuning: trials of a job over its declared search space, the best published.

A job declares what may be searched (``JobSpec.search_space``, see :mod:`stnlp.plugins.spec`).
Each trial is an ordinary run of the job (the run state machine, its lock, its record) with the
trial's hyperparameters, publishing to the *trial model* ``<model>-trials`` rather than the
job's own model, so no trial ever replaces what the interface serves. The objective is read
from each trial run's logged metrics (``training.json``): the last entry holding the metric.

- :func:`tune_local` runs the trials one after another on the local backend;
- on SageMaker (:mod:`stnlp.runtime.backends.sagemaker_tune`) a tuning job starts the trials
  as training jobs, whose containers print their metrics (:func:`metric_lines`) for SageMaker's
  search (:func:`metric_regex`) and record runs like any other, each naming its tuning.

Each tuning is recorded at ``<stack>/tunings/<id>.json`` (job, objective, direction, backend,
trials asked for), so `stnlp tune --finish ID` can publish it later.

Either way :func:`finish` builds the trial table from the trial runs, picks the best and
publishes its version as a new version of the job's model, with ``hyperparameters``,
``trials`` (the table) and ``tuning`` in its manifest. A crash before that leaves only trial
versions and run records; running the finish again publishes the best.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import secrets
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stnlp.common.errors import UserError
from stnlp.common.settings import Settings
from stnlp.plugins.spec import JobSpec
from stnlp.runtime import logs
from stnlp.runtime.registry import ModelRegistry
from stnlp.runtime.runs import list_runs, load_run
from stnlp.runtime.store import NotFoundError, Stores, encode_json, open_stores

log = logging.getLogger(__name__)

TRIAL_SUFFIX = "-trials"
METRIC_PREFIX = "stnlp-metric"
NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
MAX_DRAW_ATTEMPTS = 50


@dataclass(frozen=True)
class Objective:
    """The metric a tuning ranks trials by, and which way is better."""

    metric: str
    maximize: bool = True

    @property
    def direction(self) -> str:
        """``Maximize`` or ``Minimize`` (SageMaker's words)."""
        return "Maximize" if self.maximize else "Minimize"

    def better(self, value: float, than: float) -> bool:
        """Whether ``value`` beats ``than``."""
        return value > than if self.maximize else value < than


@dataclass(frozen=True)
class TuningResult:
    """What a finished tuning published: the table, the best row and the new version."""

    tuning_id: str
    trials: list[dict[str, Any]]
    best: dict[str, Any]
    version: str


def new_tuning_id() -> str:
    """A tuning name SageMaker accepts (at most 32 characters) that sorts by start time."""
    return f"tune-{datetime.now(UTC):%y%m%d%H%M%S}-{secrets.token_hex(2)}"


def trial_spec(spec: JobSpec) -> JobSpec:
    """``spec`` publishing to its trial model ``<model>-trials``."""
    model = f"{spec.output_model}{TRIAL_SUFFIX}"
    if len(model) > 63:
        raise UserError(f"job {spec.name!r}: its trial model name {model!r} is too long")
    return replace(spec, output_model=model)


def tuning_key(stack: str, tuning_id: str) -> str:
    """Where the record of a tuning lives in the results store."""
    if not re.fullmatch(r"tune-[0-9]{12}-[0-9a-f]{4}", tuning_id):
        raise UserError(f"invalid tuning id {tuning_id[:60]!r} (expected tune-<time>-<hex>)")
    return f"{stack}/tunings/{tuning_id}.json"


def save_tuning(stores: Stores, stack: str, tuning_id: str, spec: JobSpec, objective: Objective,
                backend: str, max_trials: int) -> None:  # fmt: skip
    """Record a new tuning (create-only)."""
    record = {"tuning_id": tuning_id, "job": spec.name, "objective": objective.metric,
              "direction": objective.direction, "backend": backend, "max_trials": max_trials,
              "created": datetime.now(UTC).isoformat()}  # fmt: skip
    stores.results.put(tuning_key(stack, tuning_id), encode_json(record), if_none_match=True)


def load_tuning(stores: Stores, stack: str, tuning_id: str) -> dict[str, Any]:
    """The record of a tuning, or a UserError naming it."""
    try:
        return json.loads(stores.results.get(tuning_key(stack, tuning_id)))
    except NotFoundError:
        raise UserError(f"stack {stack!r} has no tuning {tuning_id}") from None
    except ValueError as exc:
        raise UserError(f"tuning {tuning_id}: its record is damaged ({exc})") from None


def tuning_rows(stores: Stores, stack: str, tuning_id: str, spec: JobSpec,
                objective: Objective) -> list[dict[str, Any]]:  # fmt: skip
    """The trial table of a tuning from the run records naming it, oldest first."""
    runs = sorted((r for r in list_runs(stores, stack, spec.name) if r.get("tuning") == tuning_id),
                  key=lambda r: r["created"])  # fmt: skip
    return [trial_row(stores, stack, r["run_id"], number, spec, objective)
            for number, r in enumerate(runs, start=1)]  # fmt: skip


def check_tunable(spec: JobSpec, objective: Objective, max_trials: int) -> None:
    """A UserError unless ``spec`` declares a search space and ``max_trials`` is at least 1."""
    if not spec.search_space:
        raise UserError(f"job {spec.name!r} declares no search_space to tune")
    if max_trials < 1:
        raise UserError(f"--max-trials must be at least 1, got {max_trials}")
    if not objective.metric:
        raise UserError("--objective names a metric the job logs (e.g. macro_f1)")


# -- drawing hyperparameters ---------------------------------------------------------------------


def _draw_one(space: Mapping[str, Any], kind: str, rng: random.Random) -> Any:
    if "values" in space:
        return rng.choice(list(space["values"]))
    low, high = float(space["min"]), float(space["max"])
    if space.get("scale", "linear") == "log":
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    if kind == "int":
        return min(int(high), max(int(low), round(value)))
    return float(f"{value:.6g}")


def draws(spec: JobSpec, count: int, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` random draws from ``spec.search_space`` (SageMaker's ``Random`` strategy),
    distinct where the space allows it."""
    kinds = spec.parameter_types()
    rng = random.Random(seed)
    found: list[dict[str, Any]] = []
    for _ in range(count):
        draw = {}
        for _attempt in range(MAX_DRAW_ATTEMPTS):
            draw = {k: _draw_one(s, kinds[k], rng) for k, s in sorted(spec.search_space.items())}
            if draw not in found:
                break
        found.append(draw)
    return found


# -- the objective and the trial table ------------------------------------------------------------


def _lookup(entry: Mapping[str, Any], metric: str) -> Any:
    value: Any = entry
    for part in metric.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def objective_value(records: Sequence[Mapping[str, Any]], metric: str) -> float | None:
    """The metric's value in the last logged entry holding it as a finite number (a dotted
    name reaches into nested entries: ``heldout.value``)."""
    for entry in reversed(records):
        value = _lookup(entry, metric)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value) if math.isfinite(value) else None
    return None


def trial_row(stores: Stores, stack: str, run_id: str, number: int, spec: JobSpec,
              objective: Objective) -> dict[str, Any]:  # fmt: skip
    """One row of the trial table, from the trial run's record and ``training.json``."""
    record = load_run(stores, stack, run_id).record
    try:
        metrics = json.loads(stores.results.get(f"{stack}/runs/{run_id}/training.json"))
    except NotFoundError:
        metrics = []
    params = record.get("hyperparameters") or {}
    row = {
        "trial": number,
        "run_id": run_id,
        "result": record.get("result") or record.get("state"),
        "hyperparameters": {k: params.get(k) for k in sorted(spec.search_space)},
        objective.metric: objective_value(metrics, objective.metric),
        "model_version": record.get("model_version") if record.get("result") == "succeeded"
        else None,
    }  # fmt: skip
    if record.get("error"):
        row["error"] = record["error"]
    return row


def best_row(rows: Sequence[Mapping[str, Any]], objective: Objective) -> dict[str, Any] | None:
    """The succeeded trial with the best objective value (the first one on a tie)."""
    best = None
    for row in rows:
        value = row.get(objective.metric)
        if row.get("result") != "succeeded" or value is None or not row.get("model_version"):
            continue
        if best is None or objective.better(value, best[objective.metric]):
            best = dict(row)
    return best


def finish(stores: Stores, spec: JobSpec, rows: list[dict[str, Any]], objective: Objective,
           tuning_id: str) -> TuningResult:  # fmt: skip
    """Publish the best trial's version as a new version of the job's model.

    The files are the trial version's (verified on the way), the manifest keeps its metrics
    and base model and adds ``hyperparameters``, ``trials`` and ``tuning``.
    """
    best = best_row(rows, objective)
    if best is None:
        raise UserError(f"tuning {tuning_id}: no trial of {len(rows)} succeeded with a value of "
                        f"{objective.metric!r}; see `stnlp runs list`")
    registry = ModelRegistry(stores.models)
    scratch = Path(tempfile.mkdtemp(prefix="stnlp-tune-"))
    try:
        trial = registry.fetch(trial_spec(spec).output_model, best["model_version"],
                               scratch / "version")
        version = registry.stage(
            spec.output_model, trial.path, base_model=trial.manifest.get("base_model"),
            run_id=best["run_id"], metrics=trial.manifest.get("metrics"),
            extra={"hyperparameters": best["hyperparameters"], "trials": rows,
                   "tuning": {"id": tuning_id, "objective": objective.metric,
                              "direction": objective.direction, "best_trial": best["trial"],
                              "trial_version": best["model_version"]}},
        )  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    registry.move_latest(spec.output_model, version, "tune", run_id=best["run_id"])
    logs.event(log, "tuned model published", model=spec.output_model, version=version,
               tuning=tuning_id, trial=best["trial"])
    return TuningResult(tuning_id, rows, best, version)


def tune_local(
    spec: JobSpec, settings: Settings, *, max_trials: int, objective: Objective,
    preset: str | None = None, overrides: Mapping[str, Any] | None = None, seed: int = 0,
    stores: Stores | None = None, progress: bool = True, echo=None, **train_options: Any,
) -> TuningResult:  # fmt: skip
    """Run ``max_trials`` trials of ``spec`` on the local backend, then :func:`finish`
    (``train_options`` go to :func:`stnlp.runtime.backends.local.train_local`)."""
    from stnlp.runtime.backends.local import train_local

    check_tunable(spec, objective, max_trials)
    stores = stores or open_stores(settings)
    tuning_id, trials = new_tuning_id(), trial_spec(spec)
    save_tuning(stores, settings.stack, tuning_id, spec, objective, "local", max_trials)
    rows = []
    for number, params in enumerate(draws(spec, max_trials, seed), start=1):
        run_id = train_local(trials, settings, stores=stores, preset=preset,
                             overrides={**(overrides or {}), **params}, progress=progress,
                             **train_options)
        rows.append(trial_row(stores, settings.stack, run_id, number, spec, objective))
        if echo is not None:
            echo(format_row(rows[-1], objective))
    return finish(stores, spec, rows, objective, tuning_id)


def format_row(row: Mapping[str, Any], objective: Objective) -> str:
    """One line of the trial table for the terminal."""
    params = " ".join(f"{k}={v}" for k, v in row["hyperparameters"].items())
    value = row.get(objective.metric)
    shown = "-" if value is None else f"{value:.6g}"
    return f"trial {row['trial']}: {row['result']} {objective.metric}={shown} ({params})"


# -- metrics in a SageMaker container's log ------------------------------------------------------


def _flat(prefix: str, value: Any) -> list[tuple[str, float]]:
    if isinstance(value, Mapping):
        return [item for key, sub in value.items() for item in _flat(f"{prefix}{key}.", sub)]
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return [(prefix[:-1], float(value))]
    return []


def metric_lines(entry: Mapping[str, Any]) -> list[str]:
    """The log lines a SageMaker container prints for one metrics entry, one per number:
    ``stnlp-metric <name>=<value>`` (nested names dotted)."""
    items = _flat("", {k: v for k, v in entry.items() if k != "time"})
    return [f"{METRIC_PREFIX} {name}={value!r}" for name, value in items]


def metric_regex(metric: str) -> str:
    """The regular expression SageMaker reads ``metric`` with from :func:`metric_lines`."""
    return rf"{METRIC_PREFIX} {re.escape(metric)}={NUMBER}"
