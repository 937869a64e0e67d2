"""`stnlp batch JOB`: a sharded job over the corpus, N shards by episode, merged and published."""

from __future__ import annotations

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


@cli.command("batch", cls=JobCommand)
@click.argument("job")
@click.option("--shards", type=int, default=2, show_default=True,
              help="How many shards the episodes are dealt into.")
@click.option("--backend", type=click.Choice(["local", "sagemaker"]), default="local",
              show_default=True, help="Where the shards run (sagemaker: one processing job each).")
@click.option("--preset", default=None, help="A preset of the job.")
@click.option("--set", "pairs", multiple=True, metavar="KEY=VALUE",
              help="Override a hyperparameter (repeatable).")
@image_options
@stack_option
@pass_session
def batch_command(session: Session, job: str, shards: int, backend: str, preset: str | None,
                  pairs: tuple[str, ...], image: str | None,
                  image_python: str | None) -> None:  # fmt: skip
    """Run JOB sharded by episode, merge the shards and publish one model version.

    A rerun after a failure reuses the shards that finished (same data, settings and shards).
    """
    from stnlp.runtime.batch import run_batch
    from stnlp.runtime.runs import load_run
    from stnlp.runtime.store import open_stores

    spec = session.registry.job(job)
    settings, stores = session.settings, open_stores(session.settings)
    runner = None
    if backend == "sagemaker":
        from stnlp.runtime.backends.sagemaker import processing_shards

        if not settings.uses_s3:
            raise UserError("the sagemaker backend needs a deployed stack: use --stack NAME")
        runner = processing_shards(spec, settings, image=image, image_python=image_python)
    elif image or image_python:
        raise UserError("--image and --image-python are for --backend sagemaker")
    run_id = run_batch(spec, settings, shards=shards, backend=backend, runner=runner,
                       stores=stores, preset=preset, overrides=parse_overrides(pairs, spec))
    record = load_run(stores, settings.stack, run_id).record
    click.echo(f"{run_id}: {record['result']}; published {spec.output_model} "
               f"{record.get('model_version')} from {shards} shard(s)")
