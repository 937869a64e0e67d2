"""The chat tab: pick a chatbot and a character, chat with streamed replies."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from stnlp.plugins.chatbot.infer import (
    Source,
    as_messages,
    character_prompt,
    dataset_folder,
    describe_sources,
    load_chat,
    offline_responder,
    resolve_sources,
    source_for,
)
from stnlp.plugins.chatbot.plugin import BASES, base_model


def sources(app) -> dict[str, tuple[Source, ...]]:
    """Job -> its sources in order of preference (see :func:`resolve_sources`)."""
    return {job: resolve_sources(app.settings, job, base_model(app.settings, job)) for job in BASES}


def _label(live: dict[str, tuple[Source, ...]]) -> str:
    return "; ".join(f"{job}: {describe_sources(chain)}" for job, chain in live.items())


def model_source(app) -> str:
    """Which source each chatbot uses, for the header."""
    return _label(sources(app))


def respond(
    source: Source,
    folders: dict[str, Path],
    message,
    history,
    character,
    temperature,
    top_p,
    max_new_tokens,
):
    """Stream ``source``'s reply in ``character``'s voice (``folders``: dataset -> its folder)."""
    if source.kind == "offline":
        responder = offline_responder(folders["transcripts"], folders["characters"], character)
        yield responder.reply(message)
        return
    messages = as_messages(character_prompt(folders["characters"], character), history, message)
    yield from load_chat(source).stream(messages, int(max_new_tokens), temperature, top_p)


def build(app) -> None:
    """Lay out the tab inside the open ``gr.Tab``."""
    from stnlp.runtime.data import load_characters

    # resolved once per process: a message neither re-verifies the model nor re-reads the store
    live = sources(app)
    folders = {name: dataset_folder(app.settings, name) for name in ("transcripts", "characters")}
    names = [c.name for c in load_characters(folders["characters"]).records]
    gr.Markdown(f"**Model source:** {_label(live)}")
    with gr.Row():
        job = gr.Dropdown(list(BASES), value=next(iter(BASES)), label="Chatbot")
        character = gr.Dropdown(
            names, value="Eleven" if "Eleven" in names else names[0], label="Character"
        )
    with gr.Accordion("Generation settings", open=False):
        temperature = gr.Slider(0.0, 1.5, value=0.7, step=0.05, label="Temperature")
        top_p = gr.Slider(0.1, 1.0, value=0.9, step=0.05, label="Top-p")
        max_new_tokens = gr.Slider(8, 256, value=64, step=8, label="Max new tokens")

    def reply(message, history, job, character, *settings):
        source = source_for(live[job], character)
        yield from respond(source, folders, message, history, character, *settings)

    gr.ChatInterface(reply, additional_inputs=[job, character, temperature, top_p, max_new_tokens])
