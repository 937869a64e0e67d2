"""`stnlp data upload`: validate datasets and upload them to a stack's datasets bucket."""

from __future__ import annotations

from pathlib import Path

import click

from stnlp.runtime.cli.base import Session, pass_session, stack_option
from stnlp.runtime.cli.data import data_group


@data_group.command("upload")
@click.argument("path", type=click.Path(path_type=Path))
@stack_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
@pass_session
def data_upload_command(session: Session, path: Path, quiet: bool) -> None:
    """Validate PATH (a dataset root, folder or file), then upload changed files to raw/.

    Without --stack this fills the local store (the embedded default)."""
    from stnlp.runtime.store import open_stores
    from stnlp.runtime.upload import upload_path

    settings = session.settings
    store = open_stores(settings).datasets
    report = upload_path(path, store, progress=not quiet)
    click.echo(
        f"{len(report.uploaded)} file(s) uploaded ({report.bytes_sent} bytes), "
        f"{len(report.skipped)} unchanged, to {store.description}"
    )
