"""The interface shell: one Gradio Blocks app with one tab per contributed tab."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from runtime.settings import Settings


@dataclass
class AppContext:
    """What a tab's ``build`` and ``model_source`` receive."""

    settings: Settings
    registry: Any  # plugins.manager.Registry


def model_sources(app: AppContext) -> list[tuple[str, str]]:
    """``(tab title, model source)`` for every tab, for the header."""
    return [(tab.title, tab.model_source(app)) for _, tab in app.registry.tabs]


def header_markdown(app: AppContext) -> str:
    """The header: the title and which model source each tab uses."""
    lines = ["# Stranger Things NLP", ""]
    sources = model_sources(app)
    if not sources:
        lines.append("_No plugin contributes a tab yet._")
    lines += [f"- **{title}**: {source}" for title, source in sources]
    return "\n".join(lines)


def build_app(app: AppContext) -> gr.Blocks:
    """Assemble the Blocks app: a header, then one tab per contributed tab."""
    with gr.Blocks(title="Stranger Things NLP") as blocks:
        gr.Markdown(header_markdown(app))
        for _, tab in app.registry.tabs:
            with gr.Tab(tab.title, id=tab.name):
                tab.build(app)
    return blocks
