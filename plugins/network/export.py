"""Writing the network as JSON, GraphML and a CSV edge list, and reading the JSON back.

``network.json`` is the complete record (nodes and edges with per-season counts, the episodes
and their notices, the parameters) and is what the tab loads from the registry.
``network.graphml`` holds the same graph with scalar attributes (per-season counts become
``weight_s1``, ``mentions_s1``, ...) for Gephi or ``networkx.read_graphml``.
``edges.csv`` has ``source,target,weight,community_source,community_target``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import networkx as nx

from stnlp.common.errors import DataError

FORMAT = "stnlp-character-network/1"
JSON_NAME, GRAPHML_NAME, CSV_NAME = "network.json", "network.graphml", "edges.csv"


def to_json(graph: nx.Graph, info: dict[str, Any]) -> dict[str, Any]:
    """The graph and ``info`` (parameters, episodes, notices) as one JSON-ready dict."""
    nodes = [
        {**data, "id": name, "seasons": _keys_to_str(data["seasons"])}
        for name, data in sorted(graph.nodes(data=True))
    ]
    edges = [
        {"source": a, "target": b, "weight": d["weight"], "seasons": _keys_to_str(d["seasons"])}
        for a, b, d in _sorted_edges(graph)
    ]
    return {"format": FORMAT, **info, "nodes": nodes, "edges": edges}


def from_json(data: dict[str, Any], source: str = "network.json") -> nx.Graph:
    """Rebuild the annotated graph from :func:`to_json`'s output; DataError if malformed."""
    if data.get("format") != FORMAT:
        raise DataError(f"{source}: format is {data.get('format')!r}, expected {FORMAT!r}")
    graph = nx.Graph()
    try:
        for node in data["nodes"]:
            attrs = {k: v for k, v in node.items() if k not in ("id", "seasons")}
            graph.add_node(node["id"], **attrs, seasons=_keys_to_int(node["seasons"]))
        for edge in data["edges"]:
            graph.add_edge(
                edge["source"],
                edge["target"],
                weight=int(edge["weight"]),
                seasons=_keys_to_int(edge["seasons"]),
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{source}: malformed node or edge ({exc!r})") from exc
    return graph


def read_network(folder: Path) -> tuple[nx.Graph, dict[str, Any]]:
    """The graph and the full JSON record stored in ``folder/network.json``."""
    path = folder / JSON_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read the network ({exc})") from exc
    return from_json(data, str(path)), data


def write_exports(graph: nx.Graph, info: dict[str, Any], folder: Path) -> dict[str, Path]:
    """Write the JSON, GraphML and CSV exports into ``folder``; return their paths by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / JSON_NAME, "graphml": folder / GRAPHML_NAME, "csv": folder / CSV_NAME}
    paths["json"].write_text(json.dumps(to_json(graph, info), indent=1), encoding="utf-8")
    nx.write_graphml(_scalar_copy(graph), paths["graphml"])
    with paths["csv"].open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "target", "weight", "community_source", "community_target"])
        for a, b, data in _sorted_edges(graph):
            communities = graph.nodes[a]["community"], graph.nodes[b]["community"]
            writer.writerow([a, b, data["weight"], *communities])
    return paths


def _sorted_edges(graph: nx.Graph) -> list[tuple[str, str, dict[str, Any]]]:
    """Edges with their endpoints in name order, sorted by endpoints."""
    return sorted(((*sorted((a, b)), d) for a, b, d in graph.edges(data=True)), key=lambda e: e[:2])


def _scalar_copy(graph: nx.Graph) -> nx.Graph:
    """The graph with per-season dicts flattened into ``<key>_s<season>`` attributes."""
    copy = nx.Graph()
    for name, data in graph.nodes(data=True):
        copy.add_node(name, **_flatten(data, "mentions"))
    for a, b, data in graph.edges(data=True):
        copy.add_edge(a, b, **_flatten(data, "weight"))
    return copy


def _flatten(data: dict[str, Any], key: str) -> dict[str, Any]:
    flat = {k: v for k, v in data.items() if k != "seasons"}
    flat.update({f"{key}_s{season}": n for season, n in sorted(data["seasons"].items())})
    return flat


def _keys_to_str(by_season: dict[int, int]) -> dict[str, int]:
    return {str(s): n for s, n in sorted(by_season.items())}


def _keys_to_int(by_season: dict[str, int]) -> dict[int, int]:
    return {int(s): int(n) for s, n in by_season.items()}
