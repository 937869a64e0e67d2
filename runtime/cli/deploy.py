"""`stnlp deploy JOB` / `stnlp undeploy JOB`: a chatbot's latest version on a SageMaker
endpoint, and its removal."""

from __future__ import annotations

import click

from stnlp.runtime.cli.base import JobCommand, Session, cli, pass_session, stack_option


@cli.command("deploy", cls=JobCommand)
@click.argument("job")
@click.option("--instance-type", default="ml.g5.2xlarge", show_default=True,
              help="The endpoint's instance (one GPU).")
@click.option("--yes", is_flag=True, help="Deploy without asking (the cost is still shown).")
@stack_option
@pass_session
def deploy_command(session: Session, job: str, instance_type: str, yes: bool) -> None:
    """Serve JOB's latest model version (base model + LoRA adapter) on a SageMaker endpoint."""
    from stnlp.runtime.backends.sagemaker_deploy import deploy, idle_cost_line, plan
    from stnlp.runtime.store import open_stores

    spec, stores = session.registry.job(job), open_stores(session.settings)
    planned = plan(spec, session.settings, stores, instance_type)  # fails before the question
    click.echo(f"{planned.model} {planned.version} (for {planned.character}) on "
               f"{planned.base_model} -> endpoint {planned.name}")
    click.echo(idle_cost_line(instance_type))
    if not yes:
        click.confirm("create it?", abort=True)
    record = deploy(spec, session.settings, stores, instance_type=instance_type)
    click.echo(f"endpoint {record['endpoint']} created; the chat tab uses it once InService")


@cli.command("undeploy")
@click.argument("job")
@click.option("--name", default=None, help="The endpoint, when no record names it.")
@stack_option
@pass_session
def undeploy_command(session: Session, job: str, name: str | None) -> None:
    """Remove JOB's endpoint, its config and its model (what is already gone is skipped)."""
    from stnlp.runtime.backends.sagemaker_deploy import undeploy
    from stnlp.runtime.store import open_stores

    spec = session.registry.job(job)
    for line in undeploy(spec, session.settings, open_stores(session.settings), name=name):
        click.echo(f"deleted {line}")
