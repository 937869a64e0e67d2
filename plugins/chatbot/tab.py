"""The chat tab: pick a chatbot and a character, chat with streamed replies.

The header names each chatbot's source chain (and why a trained version is not used); the line
under the pickers names the source answering as the picked character. Replies stream through
:func:`stnlp.plugins.chatbot.infer.reply_stream`, the same path as ``stnlp chat``.
"""

from __future__ import annotations

import gradio as gr

from stnlp.plugins.chatbot.catalog import SMOLLM2
from stnlp.plugins.chatbot.data import speaking_characters
from stnlp.plugins.chatbot.infer import Chain, dataset_folder, reply_stream, resolve_sources
from stnlp.plugins.chatbot.plugin import BASES, base_model
from stnlp.plugins.chatbot.session import source_note


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
        "are available offline), so they differ only by their own trained adapter."
    )


def _label(live: dict[str, Chain]) -> str:
    return "; ".join(f"{job}: {chain.describe()}" for job, chain in live.items())


def model_source(app) -> str:
    """Which source each chatbot uses, for the header."""
    live = sources(app)
    return " ".join(p for p in (_label(live), shared_base_note(live)) if p)


def build(app) -> None:
    """Lay out the tab inside the open ``gr.Tab``."""
    # resolved once per process: a message neither re-verifies the model nor re-reads the store
    live = sources(app)
    folders = {name: dataset_folder(app.settings, name) for name in ("transcripts", "characters")}
    names = speaking_characters(folders["transcripts"], folders["characters"])
    first = "Eleven" if "Eleven" in names else names[0]
    gr.Markdown(f"**Model source:** {_label(live)}")
    if note := shared_base_note(live):
        gr.Markdown(note)
    with gr.Row():
        job = gr.Dropdown(list(BASES), value=next(iter(BASES)), label="Chatbot")
        character = gr.Dropdown(names, value=first, label="Character")

    def answering(job_name: str, name: str) -> str:
        chain = live[job_name]
        return f"**Answering:** {source_note(chain, chain.for_character(name), name)}"

    answer = gr.Markdown(answering(next(iter(BASES)), first))
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

    gr.ChatInterface(
        reply, additional_inputs=[job, character, retrieval, temperature, top_p, max_new_tokens]
    )
