"""The chat tab: pick a chatbot and a character, chat with streamed replies."""

from __future__ import annotations

import gradio as gr

from plugins.chatbot.infer import (
    as_messages,
    character_prompt,
    dataset_folder,
    load_chat,
    offline_responder,
    resolve_source,
)
from plugins.chatbot.plugin import BASES, base_model


def sources(app) -> dict[str, object]:
    """Job -> its live :class:`plugins.chatbot.infer.Source`."""
    return {job: resolve_source(app.settings, job, base_model(app.settings, job)) for job in BASES}


def model_source(app) -> str:
    """Which source each chatbot uses, for the header."""
    return "; ".join(f"{job}: {source.label}" for job, source in sources(app).items())


def respond(app, message, history, job, character, temperature, top_p, max_new_tokens):
    """Stream the reply of ``job``'s live source, in ``character``'s voice."""
    characters = dataset_folder(app.settings, "characters")
    source = resolve_source(app.settings, job, base_model(app.settings, job))
    if source.kind == "offline":
        transcripts = dataset_folder(app.settings, "transcripts")
        yield offline_responder(transcripts, characters, character).reply(message)
        return
    messages = as_messages(character_prompt(characters, character), history, message)
    yield from load_chat(source).stream(messages, int(max_new_tokens), temperature, top_p)


def build(app) -> None:
    """Lay out the tab inside the open ``gr.Tab``."""
    from runtime.data import load_characters

    names = [c.name for c in load_characters(dataset_folder(app.settings, "characters")).records]
    gr.Markdown(f"**Model source:** {model_source(app)}")
    with gr.Row():
        job = gr.Dropdown(list(BASES), value=next(iter(BASES)), label="Chatbot")
        character = gr.Dropdown(
            names, value="Eleven" if "Eleven" in names else names[0], label="Character"
        )
    with gr.Accordion("Generation settings", open=False):
        temperature = gr.Slider(0.0, 1.5, value=0.7, step=0.05, label="Temperature")
        top_p = gr.Slider(0.1, 1.0, value=0.9, step=0.05, label="Top-p")
        max_new_tokens = gr.Slider(8, 256, value=64, step=8, label="Max new tokens")

    def reply(message, history, *settings):
        yield from respond(app, message, history, *settings)

    gr.ChatInterface(reply, additional_inputs=[job, character, temperature, top_p, max_new_tokens])
