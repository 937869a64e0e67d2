"""`stnlp train`: run a job on a backend and publish its model."""

from __future__ import annotations

import json
import signal
from typing import Any

import click

from stnlp.common.errors import UserError
from stnlp.plugins.spec import JobSpec
from stnlp.runtime.backends import BACKENDS, get_backend
from stnlp.runtime.cli.base import (
    JobCommand,
    Session,
    cli,
    image_options,
    pass_session,
    stack_option,
)


def parse_overrides(pairs: tuple[str, ...], spec: JobSpec) -> dict[str, Any]:
    """``key=value`` pairs as hyperparameter overrides, each parsed and checked against the
    kind the job spec gives the parameter (see :class:`stnlp.plugins.spec.JobSpec`)."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--set {pair!r}: expected key=value")
        overrides[key] = spec.parse_override(key, text)
    return overrides


def _interrupt_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so the run is recorded as killed and cleaned up."""

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, handler)


def show_plan(spec, settings, stores) -> None:
    """Print what `stnlp train JOB --backend ec2` would launch, creating nothing."""
    from stnlp.runtime.backends.ec2 import train_ec2

    plan = train_ec2(spec, settings, stores=stores, dry_run=True)
    shown = {k: v for k, v in plan.request.items() if k != "UserData"}
    click.echo(json.dumps(shown, indent=1))
    size = sum(item.size for item in plan.release.files)
    click.echo(f"user data: {plan.user_data_bytes} bytes (EC2 accepts 16384)")
    click.echo(f"release: {len(plan.release.wheels)} wheel(s), {plan.release.pins} locked "
               f"dependencies, {size / 1e6:.1f} MB")
    click.echo(plan.cost.line())


@cli.command("train", cls=JobCommand)
@click.argument("job")
@click.option(
    "--backend",
    type=click.Choice(sorted(BACKENDS)),
    default="local",
    show_default=True,
    help="Where to train.",
)
@click.option("--preset", default=None, help="A preset of the job (e.g. tiny).")
@stack_option
@click.option("--wait", is_flag=True, help="ec2/sagemaker: follow the run until it ends.")
@click.option("--dry-run", is_flag=True,
              help="ec2: print the launch request, user data size and cost; launch nothing.")
@click.option(
    "--set",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a hyperparameter (repeatable).",
)
@image_options
@pass_session
def train_command(
    session: Session,
    job: str,
    backend: str,
    preset: str | None,
    wait: bool,
    dry_run: bool,
    pairs: tuple[str, ...],
    image: str | None,
    image_python: str | None,
) -> None:
    """Train JOB through the run state machine and publish its model."""
    from stnlp.runtime.cli.cloud import CLOUD_BACKENDS, launch
    from stnlp.runtime.runs import load_run
    from stnlp.runtime.store import open_stores

    spec = session.registry.job(job)
    overrides = parse_overrides(pairs, spec)
    settings = session.settings
    stores = open_stores(settings)
    if dry_run:
        if backend != "ec2":
            raise UserError("--dry-run is for --backend ec2")
        show_plan(spec, settings, stores)
        return
    if (image or image_python) and backend != "sagemaker":
        raise UserError("--image and --image-python are for --backend sagemaker")
    if backend in CLOUD_BACKENDS:
        images = {"image": image, "image_python": image_python} if image or image_python else {}
        launch(backend, spec, settings, stores, wait=wait, preset=preset, overrides=overrides,
               **images)
        return
    _interrupt_on_sigterm()
    run_id = get_backend(backend)(
        spec, settings, stores=stores, preset=preset, overrides=overrides
    )
    record = load_run(stores, settings.stack, run_id).record
    click.echo(f"run {run_id}: {record['result']}")
    if record["result"] == "succeeded" and record.get("model_version"):
        click.echo(f"published {spec.output_model} {record['model_version']}")
    if record["result"] != "succeeded":
        raise UserError(f"run {run_id} {record['result']}: {record.get('error')}")
