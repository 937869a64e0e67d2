"""`stnlp chat CHARACTER [MESSAGE]`: chat with a character from the terminal, streamed.

It reaches the chatbot through the registry: the job's ``chat`` function (``JobSpec.chat``)
opens a session on the same source chain as the Chat tab. The first line (on stderr) says which
source answers and why the sources before it do not.
"""

from __future__ import annotations

import click

from stnlp.common.errors import UserError
from stnlp.runtime.cli.base import Session, cli, pass_session
from stnlp.runtime.training import import_entrypoint

QUIT = ("/quit", "/exit")


def print_stream(parts) -> str:
    """Echo a growing reply as it grows; return the whole reply."""
    shown = ""
    for part in parts:
        if part.startswith(shown):
            click.echo(part[len(shown) :], nl=False)
        else:  # the text changed before what was shown: start the line again
            click.echo(f"\r{part}", nl=False)
        shown = part
    click.echo()
    return shown


def _chat_jobs(registry) -> list[str]:
    return [spec.name for spec in registry.job_specs() if spec.chat]


@cli.command("chat")
@click.argument("character")
@click.argument("message", nargs=-1)
@click.option("--job", default=None, help="The chatbot job that answers (default: the first).")
@click.option("--no-retrieval", is_flag=True, help="No retrieved lines of the character's.")
@click.option("--temperature", default=0.7, show_default=True, type=click.FloatRange(0.0, 2.0))
@click.option("--top-p", default=0.9, show_default=True, type=click.FloatRange(0.05, 1.0))
@click.option("--max-new-tokens", default=64, show_default=True, type=click.IntRange(1, 512))
@pass_session
def chat_command(
    session: Session,
    character: str,
    message: tuple[str, ...],
    job: str | None,
    no_retrieval: bool,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
) -> None:
    """Chat with CHARACTER: one reply to MESSAGE, or a conversation (type /quit or Ctrl-D)."""
    jobs = _chat_jobs(session.registry)
    if not jobs:
        raise UserError("no loaded plugin offers a chatbot (a job with a chat function)")
    name = job or jobs[0]
    spec = session.registry.job(name)
    if not spec.chat:
        raise UserError(f"job {name!r} has no chat function (chatbots: {', '.join(jobs)})")
    chat = import_entrypoint(spec.chat)(session.settings, spec, character)
    click.echo(chat.describe(), err=True)
    options = dict(
        retrieval=not no_retrieval,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
    )
    if message:
        print_stream(chat.stream(" ".join(message), **options))
        return
    while True:
        try:
            text = click.prompt("you", prompt_suffix="> ", err=True).strip()
        except (EOFError, click.exceptions.Abort):
            click.echo(err=True)
            return
        if text in QUIT:
            return
        click.echo(f"{chat.character}> ", nl=False, err=True)
        print_stream(chat.stream(text, **options))
