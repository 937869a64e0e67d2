"""`stnlp runs`: run records of the configured stack."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from stnlp.runtime.cli.base import Session, cli, pass_session, stack_option


def _stores(session: Session):
    from stnlp.runtime.store import open_stores

    return open_stores(session.settings)


@cli.group("runs")
def runs_group() -> None:
    """Training runs: list, inspect, read logs, stop."""


@runs_group.command("list")
@stack_option
@click.option("--job", default=None, help="Only this job's runs.")
@pass_session
def runs_list(session: Session, job: str | None) -> None:
    """List runs, newest first."""
    from stnlp.runtime.runs import scan_runs

    table = Table(title=f"runs in stack {session.settings.stack}")
    for column in ("run", "job", "backend", "state", "result", "created"):
        table.add_column(column)
    records, damaged = scan_runs(_stores(session), session.settings.stack, job)
    for r in records:
        table.add_row(
            r["run_id"], r["job"], r["backend"], r["state"], r["result"] or "-", r["created"][:19]
        )
    Console(width=160).print(table)
    for line in damaged:
        click.echo(f"warning: damaged run record: {line} (see `stnlp doctor`)", err=True)


@runs_group.command("show")
@stack_option
@click.argument("run_id")
@pass_session
def runs_show(session: Session, run_id: str) -> None:
    """Show a run's record (state, history, error, model version)."""
    from stnlp.runtime.runs import load_run

    click.echo(
        json.dumps(load_run(_stores(session), session.settings.stack, run_id).record, indent=2)
    )


@runs_group.command("logs")
@stack_option
@click.argument("run_id")
@pass_session
def runs_logs(session: Session, run_id: str) -> None:
    """Print a run's uploaded logs."""
    from stnlp.runtime.runs import load_run

    run = load_run(_stores(session), session.settings.stack, run_id)
    keys = run.stores.results.list(f"{run.prefix}/logs/")
    if not keys:
        click.echo(f"run {run_id}: no logs uploaded yet")
    for key in keys:
        click.echo(f"==> {key.rsplit('/', 1)[1]} <==")
        click.echo(run.stores.results.get(key).decode("utf-8", errors="replace"), nl=False)


@runs_group.command("kill")
@stack_option
@click.argument("run_id")
@pass_session
def runs_kill(session: Session, run_id: str) -> None:
    """Ask a run's backend to stop it (ends it here if it stopped heartbeating).

    EC2 and SageMaker runs are ended here: the instance is terminated, the job stopped.
    """
    from stnlp.runtime.cli.cloud import CLOUD_BACKENDS, kill_cloud_run
    from stnlp.runtime.runs import NoRunError, load_run, release_lock_of, request_kill
    from stnlp.runtime.store import DamagedObjectError

    stores = _stores(session)
    try:
        backend = load_run(stores, session.settings.stack, run_id).record["backend"]
    except (NoRunError, DamagedObjectError):  # a run that never started, or a damaged record
        released = release_lock_of(stores, session.settings.stack, run_id)
        if released is None:
            raise
        click.echo(f"run {run_id}: {released}")
        return
    if backend in CLOUD_BACKENDS:
        record = kill_cloud_run(session.settings, stores, run_id)
        click.echo(f"run {run_id}: {record['result']} ({record['error']})")
        return
    run = request_kill(stores, session.settings.stack, run_id)
    click.echo(f"run {run_id}: kill requested (state {run.state})")
