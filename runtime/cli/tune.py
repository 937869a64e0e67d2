"""`stnlp tune JOB`: search a job's hyperparameters, publish the best trial as its model."""

from __future__ import annotations

import time

import click

from stnlp.common.errors import UserError
from stnlp.runtime.cli.base import (
    JobCommand,
    Session,
    cli,
    image_options,
    pass_session,
    stack_option,
)
from stnlp.runtime.cli.train import parse_overrides

POLL_SECONDS = 30.0


def _show(result) -> None:
    click.echo(f"best: trial {result.best['trial']} ({result.best['run_id']}); published "
               f"{result.version} with its hyperparameters and the {len(result.trials)}-trial "
               "table in its manifest")


@cli.command("tune", cls=JobCommand)
@click.argument("job")
@click.option("--backend", type=click.Choice(["local", "sagemaker"]), default="local",
              show_default=True, help="Where the trials run.")
@click.option("--max-trials", type=int, default=4, show_default=True, help="How many trials.")
@click.option("--objective", required=True, metavar="METRIC",
              help="The logged metric ranking the trials (dotted for nested: heldout.value).")
@click.option("--minimize", is_flag=True, help="Lower is better (default: higher).")
@click.option("--preset", default=None, help="A preset of the job for every trial.")
@click.option("--set", "pairs", multiple=True, metavar="KEY=VALUE",
              help="Fix a hyperparameter outside the search (repeatable).")
@click.option("--seed", type=int, default=0, show_default=True, help="local: the draws' seed.")
@click.option("--wait", is_flag=True, help="sagemaker: follow the tuning job and publish.")
@click.option("--finish", "tuning_id", default=None, metavar="TUNING_ID",
              help="sagemaker: publish the best trial of an ended tuning job.")
@image_options
@stack_option
@pass_session
def tune_command(session: Session, job: str, backend: str, max_trials: int, objective: str,
                 minimize: bool, preset: str | None, pairs: tuple[str, ...], seed: int,
                 wait: bool, tuning_id: str | None, image: str | None,
                 image_python: str | None) -> None:  # fmt: skip
    """Run up to --max-trials trials of JOB over its search space; publish the best."""
    from stnlp.runtime.store import open_stores
    from stnlp.runtime.tune import Objective, format_row, tune_local

    spec = session.registry.job(job)
    goal = Objective(objective, maximize=not minimize)
    settings, stores = session.settings, open_stores(session.settings)
    overrides = parse_overrides(pairs, spec)
    if backend == "local":
        if wait or tuning_id or image or image_python:
            raise UserError("--wait, --finish, --image and --image-python are for "
                            "--backend sagemaker")
        result = tune_local(spec, settings, max_trials=max_trials, objective=goal,
                            preset=preset, overrides=overrides, seed=seed, stores=stores,
                            echo=lambda line: click.echo(line))  # fmt: skip
        _show(result)
        return
    from stnlp.runtime.backends.sagemaker_tune import finish_sagemaker, tune_sagemaker

    if tuning_id is None:
        from stnlp.runtime.cost import run_cost
        from stnlp.runtime.launchcheck import stack_spot
        from stnlp.runtime.manifest import load_manifest

        spot = stack_spot(spec, load_manifest(settings), None)
        click.echo(run_cost(spec, spot=spot, nat=False, backend="sagemaker",
                            runs=max_trials).line() + f", over {max_trials} trials")
        tuning_id = tune_sagemaker(spec, settings, max_trials=max_trials, objective=goal,
                                   preset=preset, overrides=overrides, stores=stores,
                                   image=image, image_python=image_python)  # fmt: skip
        click.echo(f"tuning job {tuning_id} created in stack {settings.stack}")
        if not wait:
            click.echo(f"publish its best with: stnlp tune {job} --backend sagemaker "
                       f"--objective {objective} --finish {tuning_id} --stack {settings.stack}")
            return
    while True:
        result = finish_sagemaker(settings, stores, tuning_id, session.registry)
        if not isinstance(result, str):
            break
        if not wait:
            raise UserError(f"tuning job {tuning_id} is {result}; finish it once it has ended")
        time.sleep(POLL_SECONDS)
    for row in result.trials:
        click.echo(format_row(row, goal))
    _show(result)
