"""The `stnlp` command line. Each command area lives in its own module, imported here.

One error boundary (:func:`main`): an expected failure is one line naming the file, field or
value, exit status 2; anything unexpected is one "internal error" line saying where its
traceback went (:mod:`stnlp.runtime.crash`), exit status 1. ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import sys

import click

from stnlp.runtime.cli import (  # noqa: F401  (importing a module registers its commands)
    batch,
    chat,
    cloud,
    cost,
    data,
    demo,
    deploy,
    doctor,
    evaluate,
    models,
    plugins,
    release,
    runs,
    serve,
    train,
    tune,
    upload,
)
from stnlp.runtime.cli.base import cli
from stnlp.runtime.crash import expected_message, internal_message

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user mistakes print one line and exit 2, with no traceback unless --debug."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        code = cli.main(args=args, prog_name="stnlp", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        if debug:
            raise
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # the boundary: nothing below reaches the user as a traceback
        if debug:
            raise
        message = expected_message(exc)
        if message is not None:
            click.echo(f"error: {message}", err=True)
            sys.exit(EXIT_USER_ERROR)
        click.echo(f"error: {internal_message(exc)}", err=True)
        sys.exit(EXIT_INTERNAL_ERROR)
    if isinstance(code, int) and code:
        sys.exit(code)
