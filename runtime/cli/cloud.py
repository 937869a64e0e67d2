"""Cloud runs from the command line: follow, resume and kill runs, sweep a stack's instances.

`stnlp runs wait RUN` follows a run's state and streams its uploaded logs until it ends, or until
its timeout (by default the run's maximum runtime plus :data:`WAIT_GRACE_SECONDS`) or until an
EC2 run has sent no heartbeat for the stale window, each reported in one line with the command
that goes on from there;
`stnlp runs resume RUN` relaunches a spot-interrupted EC2 run; `stnlp runs sweep` terminates
the stack's instances whose run ended or went stale and mirrors SageMaker job statuses.
:func:`launch` and :func:`kill_cloud_run` are what `stnlp train --backend ec2|sagemaker` and
`stnlp runs kill` call for cloud runs. ``--stack NAME`` picks a deployed stack (its S3
buckets, found through its manifest).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click

from stnlp.common.errors import UserError
from stnlp.common.settings import Settings
from stnlp.runtime.cli.base import Session, pass_session, stack_option
from stnlp.runtime.cli.runs import runs_group
from stnlp.runtime.runs import STALE_AFTER_SECONDS, is_stale, list_runs, load_run
from stnlp.runtime.store import Stores, open_stores, s3_client

CLOUD_BACKENDS = ("ec2", "sagemaker")
WAIT_GRACE_SECONDS = 1800.0  # boot, install and upload time on top of the job's maximum runtime


def wait_timeout(record: dict[str, Any]) -> float | None:
    """How long `--wait` follows a run by default: its maximum runtime plus a grace period."""
    limit = record.get("max_runtime_seconds")
    return float(limit) + WAIT_GRACE_SECONDS if limit else None


def stale_problem(settings: Settings, record: dict[str, Any], stale_after: float) -> str | None:
    """The one-line report on an open EC2 run whose machine sends no heartbeat, else None.

    (SageMaker runs are judged by their job's status instead: a job waiting for spot capacity
    has no container to send one.)"""
    if record["backend"] != "ec2" or not is_stale(record, stale_after):
        return None
    return (f"run {record['run_id']} has sent no heartbeat since {record['heartbeat']} "
            f"(stale after {stale_after:g} s) in state {record['state']}: its instance may be "
            f"gone; `stnlp runs sweep --stack {settings.stack}` ends it if so, "
            f"`stnlp runs kill {record['run_id']} --stack {settings.stack}` stops it anyway")


def follow_run(
    settings: Settings,
    stores: Stores,
    run_id: str,
    *,
    poll: float = 5.0,
    echo: Callable[[str], None] = click.echo,
    sagemaker: Any = None,
    timeout: float | None = None,
    stale_after: float = STALE_AFTER_SECONDS,
) -> dict[str, Any]:
    """Print state changes and new log lines of ``run_id`` until it ends; return the record.

    Raises :class:`UserError` (one line saying what to run next) after ``timeout`` seconds, and
    when an EC2 run has sent no heartbeat for ``stale_after`` seconds.
    """
    from stnlp.runtime.backends.sagemaker import mirror_status

    shown_state, offsets = None, {}
    started = time.monotonic()
    while True:
        run = load_run(stores, settings.stack, run_id)
        if run.record["backend"] == "sagemaker" and run.state != "cleanup":
            sagemaker = sagemaker or s3_client(settings, "sagemaker")
            mirror_status(run, sagemaker)
        record = run.record
        if record["state"] != shown_state:
            shown_state = record["state"]
            echo(f"[{record['updated'][11:19]}] {run_id}: {shown_state}")
        for key in stores.results.list(f"{run.prefix}/logs/"):
            text = stores.results.get(key).decode("utf-8", errors="replace")
            for line in text[offsets.get(key, 0):].splitlines():
                echo(f"{key.rsplit('/', 1)[1]}: {line}")
            offsets[key] = len(text)
        if record["state"] == "cleanup":
            return record
        problem = stale_problem(settings, record, stale_after)
        if problem:
            raise UserError(problem)
        if timeout is not None and time.monotonic() - started >= timeout:
            raise UserError(
                f"stopped waiting for run {run_id} after {timeout:g} s; it is still in "
                f"{record['state']}: `stnlp runs wait {run_id} --stack {settings.stack}` "
                f"follows it again, `stnlp runs kill {run_id} --stack {settings.stack}` stops it"
            )
        time.sleep(poll)


def launch(
    backend: str, spec, settings: Settings, stores: Stores, *, wait: bool, **kwargs: Any
) -> dict[str, Any]:
    """Start ``spec`` on a cloud backend; with ``wait``, follow it to the end. Return the record."""
    from stnlp.runtime.backends import get_backend
    from stnlp.runtime.cost import run_cost
    from stnlp.runtime.launchcheck import stack_spot
    from stnlp.runtime.manifest import load_manifest

    manifest = load_manifest(settings)
    spot = stack_spot(spec, manifest, kwargs.get("spot"))
    click.echo(run_cost(spec, spot=spot, nat=bool(manifest.get("nat_gateway")),
                        backend=backend).line())
    run_id = get_backend(backend)(spec, settings, stores=stores, **kwargs)
    click.echo(f"run {run_id}: launched on {backend} in stack {settings.stack}")
    record = load_run(stores, settings.stack, run_id).record
    if not wait:
        click.echo(f"follow it with: stnlp runs wait {run_id} --stack {settings.stack}")
        return record
    record = follow_run(settings, stores, run_id, timeout=wait_timeout(record))
    if record["result"] != "succeeded":
        raise UserError(f"run {run_id} {record['result']}: {record.get('error')}")
    return record


def kill_cloud_run(settings: Settings, stores: Stores, run_id: str) -> dict[str, Any]:
    """Kill an EC2 or SageMaker run: terminate its instance or stop its job, record ``killed``."""
    from stnlp.runtime.backends.ec2 import kill_ec2_run
    from stnlp.runtime.backends.sagemaker import kill_sagemaker_run

    backend = load_run(stores, settings.stack, run_id).record["backend"]
    kill = {"ec2": kill_ec2_run, "sagemaker": kill_sagemaker_run}.get(backend)
    if kill is None:
        raise UserError(f"run {run_id} ran on {backend!r}, not a cloud backend")
    return kill(settings, stores, run_id).record


@runs_group.command("wait")
@click.argument("run_id")
@stack_option
@click.option("--poll", default=5.0, show_default=True, help="Seconds between checks.")
@click.option("--timeout", type=float, default=None,
              help="Stop waiting after this many seconds [default: the run's maximum runtime "
                   f"plus {WAIT_GRACE_SECONDS:g} s].")
@click.option("--stale-after", default=STALE_AFTER_SECONDS, show_default=True,
              help="Stop when an EC2 run has sent no heartbeat for this many seconds.")
@pass_session
def runs_wait(
    session: Session, run_id: str, poll: float, timeout: float | None, stale_after: float
) -> None:
    """Follow RUN's state and logs until it ends; fail unless it succeeded."""
    settings = session.settings
    stores = open_stores(settings)
    if timeout is None:
        timeout = wait_timeout(load_run(stores, settings.stack, run_id).record)
    record = follow_run(settings, stores, run_id, poll=poll, timeout=timeout,
                        stale_after=stale_after)
    click.echo(f"run {run_id}: {record['result']}")
    if record["result"] != "succeeded":
        raise UserError(f"run {run_id} {record['result']}: {record.get('error')}")


@runs_group.command("sweep")
@stack_option
@click.option("--stale-after", default=STALE_AFTER_SECONDS, show_default=True,
              help="Seconds without a heartbeat after which a run counts as dead.")
@pass_session
def runs_sweep(session: Session, stale_after: float) -> None:
    """End local runs nobody carries on and clear abandoned locks; on a deployed stack, also
    terminate instances whose run ended or went stale and mirror SageMaker jobs."""
    from stnlp.runtime.backends.ec2 import sweep_instances
    from stnlp.runtime.backends.local import sweep_local
    from stnlp.runtime.backends.sagemaker import mirror_status

    settings = session.settings
    stores = open_stores(settings)
    for line in sweep_local(stores, settings.stack, stale_after):
        click.echo(line)
    if not settings.uses_s3:
        return
    for swept in sweep_instances(settings, stores, stale_after=stale_after):
        click.echo(f"terminated {swept['instance_id']} (run {swept['run_id']}): "
                   f"{swept['reason']}")
    sagemaker = None
    for record in list_runs(stores, settings.stack):
        if record["backend"] == "sagemaker" and record["state"] != "cleanup":
            sagemaker = sagemaker or s3_client(settings, "sagemaker")
            status = mirror_status(load_run(stores, settings.stack, record["run_id"]), sagemaker)
            click.echo(f"run {record['run_id']}: SageMaker job {status}")


@runs_group.command("resume")
@click.argument("run_id")
@stack_option
@click.option("--wait", is_flag=True, help="Follow the run until it ends.")
@pass_session
def runs_resume(session: Session, run_id: str, wait: bool) -> None:
    """Relaunch an EC2 run a spot interruption stopped; it resumes from its checkpoints."""
    settings = session.settings
    stores = open_stores(settings)
    record = load_run(stores, settings.stack, run_id).record
    if record["backend"] != "ec2":
        raise UserError(f"run {run_id} ran on {record['backend']!r}; only ec2 runs are resumed "
                        "here (SageMaker restarts its spot jobs itself)")
    launch("ec2", session.registry.job(record["job"]), settings, stores, wait=wait,
           run_id=run_id)
