"""The network tab: offline HTML, filters, model sources, and building inside gr.Blocks."""

import re

import gradio as gr
import networkx as nx
import pytest

from stnlp.common.settings import Settings
from stnlp.plugins.network import plugin, tab
from stnlp.plugins.network.export import write_exports
from stnlp.plugins.network.graph import add_episode, annotate
from stnlp.plugins.network.render import iframe, network_page
from stnlp.plugins.spec import validate_job, validate_tab
from stnlp.runtime.registry import ModelRegistry
from stnlp.runtime.store import open_stores
from stnlp.runtime.ui import AppContext

EXTERNAL = re.compile(
    r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import""",
    re.IGNORECASE,
)


@pytest.fixture
def graph():
    g = nx.Graph()
    add_episode(g, 1, [{"Mike", "Dustin"}, {"Mike", "Dustin"}, {"Will"}], 1)
    add_episode(g, 2, [{"Mike", "Eleven"}, {"Dustin", "Lucas"}], 1)
    return annotate(g)


def test_page_is_self_contained(graph):
    page = network_page(graph)
    assert "new vis.Network" in page and "vis.DataSet" in page  # vis-network inlined
    assert '"Dustin"' in page and '"Eleven"' in page
    assert EXTERNAL.search(page) is None, EXTERNAL.search(page).group(0)
    assert "<script src" not in page and "<link" not in page
    embedded = iframe(page)
    assert embedded.startswith("<iframe") and 'srcdoc="' in embedded
    assert EXTERNAL.search(embedded) is None


def test_pattern_catches_cdn_links():  # the check above can fail
    assert EXTERNAL.search('<script src="https://cdn.jsdelivr.net/x.js">')
    assert EXTERNAL.search("<link href='//cdnjs.cloudflare.com/a.css'>")


def test_view_applies_season_weight_and_top_n_filters(graph):
    html, relations, centrality, note = tab.view(graph, ["1", "2"], 1, 10)
    assert relations.values.tolist() == [
        ["Dustin", "Mike", 2],
        ["Dustin", "Lucas", 1],
        ["Eleven", "Mike", 1],
    ]
    assert centrality["character"].tolist()[:2] == ["Dustin", "Mike"]
    assert note == "5 characters, 3 relations"
    _, relations, _, note = tab.view(graph, ["2"], 1, 10)
    assert relations.values.tolist() == [["Dustin", "Lucas", 1], ["Eleven", "Mike", 1]]
    _, relations, _, _ = tab.view(graph, ["1", "2"], 2, 10)
    assert relations.values.tolist() == [["Dustin", "Mike", 2]]
    _, _, centrality, _ = tab.view(graph, ["1", "2"], 1, 2)
    assert sorted(centrality["character"]) == ["Dustin", "Mike"]
    _, _, _, note = tab.view(graph, [], 1, 10)
    assert note == "No character matches these filters."


def test_plugin_contributes_a_valid_cpu_job_and_a_tab(tmp_path):
    settings = Settings(store=str(tmp_path), models={"network-characters": "my_spacy_model"})
    (job,) = plugin.stnlp_training_jobs(settings)
    validate_job("network", job)
    assert (job.gpu_count, job.instance_type, job.output_model) == (
        0,
        "c6i.2xlarge",
        "character-network",
    )
    assert job.input_datasets == ("subtitles", "characters")
    assert job.resolved_hyperparameters("tiny")["spacy_model"] == "my_spacy_model"
    (spec,) = plugin.stnlp_gradio_tabs(settings)
    validate_tab("network", spec)


def markdown_values(blocks):
    return [b.value for b in blocks.blocks.values() if isinstance(b, gr.Markdown)]


def build_in_blocks(settings):
    app = AppContext(settings=settings, registry=None)
    with gr.Blocks() as blocks, gr.Tab("Character network"):
        tab.build_tab(app)
    return app, blocks


def test_tab_builds_live_from_the_sample_data_without_a_published_model(tmp_path):
    settings = Settings(store=str(tmp_path / "store"))
    app, blocks = build_in_blocks(settings)
    assert "**Model source:** live build from the sample data" in markdown_values(blocks)[0]
    assert tab.model_source(app).startswith("live build from the sample data")
    html = [b.value for b in blocks.blocks.values() if isinstance(b, gr.HTML)][0]
    assert "Eleven" in html and EXTERNAL.search(html) is None
    # the sample's wiki-style characters file holds role, group and number records, and its
    # subtitles speaker labels, counting words and the town: none of them becomes a node
    graph = tab.load_source(settings).graph
    assert {"Eleven", "Mike Wheeler", "Jim Hopper", "Dustin Henderson"} <= set(graph)
    for record in ("Hawkins Head of Security", "Two", "Freak!", "Tech", "Principal",
                   "Hospital gowns", "Minor Characters/Season 2", "Billy's mother"):
        assert record not in graph  # fmt: skip
    seasons = [b for b in blocks.blocks.values() if isinstance(b, gr.CheckboxGroup)][0]
    assert seasons.value == ["1"]
    chart = [b for b in blocks.blocks.values() if isinstance(b, gr.BarPlot)][0].value
    strengths = [row[1] for row in chart["data"]]
    assert chart["columns"][:2] == ["character", "weighted_degree"]
    assert len(strengths) > 5 and strengths == sorted(strengths, reverse=True)


def test_tab_prefers_the_registry_version(tmp_path, graph):
    settings = Settings(store=str(tmp_path / "store"))
    write_exports(graph, {"params": {}}, tmp_path / "out")
    version = ModelRegistry(open_stores(settings).models).publish(
        "character-network", tmp_path / "out"
    )
    app, blocks = build_in_blocks(settings)
    assert markdown_values(blocks)[0] == f"**Model source:** registry: character-network {version}"
    assert tab.model_source(app) == f"registry: character-network {version}"
    table = [b for b in blocks.blocks.values() if isinstance(b, gr.Dataframe)][0]
    assert table.value["data"][0] == ["Dustin", "Mike", 2]
