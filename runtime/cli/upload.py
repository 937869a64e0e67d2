"""`stnlp data upload`, `data versions`, `data rollback`: the versioned datasets of a store."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from stnlp.common.errors import UserError
from stnlp.runtime.cli.base import Session, pass_session, stack_option
from stnlp.runtime.cli.data import data_group


def _datasets(session: Session):
    from stnlp.runtime.datasets import DatasetStore
    from stnlp.runtime.store import open_stores

    return DatasetStore(open_stores(session.settings).datasets)


@data_group.command("upload")
@click.argument("path", type=click.Path(path_type=Path))
@stack_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--skip-bad", is_flag=True,
              help="Upload the files that load and leave out (and list) those that do not.")
@pass_session
def data_upload_command(session: Session, path: Path, quiet: bool, skip_bad: bool) -> None:
    """Validate every file of PATH (a dataset root, folder or file), then store each dataset
    as a new version and point at it.

    Any file that fails to load refuses the whole upload, unless --skip-bad. A folder is the
    whole dataset; a single file is added to the current version's files. Without --stack this
    fills the local store (the embedded default)."""
    from stnlp.runtime.upload import upload_path

    datasets = _datasets(session)
    report = upload_path(path, datasets.store, progress=not quiet, skip_bad=skip_bad)
    for name, version in sorted(report.versions.items()):
        what = "unchanged, still" if name in report.unchanged else "new version"
        click.echo(f"{name}: {what} {version}")
    for bad in report.bad_skipped:
        click.echo(f"left out (does not load): {bad}")
    click.echo(
        f"{len(report.uploaded)} file(s) uploaded ({report.bytes_sent} bytes), "
        f"{len(report.skipped)} unchanged, to {datasets.store.description}"
    )


@data_group.command("versions")
@click.argument("dataset")
@stack_option
@pass_session
def data_versions_command(session: Session, dataset: str) -> None:
    """List DATASET's versions, oldest first; * marks the current one."""
    datasets = _datasets(session)
    state = datasets.pointer_state(dataset)
    table = Table(title=f"dataset {dataset}")
    for column in ("", "version", "files", "created", "left out"):
        table.add_column(column)
    for version in datasets.versions(dataset):
        try:
            manifest = datasets.manifest(dataset, version)
        except UserError as exc:  # one damaged version must not hide the rest
            table.add_row("", version, "-", f"damaged: {exc}", "-")
            continue
        table.add_row("*" if version == state.version else "", version,
                      str(len(manifest["files"])), str(manifest.get("created", "-"))[:19],
                      str(len(manifest.get("skipped") or [])))  # fmt: skip
    Console(width=140).print(table)
    if state.damage:
        click.echo(f"warning: {state.damage} (repair: stnlp data rollback {dataset} VERSION)")
    elif state.version is None and datasets.legacy_keys(dataset):
        click.echo(f"{dataset}: unversioned files only (upload it to make a version)")


@data_group.command("rollback")
@click.argument("dataset")
@click.argument("version")
@stack_option
@pass_session
def data_rollback_command(session: Session, dataset: str, version: str) -> None:
    """Point DATASET at VERSION (checked complete first); repairs a damaged pointer too."""
    previous = _datasets(session).rollback(dataset, version)
    click.echo(f"{dataset}: current {previous} -> {version}")
