"""The `stnlp` command line. Each command area lives in its own module, imported here."""

from __future__ import annotations

import sys

import click

from stnlp.common.errors import UserError
from stnlp.runtime.cli import (  # noqa: F401  (importing a module registers its commands)
    chat,
    cloud,
    cost,
    data,
    demo,
    evaluate,
    models,
    plugins,
    runs,
    serve,
    train,
    upload,
)
from stnlp.runtime.cli.base import cli


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user mistakes print one line and exit 2, with no traceback unless --debug."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="stnlp", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        if debug:
            raise
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(2)
    except UserError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
