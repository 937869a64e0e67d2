"""`stnlp data`: check the datasets before training on them."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from stnlp.common.errors import DataError
from stnlp.runtime.cli.base import cli
from stnlp.runtime.data import load_any


@cli.group("data")
def data_group() -> None:
    """Work with the datasets (subtitles, transcripts, locations, characters)."""


@data_group.command("validate")
@click.argument("path", type=click.Path(path_type=Path))
def validate_command(path: Path) -> None:
    """Load PATH (a dataset root, one dataset folder or one file) and report what loaded."""
    results = load_any(path)
    table = Table(title=f"datasets in {path}")
    for column, justify in (
        ("dataset", "left"),
        ("files", "right"),
        ("records", "right"),
        ("skipped", "right"),
        ("notes", "left"),
    ):
        table.add_column(column, justify=justify)
    for name, result in results.items():
        table.add_row(
            name,
            str(len(result.files)),
            str(len(result.records)),
            str(result.skipped),
            "\n".join(result.notes) or "-",
        )
    Console(width=140).print(table)
    if not any(result.records for result in results.values()):
        raise DataError(f"{path}: no records loaded")
