"""The steps every cloud launch shares: the run record, failure and kill.

:func:`start_run` takes the job lock and writes the run record with what the launch resolved;
:func:`launch_or_fail` calls the backend's launch (which uploads the release and starts the
instance or job), recording the run ``failed`` and cleaning it up if anything raises (a
relaunch leaves the existing run alone); :func:`kill_run` stops what the run holds in the cloud
and records ``killed``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from stnlp.common.errors import UserError
from stnlp.plugins.spec import JobSpec
from stnlp.runtime.runs import Run, load_run
from stnlp.runtime.store import Stores

T = TypeVar("T")


def start_run(
    spec: JobSpec, stores: Stores, stack: str, backend: str, *, spot: bool,
    preset: str | None, overrides: dict[str, Any] | None, run_id: str | None, **fields: Any,
) -> Run:  # fmt: skip
    """Take ``spec``'s lock and create the record of a new cloud run on ``backend`` (with
    ``fields`` added to the record)."""
    return Run.start(
        stores, stack, spec.name, backend, run_id=run_id,
        hyperparameters=spec.resolved_hyperparameters(preset, overrides), preset=preset,
        model=spec.output_model, max_runtime_seconds=spec.max_runtime_minutes * 60,
        spot=spot, instance_type=spec.instance_type, gpu_count=spec.gpu_count, **fields,
    )  # fmt: skip


def launch_or_fail(run: Run, launch: Callable[[], T], *, what: str, resuming: bool = False) -> T:
    """Return ``launch()``.

    If it raises, a new run is recorded ``failed`` (naming ``what`` and the error) and
    cleaned up, so its lock is released; a relaunch (``resuming``) keeps its run as it was.
    """
    try:
        return launch()
    except Exception as exc:
        if not resuming:
            run.fail(f"{what} failed: {type(exc).__name__}: {exc}")
            run.cleanup()
        raise


def kill_run(stores: Stores, stack: str, run_id: str, stop: Callable[[Run], str]) -> Run:
    """Call ``stop(run)`` (which says what it stopped), then record ``killed`` and clean up."""
    run = load_run(stores, stack, run_id)
    if run.state == "cleanup":
        raise UserError(f"run {run_id} has already ended ({run.record.get('result')})")
    stopped = stop(run)
    run.fail(f"killed by `stnlp runs kill`; {stopped}", killed=True)
    run.cleanup()
    return run
