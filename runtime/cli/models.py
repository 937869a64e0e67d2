"""`stnlp models`: the model registry."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from stnlp.runtime.cli.base import Session, cli, pass_session, stack_option


def _registry(session: Session):
    from stnlp.runtime.registry import ModelRegistry
    from stnlp.runtime.store import open_stores

    return ModelRegistry(open_stores(session.settings).models)


@cli.group("models")
def models_group() -> None:
    """Published models and their versions."""


@models_group.command("list")
@stack_option
@pass_session
def models_list(session: Session) -> None:
    """List models with their latest version and version count."""
    registry = _registry(session)
    table = Table(title="models")
    for column in ("model", "latest", "versions"):
        table.add_column(column)
    damaged = []
    for model in registry.models():
        state = registry.pointer_state(model)
        if state.damage:
            damaged.append(state.damage)
        latest = "damaged latest.json" if state.damage else state.version or "-"
        table.add_row(model, latest, str(len(registry.versions(model))))
    Console(width=140).print(table)
    for line in damaged:
        click.echo(f"warning: {line} (repair: stnlp models rollback MODEL VERSION)", err=True)


@models_group.command("show")
@stack_option
@click.argument("model")
@click.option("--version", default=None, help="A version (default: the latest).")
@pass_session
def models_show(session: Session, model: str, version: str | None) -> None:
    """Show a version's manifest and the model's versions."""
    registry = _registry(session)
    state = registry.pointer_state(model)
    if state.damage:
        click.echo(f"warning: {state.damage} (repair: stnlp models rollback {model} VERSION)",
                   err=True)  # fmt: skip
    latest = state.version
    version = version or latest
    if version is None:
        click.echo(f"model {model}: no published version")
        for known in registry.versions(model):
            click.echo(f"  {known}")
        return
    click.echo(json.dumps(registry.manifest(model, version), indent=2))
    for known in registry.versions(model):
        click.echo(f"{'*' if known == latest else ' '} {known}")


@models_group.command("rollback")
@stack_option
@click.argument("model")
@click.argument("version")
@pass_session
def models_rollback(session: Session, model: str, version: str) -> None:
    """Point MODEL's latest at VERSION."""
    previous = _registry(session).rollback(model, version)
    click.echo(f"{model}: latest {previous} -> {version}")
