"""The interactive network page: pyvis network data in a self-contained HTML document.

pyvis's own template links Bootstrap (and in some modes vis-network) from CDNs, which an
offline user cannot reach. So pyvis builds the nodes, edges and options, and this module puts
them in a small page that inlines the vis-network script and style shipped inside the pyvis
package: the page makes no network request at all.
"""

from __future__ import annotations

import html
import json
from functools import cache
from pathlib import Path

import networkx as nx
import pyvis
from pyvis.network import Network

_VIS = Path(pyvis.__file__).parent / "lib" / "vis-9.1.2"
_PALETTE = (
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#42d4f4",
    "#f032e6",
    "#bfef45",
    "#469990",
    "#9a6324",
    "#800000",
    "#808000",
    "#000075",
    "#a9a9a9",
)

_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Character network</title>
<style>{css}</style>
<style>html,body{{margin:0;height:100%;font-family:sans-serif}}
#network{{width:100%;height:{height};border:0}}</style>
<script>{js}</script></head>
<body><div id="network"></div>
<script>
const nodes = new vis.DataSet({nodes});
const edges = new vis.DataSet({edges});
const options = {options};
new vis.Network(document.getElementById("network"), {{nodes, edges}}, options);
</script></body></html>
"""


@cache
def _vis_assets() -> tuple[str, str]:
    return (_VIS / "vis-network.min.js").read_text(encoding="utf-8"), (
        _VIS / "vis-network.css"
    ).read_text(encoding="utf-8")


def network_page(graph: nx.Graph, height: str = "600px") -> str:
    """A self-contained HTML page drawing ``graph`` (size: weighted degree, colour: community)."""
    net = Network(height=height, width="100%", cdn_resources="in_line")
    net.barnes_hut(gravity=-8000, spring_length=160)
    for name, data in graph.nodes(data=True):
        community = data.get("community", 0)
        strength = data.get("weighted_degree", 0)
        net.add_node(
            name,
            label=name,
            value=max(strength, 1),
            color=_PALETTE[community % len(_PALETTE)],
            title=f"{name}\nmentions: {data.get('mentions', 0)}\nco-occurrences: {strength}\n"
            f"community: {community}",
        )
    for a, b, weight in graph.edges(data="weight"):
        net.add_edge(a, b, value=weight, title=f"{a} - {b}: {weight}")
    nodes, edges, _, _, _, options = net.get_network_data()
    js, css = _vis_assets()
    return _PAGE.format(
        css=css,
        js=js,
        nodes=_script_json(nodes),
        edges=_script_json(edges),
        options=options,
        height=height,
    )


def _script_json(value) -> str:
    """JSON safe inside a <script> element (no closing tag can appear)."""
    return json.dumps(value).replace("</", "<\\/")


def iframe(page: str, height: str = "620px") -> str:
    """``page`` embedded in an iframe through ``srcdoc``, for a ``gr.HTML`` component."""
    return (
        f'<iframe title="Character network" srcdoc="{html.escape(page, quote=True)}" '
        f'style="width:100%;height:{height};border:0" sandbox="allow-scripts"></iframe>'
    )
