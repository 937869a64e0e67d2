"""The "Character network" tab: the picture, filters, focus, strongest relations, centrality.

Model source: the latest published ``character-network`` from the registry; else the network
is built live from the sample data with spaCy (the offline fallback that always works). The
shell shows which as the tab's badge (:func:`model_source`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import gradio as gr
import networkx as nx
import pandas as pd

from stnlp.common.errors import DataError
from stnlp.plugins.network.export import read_network
from stnlp.plugins.network.graph import filtered, seasons_of, strongest_edges
from stnlp.plugins.network.params import DEFAULT_MODEL, NetworkParams
from stnlp.plugins.network.picture import network_html, network_svg, svg_file
from stnlp.plugins.network.pipeline import build_network
from stnlp.plugins.network.plugin import COMPONENT, MODEL
from stnlp.runtime import logs
from stnlp.runtime.data import SAMPLE_DIR, load_characters, load_subtitles
from stnlp.runtime.registry import fetch_latest

log = logging.getLogger(__name__)

TOP_N_DEFAULT = 25
TABLE_ROWS = 20


@lru_cache(maxsize=4)
def live_sample_network(spacy_model: str, sample_dir: Path) -> nx.Graph:
    """The network built now from ``sample_dir``'s subtitles and characters (cached)."""
    captions = load_subtitles(sample_dir / "subtitles").records
    characters = load_characters(sample_dir / "characters").records
    params = NetworkParams(spacy_model=spacy_model)
    return build_network(captions, characters, params, str(sample_dir / "characters")).graph


def load_source(settings, sample_dir: Path | None = None) -> nx.Graph:
    """The registry's latest ``character-network``, else the live build from the sample data
    (``sample_dir``, by default :data:`SAMPLE_DIR`)."""
    model = fetch_latest(settings, MODEL)
    if model is not None:
        try:
            return read_network(model.path)[0]
        except DataError as exc:
            logs.event(log, "registry network unreadable", logging.WARNING, reason=str(exc))
    spacy_model = settings.model_id(COMPONENT, DEFAULT_MODEL)
    return live_sample_network(spacy_model, sample_dir or SAMPLE_DIR)


def _live_description(settings) -> str:
    spacy_model = settings.model_id(COMPONENT, DEFAULT_MODEL)
    return (
        f"computed live from the sample subtitles; spaCy {spacy_model} named-entity recognition, "
        f"no published {MODEL}"
    )


def model_source(app) -> str:
    """Which source the tab uses, without building anything."""
    model = fetch_latest(app.settings, MODEL)
    if model is not None:
        return f"trained network; registry: {MODEL} {model.version}"
    return _live_description(app.settings)


EVERYONE = "(everyone)"
"""The focus choice that shows the whole filtered network."""


@dataclass(frozen=True)
class View:
    """What the tab shows for one choice of filters and focus."""

    picture: str  # the SVG
    relations: pd.DataFrame
    centrality: pd.DataFrame
    note: str


def _summary(shown: nx.Graph, seasons: list[int], focus: str | None) -> str:
    if not shown.number_of_nodes():
        return "No character matches these filters."
    text = f"{shown.number_of_nodes()} characters, {shown.number_of_edges()} relations"
    where = ", ".join(str(s) for s in seasons)
    label = "season" if len(seasons) == 1 else "seasons"
    return text + (f" around {focus}" if focus else "") + f" (from {label} {where})"


def view(
    graph: nx.Graph, seasons: list[str] | None, min_weight: float, top_n: float,
    focus: str | None = None,
) -> View:  # fmt: skip
    """The filtered network (or ``focus``'s neighbourhood in it): the picture, the strongest
    relations, the centrality table and a one-line summary."""
    chosen = seasons_of(graph) if seasons is None else [int(s) for s in seasons]
    shown = filtered(graph, chosen, int(min_weight), int(top_n))
    focus = focus if focus and focus != EVERYONE else None
    missing = ""
    if focus and focus not in shown:
        missing = f"{focus} is not among the characters these filters keep; showing everyone. "
        focus = None
    if focus:
        shown = shown.subgraph(nx.ego_graph(shown, focus)).copy()
    relations = pd.DataFrame(
        strongest_edges(shown, TABLE_ROWS), columns=["character", "with", "co-occurrences"]
    )
    centrality = pd.DataFrame(
        sorted(
            ((n, d["weighted_degree"], d["degree"]) for n, d in shown.nodes(data=True)),
            key=lambda row: (-row[1], row[0]),
        ),
        columns=["character", "weighted_degree", "degree"],
    )
    note = missing + (_summary(shown, chosen, focus) if chosen else _summary(shown, [], None))
    return View(network_svg(shown, focus), relations, centrality, note)


def _chart_limits(centrality: pd.DataFrame) -> list[float]:
    """The centrality axis: from 0 (an honest bar) to a little above the largest value."""
    top = float(centrality["weighted_degree"].max()) if len(centrality) else 1.0
    return [0, max(top, 1.0) * 1.05]


def build_tab(app) -> None:
    """Create the tab's components inside the open ``gr.Tab``."""
    graph = load_source(app.settings)
    seasons = [str(s) for s in seasons_of(graph)]
    max_weight = max((w for _, _, w in graph.edges(data="weight")), default=1)
    count = max(graph.number_of_nodes(), 2)
    names = sorted(graph, key=lambda n: (-graph.nodes[n].get("weighted_degree", 0), n))
    gr.Markdown(
        "Who appears with whom: two characters are linked when both are named in the same "
        "stretch of subtitles. Filter by season and strength, or focus on one character; hover "
        "a character for its mentions, degree and community.",
        elem_classes="stnlp-hint",
    )
    with gr.Row():
        season_box = gr.CheckboxGroup(seasons, value=seasons, label="Seasons")
        min_weight = gr.Slider(
            1, max(max_weight, 2), value=1, step=1, label="Minimum co-occurrences per relation"
        )
        top_n = gr.Slider(
            2, count, value=min(TOP_N_DEFAULT, count), step=1,
            label="Top characters (by weighted degree)",
        )  # fmt: skip
        focus = gr.Dropdown([EVERYONE, *names], value=EVERYONE, label="Focus on a character")
    first = view(graph, seasons, 1, min(TOP_N_DEFAULT, count))
    summary = gr.Markdown(first.note, elem_classes="stnlp-done")
    network = gr.HTML(network_html(first.picture), elem_id="stnlp-network")
    download = gr.DownloadButton(
        "Download the picture (SVG)", value=svg_file(first.picture), size="sm"
    )
    with gr.Row():
        table = gr.Dataframe(
            first.relations, label="Strongest relations", interactive=False, wrap=True
        )
        chart = gr.BarPlot(
            first.centrality, x="character", y="weighted_degree", sort="-y",
            title="Centrality (weighted degree)", y_title="co-occurrences",
            y_lim=_chart_limits(first.centrality), x_label_angle=-45, elem_id="stnlp-centrality",
        )  # fmt: skip
    inputs = [season_box, min_weight, top_n, focus]
    examples = [[seasons, 1, min(TOP_N_DEFAULT, count), name] for name in names[:2]]
    examples.append([seasons, min(2, max_weight), min(10, count), EVERYONE])
    gr.Examples(examples, inputs, label="Examples: focus on a character, or only strong ties",
                cache_examples=False)  # fmt: skip

    def update(chosen, weight, top, who):
        shown = view(graph, chosen, weight, top, who)
        plot = gr.BarPlot(shown.centrality, y_lim=_chart_limits(shown.centrality))
        return network_html(shown.picture), shown.relations, plot, shown.note, svg_file(
            shown.picture
        )

    for control in inputs:
        control.change(update, inputs, [network, table, chart, summary, download])
