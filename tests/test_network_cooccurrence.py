"""Co-occurrence in a sliding window of sentences: exact cases and hypothesis properties.

These run on per-sentence character sets (no spaCy); the definition under test is the one in
``stnlp.plugins.network.cooccurrence``'s docstring.
"""

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stnlp.common.errors import UserError
from stnlp.plugins.network.cooccurrence import cooccurrences
from stnlp.plugins.network.graph import add_episode, annotate, filtered, strongest_edges

NAMES = ("Eleven", "Mike", "Dustin", "Lucas", "Will")
sentences_st = st.lists(st.frozensets(st.sampled_from(NAMES), max_size=3), max_size=30)
window_st = st.integers(min_value=1, max_value=8)


def brute_force(sentences, window, a, b):
    """Sentences j where one of a, b is named in j and the other within the window ending at j."""
    count = 0
    for j, here in enumerate(sentences):
        before = sentences[max(0, j - window + 1) : j + 1]
        if any((a in here and b in k) or (b in here and a in k) for k in before):
            count += 1
    return count


def test_hand_counted_episode():
    sentences = [{"Mike"}, {"Dustin"}, {"Lucas", "Mike"}, set(), {"Eleven"}, ["Mike", "Mike"]]
    assert cooccurrences(sentences, 2) == {
        ("Dustin", "Mike"): 2,
        ("Lucas", "Mike"): 1,
        ("Dustin", "Lucas"): 1,
        ("Eleven", "Mike"): 1,
    }
    assert cooccurrences(sentences, 1) == {("Lucas", "Mike"): 1}


@pytest.mark.parametrize("window", [0, -3, 2.5, True])
def test_window_must_be_a_positive_whole_number(window):
    with pytest.raises(UserError, match="window"):
        cooccurrences([{"Mike"}], window)


@settings(max_examples=200, deadline=None)
@given(sentences_st, window_st)
def test_weights_count_cooccurrences_inside_the_window(sentences, window):
    counts = cooccurrences(sentences, window)
    for i, a in enumerate(NAMES):
        for b in NAMES[i + 1 :]:
            key = tuple(sorted((a, b)))
            assert counts.get(key, 0) == brute_force(sentences, window, a, b)
    assert all(a < b for a, b in counts)  # sorted pairs, no self-loops


@settings(max_examples=200, deadline=None)
@given(sentences_st, window_st)
def test_graph_edges_are_the_counts_and_do_not_depend_on_name_order(sentences, window):
    graph = nx.Graph()
    add_episode(graph, 1, sentences, window)
    edges = {tuple(sorted((a, b))): w for a, b, w in graph.edges(data="weight")}
    assert edges == cooccurrences(sentences, window)
    reversed_names = [{n[::-1] for n in s} for s in sentences]
    mirrored = cooccurrences(reversed_names, window)
    for (a, b), weight in edges.items():
        assert mirrored[tuple(sorted((a[::-1], b[::-1])))] == weight


@settings(max_examples=200, deadline=None)
@given(sentences_st)
def test_window_of_one_links_only_characters_in_the_same_sentence(sentences):
    counts = cooccurrences(sentences, 1)
    for i, a in enumerate(NAMES):
        for b in NAMES[i + 1 :]:
            together = sum(1 for s in sentences if a in s and b in s)
            assert counts.get((min(a, b), max(a, b)), 0) == together


@settings(max_examples=100, deadline=None)
@given(sentences_st, window_st)
def test_a_wider_window_never_lowers_a_weight(sentences, window):
    narrow, wide = cooccurrences(sentences, window), cooccurrences(sentences, window + 1)
    assert all(wide[pair] >= weight for pair, weight in narrow.items())


def test_graph_measures_and_season_filters():
    graph = nx.Graph()
    add_episode(graph, 1, [{"Mike", "Dustin"}, {"Mike", "Dustin"}, {"Will"}], 1)
    add_episode(graph, 2, [{"Mike", "Eleven"}, {"Dustin"}], 1)
    annotate(graph, seed=0)
    assert graph.nodes["Mike"]["mentions"] == 3
    assert graph.nodes["Mike"]["seasons"] == {1: 2, 2: 1}
    assert graph.nodes["Mike"]["degree"] == 2
    assert graph.nodes["Mike"]["weighted_degree"] == 3
    assert graph.nodes["Will"]["degree"] == 0
    assert strongest_edges(graph) == [("Dustin", "Mike", 2), ("Eleven", "Mike", 1)]
    only_two = filtered(graph, [2])
    assert sorted(only_two) == ["Dustin", "Eleven", "Mike"]
    assert strongest_edges(only_two) == [("Eleven", "Mike", 1)]
    heavy = filtered(graph, None, min_weight=2)
    assert list(heavy.edges) in ([("Mike", "Dustin")], [("Dustin", "Mike")])
    top = filtered(graph, None, top_n=2)
    assert sorted(top) == ["Dustin", "Mike"]
    communities = {graph.nodes[n]["community"] for n in ("Mike", "Dustin", "Eleven")}
    assert graph.nodes["Will"]["community"] not in communities
