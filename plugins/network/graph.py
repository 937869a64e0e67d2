"""The character graph: an undirected weighted networkx graph with its measures.

Nodes are characters with ``mentions`` (sentences naming them) and ``seasons`` (the same per
season); edges carry ``weight`` (co-occurrences, see :mod:`stnlp.plugins.network.cooccurrence`) and
``seasons`` (weight per season). :func:`annotate` adds ``degree``, ``weighted_degree`` and a
seeded Louvain ``community`` to every node.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence

import networkx as nx

from stnlp.plugins.network.cooccurrence import cooccurrences


def add_episode(
    graph: nx.Graph, season: int, sentences: Sequence[Collection[str]], window: int
) -> int:
    """Fold one episode's per-sentence character sets into ``graph``; return its pair count."""
    mentions = Counter(name for names in sentences for name in set(names))
    for name, count in mentions.items():
        if name not in graph:
            graph.add_node(name, mentions=0, seasons={})
        node = graph.nodes[name]
        node["mentions"] += count
        node["seasons"][season] = node["seasons"].get(season, 0) + count
    pairs = cooccurrences(sentences, window)
    for (a, b), weight in pairs.items():
        if not graph.has_edge(a, b):
            graph.add_edge(a, b, weight=0, seasons={})
        edge = graph.edges[a, b]
        edge["weight"] += weight
        edge["seasons"][season] = edge["seasons"].get(season, 0) + weight
    return len(pairs)


def annotate(graph: nx.Graph, seed: int = 0) -> nx.Graph:
    """Add ``degree``, ``weighted_degree`` and ``community`` to every node, in place.

    Communities come from Louvain modularity on the weights with ``seed``; community 0 is
    the largest (ties broken by the alphabetically first member).
    """
    communities = (
        nx.community.louvain_communities(graph, weight="weight", seed=seed)
        if graph.number_of_edges()
        else [{n} for n in graph]
    )
    ordered = sorted(communities, key=lambda c: (-len(c), min(c)))
    for number, members in enumerate(ordered):
        for name in members:
            graph.nodes[name]["community"] = number
    for name in graph:
        graph.nodes[name]["degree"] = graph.degree(name)
        graph.nodes[name]["weighted_degree"] = graph.degree(name, weight="weight")
    return graph


def seasons_of(graph: nx.Graph) -> list[int]:
    """The seasons any character is mentioned in, sorted."""
    return sorted({s for _, seasons in graph.nodes(data="seasons") for s in seasons})


def filtered(
    graph: nx.Graph,
    seasons: Iterable[int] | None = None,
    min_weight: int = 1,
    top_n: int | None = None,
    seed: int = 0,
) -> nx.Graph:
    """A new annotated graph restricted to ``seasons``, edges of at least ``min_weight`` and
    the ``top_n`` characters by weighted degree (then mentions, then name).

    Weights and mentions are recomputed from the selected seasons only; ``None`` keeps all.
    """
    keep = set(seasons) if seasons is not None else set(seasons_of(graph))
    result = nx.Graph()
    for name, data in graph.nodes(data=True):
        mentions = sum(n for s, n in data["seasons"].items() if s in keep)
        if mentions:
            result.add_node(name, mentions=mentions, seasons=_only(data["seasons"], keep))
    for a, b, data in graph.edges(data=True):
        weight = sum(w for s, w in data["seasons"].items() if s in keep)
        if weight >= max(min_weight, 1):
            result.add_edge(a, b, weight=weight, seasons=_only(data["seasons"], keep))
    if top_n is not None:
        ranked = sorted(
            result,
            key=lambda n: (
                -result.degree(n, weight="weight"),
                -result.nodes[n]["mentions"],
                n,
            ),
        )
        result.remove_nodes_from(ranked[top_n:])
    return annotate(result, seed)


def _only(by_season: dict[int, int], keep: set[int]) -> dict[int, int]:
    return {s: n for s, n in by_season.items() if s in keep}


def strongest_edges(graph: nx.Graph, limit: int = 20) -> list[tuple[str, str, int]]:
    """The ``limit`` heaviest edges as ``(a, b, weight)``, heaviest first, then by names."""
    edges = sorted((*sorted((a, b)), w) for a, b, w in graph.edges(data="weight"))
    edges.sort(key=lambda e: -e[2])
    return edges[:limit]
