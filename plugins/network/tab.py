"""The "Character network" tab: the interactive graph, filters, strongest relations, centrality.

Model source: the latest published ``character-network`` from the registry; else the network
is built live from the sample data with spaCy (the offline fallback that always works). The
tab says which source is live.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

import gradio as gr
import networkx as nx
import pandas as pd

from stnlp.common.errors import DataError
from stnlp.plugins.network.export import read_network
from stnlp.plugins.network.graph import filtered, seasons_of, strongest_edges
from stnlp.plugins.network.params import DEFAULT_MODEL, NetworkParams
from stnlp.plugins.network.pipeline import build_network
from stnlp.plugins.network.plugin import COMPONENT, MODEL
from stnlp.plugins.network.render import iframe, network_page
from stnlp.runtime import logs
from stnlp.runtime.data import SAMPLE_DIR, load_characters, load_subtitles
from stnlp.runtime.registry import fetch_latest

log = logging.getLogger(__name__)

TOP_N_DEFAULT = 25
TABLE_ROWS = 20


@dataclass(frozen=True)
class NetworkSource:
    """The graph the tab shows and a sentence saying where it comes from."""

    graph: nx.Graph
    description: str


@lru_cache(maxsize=4)
def live_sample_network(spacy_model: str, sample_dir: Path) -> nx.Graph:
    """The network built now from ``sample_dir``'s subtitles and characters (cached)."""
    captions = load_subtitles(sample_dir / "subtitles").records
    characters = load_characters(sample_dir / "characters").records
    params = NetworkParams(spacy_model=spacy_model)
    return build_network(captions, characters, params, str(sample_dir / "characters")).graph


def load_source(settings, sample_dir: Path | None = None) -> NetworkSource:
    """The registry's latest ``character-network``, else the live build from the sample data
    (``sample_dir``, by default :data:`SAMPLE_DIR`)."""
    model = fetch_latest(settings, MODEL)
    if model is not None:
        try:
            graph, _ = read_network(model.path)
            return NetworkSource(graph, f"registry: {MODEL} {model.version}")
        except DataError as exc:
            logs.event(log, "registry network unreadable", logging.WARNING, reason=str(exc))
    spacy_model = settings.model_id(COMPONENT, DEFAULT_MODEL)
    graph = live_sample_network(spacy_model, sample_dir or SAMPLE_DIR)
    return NetworkSource(graph, _live_description(settings))


def _live_description(settings) -> str:
    spacy_model = settings.model_id(COMPONENT, DEFAULT_MODEL)
    return f"live build from the sample data (spaCy {spacy_model}); no published {MODEL}"


def model_source(app) -> str:
    """Which source the tab uses, without building anything."""
    model = fetch_latest(app.settings, MODEL)
    if model is not None:
        return f"registry: {MODEL} {model.version}"
    return _live_description(app.settings)


def view(graph: nx.Graph, seasons: list[str] | None, min_weight: float, top_n: float):
    """The filtered network as (iframe HTML, strongest-relations table, centrality frame, note)."""
    chosen = None if seasons is None else [int(s) for s in seasons]
    shown = filtered(graph, chosen, int(min_weight), int(top_n))
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
    note = (
        f"{shown.number_of_nodes()} characters, {shown.number_of_edges()} relations"
        if shown.number_of_nodes()
        else "No character matches these filters."
    )
    return iframe(network_page(shown)), relations, centrality, note


def build_tab(app) -> None:
    """Create the tab's components inside the open ``gr.Tab``."""
    source = load_source(app.settings)
    graph = source.graph
    seasons = [str(s) for s in seasons_of(graph)]
    max_weight = max((w for _, _, w in graph.edges(data="weight")), default=1)
    count = max(graph.number_of_nodes(), 2)
    gr.Markdown(f"**Model source:** {source.description}")
    with gr.Row():
        season_box = gr.CheckboxGroup(seasons, value=seasons, label="Seasons")
        min_weight = gr.Slider(
            1, max(max_weight, 2), value=1, step=1, label="Minimum co-occurrences per relation"
        )
        top_n = gr.Slider(
            2,
            count,
            value=min(TOP_N_DEFAULT, count),
            step=1,
            label="Top characters (by weighted degree)",
        )
    html, relations, centrality, note = view(graph, seasons, 1, min(TOP_N_DEFAULT, count))
    summary = gr.Markdown(note)
    network = gr.HTML(html)
    with gr.Row():
        table = gr.Dataframe(relations, label="Strongest relations", interactive=False)
        chart = gr.BarPlot(
            centrality,
            x="character",
            y="weighted_degree",
            title="Centrality (weighted degree)",
            sort="-y",
        )
    inputs = [season_box, min_weight, top_n]
    for control in inputs:
        control.change(partial(view, graph), inputs, [network, table, chart, summary])
