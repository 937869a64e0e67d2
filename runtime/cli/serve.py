"""`stnlp serve`: the Gradio interface, with login, upload limits and a status panel."""

from __future__ import annotations

import click

from stnlp.runtime.cli.base import Session, cli, pass_session, stack_option


@cli.command("serve")
@stack_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=7860, show_default=True, type=int, help="Port to bind.")
@click.option(
    "--max-file-size",
    default="10mb",
    show_default=True,
    help="Largest upload accepted (e.g. 5mb, 200kb); larger ones are refused.",
)
@pass_session
def serve_command(session: Session, host: str, port: int, max_file_size: str) -> None:
    """Serve the assembled interface.

    Binding anything but 127.0.0.1/localhost/::1 needs a login: STNLP_AUTH_USERNAME and
    STNLP_AUTH_PASSWORD, or STNLP_AUTH_SSM_PARAMETER naming an SSM SecureString.
    """
    from stnlp.runtime.auth import check_bind, check_port, load_credentials

    credentials = load_credentials(session.settings)
    check_bind(host, credentials)  # before loading Gradio: a mistake is answered at once
    check_port(host, port)
    from stnlp.runtime.ui import AppContext, ServeOptions, launch

    options = ServeOptions(host, port, max_file_size, credentials)
    blocks = launch(AppContext(session.settings, session.registry), options)
    login = " (login required)" if options.credentials else ""
    click.echo(f"serving on {blocks.local_url}{login}")
    blocks.block_thread()
