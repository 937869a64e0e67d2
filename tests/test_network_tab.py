"""The network tab: a self-contained picture, filters, focus, model sources, and building inside
gr.Blocks."""

import re

import gradio as gr
import networkx as nx
import pytest

from stnlp.common.settings import Settings
from stnlp.plugins.network import plugin, tab
from stnlp.plugins.network.export import write_exports
from stnlp.plugins.network.graph import add_episode, annotate
from stnlp.plugins.network.picture import layout, network_svg, svg_file
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


def test_picture_is_self_contained_seeded_and_tells_each_characters_numbers(graph):
    svg = network_svg(graph)
    assert EXTERNAL.search(svg) is None, EXTERNAL.search(svg).group(0)
    assert "<script" not in svg and "<image" not in svg
    assert network_svg(graph) == svg and layout(graph) == layout(graph.copy())  # stable
    for name, data in graph.nodes(data=True):
        assert (f"<title>{name}\nmentions: {data['mentions']}\ndegree: {data['degree']}\n"
                f"co-occurrences: {data['weighted_degree']}\ncommunity: {data['community']}"
                "</title>") in svg  # fmt: skip
    assert svg.count('class="node"') == graph.number_of_nodes()
    assert 'class="node focus"' in network_svg(graph, focus="Mike")
    path = svg_file(svg)
    assert path.name == "character-network.svg" and path.read_text() == svg


def test_pattern_catches_cdn_links():  # the check above can fail
    assert EXTERNAL.search('<script src="https://cdn.jsdelivr.net/x.js">')
    assert EXTERNAL.search("<link href='//cdnjs.cloudflare.com/a.css'>")


def test_view_applies_season_weight_and_top_n_filters(graph):
    shown = tab.view(graph, ["1", "2"], 1, 10)
    relations, centrality, note = shown.relations, shown.centrality, shown.note
    assert relations.values.tolist() == [
        ["Dustin", "Mike", 2],
        ["Dustin", "Lucas", 1],
        ["Eleven", "Mike", 1],
    ]
    assert centrality["character"].tolist()[:2] == ["Dustin", "Mike"]
    assert note == "5 characters, 3 relations (from seasons 1, 2)"
    relations = tab.view(graph, ["2"], 1, 10).relations
    assert relations.values.tolist() == [["Dustin", "Lucas", 1], ["Eleven", "Mike", 1]]
    relations = tab.view(graph, ["1", "2"], 2, 10).relations
    assert relations.values.tolist() == [["Dustin", "Mike", 2]]
    centrality = tab.view(graph, ["1", "2"], 1, 2).centrality
    assert sorted(centrality["character"]) == ["Dustin", "Mike"]
    assert tab.view(graph, [], 1, 10).note == "No character matches these filters."


def test_focus_shows_one_characters_neighbourhood(graph):
    focused = tab.view(graph, ["1", "2"], 1, 10, "Mike")
    assert sorted(focused.centrality["character"]) == ["Dustin", "Eleven", "Mike"]
    assert focused.note == "3 characters, 2 relations around Mike (from seasons 1, 2)"
    assert 'class="node focus" data-name="Mike"' in focused.picture
    # the neighbour's own numbers, not the neighbourhood's: Dustin also knows Lucas
    assert focused.centrality.set_index("character").loc["Dustin", "degree"] == 2
    gone = tab.view(graph, ["2"], 1, 10, "Will")
    assert gone.note.startswith("Will is not among the characters these filters keep")
    assert tab.view(graph, ["1", "2"], 1, 10, tab.EVERYONE).note.startswith("5 characters")


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


def build_in_blocks(settings):
    app = AppContext(settings=settings, registry=None)
    with gr.Blocks() as blocks, gr.Tab("Character network"):
        tab.build_tab(app)
    return app, blocks


def test_tab_builds_live_from_the_sample_data_without_a_published_model(tmp_path):
    settings = Settings(store=str(tmp_path / "store"))
    app, blocks = build_in_blocks(settings)
    assert tab.model_source(app).startswith("computed live from the sample subtitles")
    html = [b.value for b in blocks.blocks.values() if isinstance(b, gr.HTML)][0]
    assert "Eleven" in html and EXTERNAL.search(html) is None
    # the sample's wiki-style characters file holds role, group and number records, and its
    # subtitles speaker labels, counting words and the town: none of them becomes a node
    graph = tab.load_source(settings)
    assert {"Eleven", "Mike Wheeler", "Jim Hopper", "Dustin Henderson"} <= set(graph)
    for record in ("Hawkins Head of Security", "Two", "Freak!", "Tech", "Principal",
                   "Hospital gowns", "Minor Characters/Season 2", "Billy's mother"):
        assert record not in graph  # fmt: skip
    seasons = [b for b in blocks.blocks.values() if isinstance(b, gr.CheckboxGroup)][0]
    assert seasons.value == ["1"]
    plot = [b for b in blocks.blocks.values() if isinstance(b, gr.BarPlot)][0]
    chart = plot.value
    strengths = [row[1] for row in chart["data"]]
    assert chart["columns"][:2] == ["character", "weighted_degree"]
    assert len(strengths) > 5 and strengths == sorted(strengths, reverse=True)
    assert plot.y_lim[0] == 0  # honest bars: the axis starts at 0


def test_tab_prefers_the_registry_version(tmp_path, graph):
    settings = Settings(store=str(tmp_path / "store"))
    write_exports(graph, {"params": {}}, tmp_path / "out")
    version = ModelRegistry(open_stores(settings).models).publish(
        "character-network", tmp_path / "out"
    )
    app, blocks = build_in_blocks(settings)
    assert tab.model_source(app) == f"trained network; registry: character-network {version}"
    table = [b for b in blocks.blocks.values() if isinstance(b, gr.Dataframe)][0]
    assert table.value["data"][0] == ["Dustin", "Mike", 2]
