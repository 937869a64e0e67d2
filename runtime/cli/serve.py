"""`stnlp serve`: the Gradio interface."""

from __future__ import annotations

import click

from runtime.cli.base import Session, cli, pass_session


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=7860, show_default=True, type=int, help="Port to bind.")
@pass_session
def serve_command(session: Session, host: str, port: int) -> None:
    """Serve the assembled interface."""
    from runtime.ui import AppContext, build_app

    app = build_app(AppContext(session.settings, session.registry))
    app.queue().launch(server_name=host, server_port=port, show_error=False)
