"""The `stnlp` command group and the session object its commands share."""

from __future__ import annotations

from functools import cached_property

import click

import stnlp
from stnlp.common.settings import Settings, load_settings
from stnlp.runtime import logs


class Session:
    """Lazily loaded settings and plugin registry for one CLI invocation."""

    def __init__(self, debug: bool = False):
        self.debug = debug

    @cached_property
    def settings(self) -> Settings:
        """Settings from the file and environment."""
        return load_settings()

    @cached_property
    def registry(self):
        """The plugin registry built from the settings."""
        from stnlp.plugins.manager import build_plugin_manager

        return build_plugin_manager(self.settings)


pass_session = click.make_pass_decorator(Session)


def _use_stack(ctx: click.Context, _param: click.Parameter, stack: str | None) -> None:
    if stack is not None:
        session = ctx.ensure_object(Session)
        session.settings = session.settings.with_overrides(store="s3", stack=stack)


stack_option = click.option(
    "--stack",
    default=None,
    expose_value=False,
    callback=_use_stack,
    help="A deployed stack: use its S3 buckets, found through its manifest. "
    "Default: the settings' store and stack.",
)
"""Add ``--stack NAME`` to a command: the session's settings switch to that stack's buckets."""


def image_options(command):
    """Add ``--image`` and ``--image-python`` (the SageMaker backend's container) to a command."""
    command = click.option(
        "--image-python", default=None, metavar="3.NN",
        help="sagemaker: the image's Python, when its tag does not say (py311).",
    )(command)  # fmt: skip
    return click.option(
        "--image", default=None,
        help="sagemaker: the container image (default: AWS's PyTorch image).",
    )(command)  # fmt: skip


class JobCommand(click.Command):
    """A command whose JOB argument is a training job: its help lists the installed jobs."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        session = ctx.find_object(Session)
        if session is None:
            return
        jobs = session.registry.jobs
        with formatter.section("Jobs"):
            formatter.write_dl([(name, _job_line(spec)) for name, (_, spec) in jobs.items()])
        super().format_epilog(ctx, formatter)


def _job_line(spec) -> str:
    """A job's description and presets, for help texts."""
    presets = f" (presets: {', '.join(spec.presets)})" if spec.presets else ""
    return f"{spec.description}{presets}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(stnlp.__version__, "--version", "-V", prog_name="stnlp")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Stranger Things NLP suite: train, publish and serve the series' NLP components."""
    session = Session(debug)
    ctx.obj = session
    logs.configure("DEBUG" if debug else session.settings.log_level)
