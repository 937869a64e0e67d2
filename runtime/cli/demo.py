"""`stnlp demo`: the local demo in one command."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from stnlp.runtime.cli.base import Session, cli, pass_session
from stnlp.runtime.data import SAMPLE_DIR


@cli.command("demo")
@click.option(
    "--data",
    "data_dir",
    default=SAMPLE_DIR,
    show_default=True,
    type=click.Path(path_type=Path),
    help="Dataset folder laid out like data/sample.",
)
@click.option("--no-serve", is_flag=True, help="Stop after training.")
@click.option("--retrain", is_flag=True, help="Train every job even if its model is current.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option("--port", default=7860, show_default=True, type=int, help="Port to serve on.")
@pass_session
def demo_command(
    session: Session, data_dir: Path, no_serve: bool, retrain: bool, host: str, port: int
) -> None:
    """Load the sample data, train every job on its demo preset locally, then serve the interface.

    The chatbots fine-tune the packaged SmolLM2-135M-Instruct (preset ``local``), the other
    jobs train tiny models. No cloud and no network. Two jobs of the same training (the two
    chatbots' ``local`` presets) train once. A rerun reuses the models unless their data or
    config changed.
    """
    from stnlp.runtime.auth import check_bind, check_port, load_credentials

    credentials = load_credentials(session.settings)
    if not no_serve:  # refuse before training (and before loading Gradio), not after
        check_bind(host, credentials)
        check_port(host, port)
    from stnlp.runtime.demo import train_all
    from stnlp.runtime.ui import AppContext, ServeOptions, launch

    jobs = train_all(session.settings, session.registry, data_dir, retrain=retrain)
    table = Table(title="stnlp demo models")
    for column in ("job", "model", "action", "version"):
        table.add_column(column)
    for job in jobs:
        action = f"{job.action} from {job.source}" if job.source else job.action
        table.add_row(job.job, job.model, action, job.version or "-")
    Console(width=140).print(table)
    if no_serve:
        return
    options = ServeOptions(host=host, port=port, credentials=credentials)
    blocks = launch(AppContext(session.settings, session.registry), options)
    click.echo(f"serving on {blocks.local_url}")
    blocks.block_thread()
