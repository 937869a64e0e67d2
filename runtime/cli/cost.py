"""`stnlp cost STACK`: what a stack costs while idle and per training hour of each job."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from stnlp.runtime.cli.base import Session, cli, pass_session


@cli.command("cost")
@click.argument("stack")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder holding Pulumi.<STACK>.yaml.",
)
@pass_session
def cost_command(session: Session, stack: str, directory: Path) -> None:
    """Estimate STACK's monthly cost while idle and each job's cost per training hour."""
    from stnlp.common.stackconfig import config_from_stack_file
    from stnlp.runtime.cost import estimate, load_prices

    config = config_from_stack_file(directory / f"Pulumi.{stack}.yaml")
    prices = load_prices()
    idle, jobs = estimate(config, session.registry.job_specs(), prices, ("ec2", "sagemaker"))
    console = Console(width=120)
    monthly = sum(item.monthly for item in idle)
    table = Table(title=f"stack {stack} ({config.region}) while idle")
    table.add_column("item")
    table.add_column("$/month", justify="right")
    for item in idle:
        table.add_row(item.item, f"{item.monthly:.2f}")
    console.print(table)
    click.echo(
        f"idle: ${monthly:.2f}/month = ${monthly / prices['hours_per_month']:.4f}/hour "
        f"(plus S3 storage at ${prices['s3_standard_gb_month']}/GB-month)"
    )
    table = Table(title="per training hour")
    for column in ("job", "backend", "instance", "market", "$/hour"):
        table.add_column(column, justify="right" if column == "$/hour" else "left")
    for job in jobs:
        table.add_row(job.job, job.backend, job.instance_type, job.market, f"{job.hourly:.3f}")
    console.print(table if jobs else "no training jobs are registered")
    click.echo(
        f"prices: {prices['region']}, recorded {prices['recorded']}; "
        f"spot assumed at {prices['spot_fraction']:.0%} of on-demand (EC2), "
        f"{prices['sagemaker_spot_fraction']:.0%} (SageMaker managed spot)"
    )
