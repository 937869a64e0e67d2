"""`stnlp eval JOB`: run a job's evaluator and print its report."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from stnlp.common.errors import UserError
from stnlp.runtime.cli.base import JobCommand, Session, cli, pass_session
from stnlp.runtime.data import SAMPLE_DIR
from stnlp.runtime.training import import_entrypoint


def report_table(job: str, report: dict) -> Table:
    """One row per source (the ``summary`` section goes in the caption), one column per metric,
    in the order the report first names them."""
    summary = report.get("summary", {})
    sections = {name: values for name, values in report.items() if name != "summary"}
    metrics = list(dict.fromkeys(metric for values in sections.values() for metric in values))
    table = Table(
        title=f"stnlp eval {job}", caption=", ".join(f"{k}: {v}" for k, v in summary.items())
    )
    table.add_column("source")
    for metric in metrics:
        table.add_column(metric, justify="right")
    for name, values in sections.items():
        cells = [values.get(m) for m in metrics]
        table.add_row(name, *("-" if c is None else str(c) for c in cells))
    return table


@cli.command("eval", cls=JobCommand)
@click.argument("job")
@click.option(
    "--data",
    "data_dir",
    default=SAMPLE_DIR,
    show_default=True,
    type=click.Path(path_type=Path),
    help="Dataset folder laid out like data/sample.",
)
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=int,
    help="Evaluate at most this many held-out examples.",
)
@click.option(
    "--model-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Evaluate this model folder instead of the registry's latest version.",
)
@click.option("--preset", default=None, help="Read the job's hyperparameters with this preset.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_session
def eval_command(
    session: Session,
    job: str,
    data_dir: Path,
    limit: int,
    model_dir: Path | None,
    preset: str | None,
    as_json: bool,
) -> None:
    """Evaluate JOB's trained model on held-out data with the job's own evaluator."""
    spec = session.registry.job(job)
    if spec.evaluator is None:
        raise UserError(f"job {job!r} has no evaluator")
    if not data_dir.is_dir():
        raise UserError(f"data folder {data_dir} does not exist")
    report = import_entrypoint(spec.evaluator)(
        session.settings, spec, data_dir, limit=limit, model_dir=model_dir, preset=preset
    )
    if as_json:
        click.echo(json.dumps(report, indent=1))
    else:
        Console(width=140).print(report_table(job, report))
