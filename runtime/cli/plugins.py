"""`stnlp plugins`: what is loaded."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from stnlp.runtime.cli.base import Session, cli, pass_session


@cli.command("plugins")
@pass_session
def plugins_command(session: Session) -> None:
    """List plugins, their components, training jobs and interface tabs."""
    registry = session.registry
    table = Table(title="stnlp plugins")
    for column in ("plugin", "origin", "components", "jobs", "tabs"):
        table.add_column(column)
    for info in registry.plugins:
        components = [c.name for p, c in registry.components if p == info.name]
        jobs = [j.name for p, j in registry.jobs.values() if p == info.name]
        tabs = [t.title for p, t in registry.tabs if p == info.name]
        table.add_row(
            info.name, info.origin, *("\n".join(x) or "-" for x in (components, jobs, tabs))
        )
    Console(width=140).print(table)
    click.echo(f"settings: {session.settings.source}")
