"""The chat tab: pick a chatbot and a character, chat with streamed replies.

The tab's badge names the default chatbot's sources in a few words and the Status tab every
chatbot's chain in full (and why a trained version is not used); the line under the pickers
names the source answering as the picked character. Replies stream through
:func:`stnlp.plugins.chatbot.infer.reply_stream`, the same path as ``stnlp chat``.
"""

from __future__ import annotations

import gradio as gr

from stnlp.plugins.chatbot.catalog import SMOLLM2
from stnlp.plugins.chatbot.data import speaking_characters
from stnlp.plugins.chatbot.infer import (
    Chain,
    Source,
    dataset_folder,
    reply_stream,
    resolve_sources,
)
from stnlp.plugins.chatbot.plugin import BASES, base_model

DEFAULT_JOB = next(iter(BASES))
"""The chatbot the tab picks first."""


def sources(app) -> dict[str, Chain]:
    """Job -> its source chain (see :func:`resolve_sources`)."""
    return {job: resolve_sources(app.settings, job, base_model(app.settings, job)) for job in BASES}


def shared_base_note(live: dict[str, Chain]) -> str:
    """A note when every chatbot runs on the same local base model (the packaged SmolLM2)."""
    bases = {s.base_model for chain in live.values() for s in chain.sources if s.base_model}
    if bases != {SMOLLM2} or len(live) < 2:
        return ""
    return (
        f"All chatbots run on the same base here, {SMOLLM2} (packaged; no Llama or Qwen weights "
        "are available offline), so they differ only by their trained adapters; `stnlp demo` "
        "trains one adapter for both, their local presets being the same training."
    )


EXAMPLES = ("Where is Will?", "What is the Upside Down?", "Do you want some Eggos?")


def compact(source: Source) -> str:
    """A source in a few words, without version ids: what the badge and the pickers show."""
    if source.kind == "registry":
        return f"trained adapter for {source.character}"
    if source.kind == "endpoint":
        return f"hosted endpoint for {source.character or 'every character'}"
    if source.kind == "base":
        return f"untuned base {source.base_model.rsplit('/', 1)[-1]}"
    return "offline responder"


def headline(chain: Chain) -> str:
    """The chain in a few words: the live source, and the one other characters get."""
    first = chain.sources[0]
    if not first.character:
        return compact(first)
    others = next(source for source in chain.sources[1:] if not source.character)
    return f"{compact(first)}, others: {compact(others)}"


def model_source(app) -> str:
    """The default chatbot's sources in a few words, then every chatbot's in full."""
    live = sources(app)
    detail = [f"{job}: {chain.describe()}" for job, chain in live.items()]
    note = shared_base_note(live)
    return "; ".join([headline(live[DEFAULT_JOB]), *detail, *([note] if note else [])])


def not_empty(message: str):
    """Only a message with some text is sent; an empty one gets a hint instead of a reply."""
    return gr.validate(bool((message or "").strip()), "Type a message first.")


def build(app) -> None:
    """Lay out the tab inside the open ``gr.Tab``."""
    # resolved once per process: a message neither re-verifies the model nor re-reads the store
    live = sources(app)
    folders = {name: dataset_folder(app.settings, name) for name in ("transcripts", "characters")}
    names = speaking_characters(folders["transcripts"], folders["characters"])
    first = "Eleven" if "Eleven" in names else names[0]
    gr.Markdown(
        "Chat with a character in their own voice: pick a chatbot and a character (those who "
        "speak in the transcripts), then type a message. Replies are one line of dialogue.",
        elem_classes="stnlp-hint",
    )
    with gr.Row():
        job = gr.Dropdown(list(BASES), value=DEFAULT_JOB, label="Chatbot")
        character = gr.Dropdown(names, value=first, label="Character")

    def answering(job_name: str, name: str) -> str:
        chain = live[job_name]
        return f"**Answering as {name}:** {compact(chain.for_character(name))} ({job_name})"

    answer = gr.Markdown(answering(DEFAULT_JOB, first), elem_classes="stnlp-done")
    job.change(answering, [job, character], answer)
    character.change(answering, [job, character], answer)
    with gr.Accordion("Generation settings", open=False):
        retrieval = gr.Checkbox(
            value=True, label="Retrieval: put the character's most similar own lines in the prompt"
        )
        temperature = gr.Slider(0.0, 1.5, value=0.7, step=0.05, label="Temperature")
        top_p = gr.Slider(0.1, 1.0, value=0.9, step=0.05, label="Top-p")
        max_new_tokens = gr.Slider(8, 256, value=64, step=8, label="Max new tokens")

    def reply(message, history, job_name, name, use_retrieval, temp, p, tokens):
        source = live[job_name].for_character(name)
        yield from reply_stream(
            source, folders, name, message, history, use_retrieval, temp, p, int(tokens)
        )

    chat = gr.ChatInterface(
        reply,
        additional_inputs=[job, character, retrieval, temperature, top_p, max_new_tokens],
        validator=not_empty,
    )
    gr.Examples([[e] for e in EXAMPLES], chat.textbox, label="Examples (then press Enter)")
