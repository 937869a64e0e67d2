"""The character network as an SVG picture: a seeded layout, legible labels, hover details.

The same SVG is shown in the page and offered as a download. Its colours are CSS variables
(``--stnlp-net-text``, ``--stnlp-net-halo``, ``--stnlp-net-edge``, ``--stnlp-net-bg``) that the
page sets for its light or dark mode; a downloaded file, outside the page, falls back to the
light colours written here. Each label has a halo in the background colour, so it stays
readable where it crosses an edge. Hovering a character shows its mentions, degree,
co-occurrences and community (an SVG ``<title>``). Nothing is fetched: the picture is one
self-contained element.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from functools import cache
from html import escape
from pathlib import Path

import networkx as nx

SEED = 7
"""The layout's seed: the same graph is always drawn the same way."""
WIDTH, HEIGHT, MARGIN = 960, 640, 70
PALETTE = (
    "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324",
    "#469990", "#800000", "#808000", "#000075", "#a9a9a9", "#bfef45",
)  # fmt: skip
"""Community colours (Sasha Trubetskoy's distinct colours), reused in order."""
_STYLE = """<style>
.stnlp-net text { fill: var(--stnlp-net-text, #111827); stroke: var(--stnlp-net-halo, #ffffff);
  stroke-width: 4px; paint-order: stroke; stroke-linejoin: round; font: 600 15px
  ui-sans-serif, system-ui, sans-serif; }
.stnlp-net .edge { stroke: var(--stnlp-net-edge, #94a3b8); stroke-linecap: round; }
.stnlp-net .node circle { stroke: var(--stnlp-net-halo, #ffffff); stroke-width: 1.5px; }
.stnlp-net .node.focus circle { stroke: var(--stnlp-net-text, #111827); stroke-width: 3px; }
.stnlp-net .background { fill: var(--stnlp-net-bg, #ffffff); }
</style>"""


def layout(graph: nx.Graph) -> dict[str, tuple[float, float]]:
    """Node positions in the picture's pixels: a seeded spring layout, spread evenly.

    Each axis is half the spring position and half its rank, so a few distant characters do
    not squeeze everyone else into the middle.
    """
    if graph.number_of_nodes() == 0:
        return {}
    if graph.number_of_nodes() == 1:
        return {next(iter(graph)): (WIDTH / 2, HEIGHT / 2)}
    spread = 2.2 / math.sqrt(graph.number_of_nodes())
    raw = nx.spring_layout(graph, k=spread, weight=None, iterations=300, seed=SEED)
    axes = [_even([raw[n][axis] for n in raw]) for axis in (0, 1)]
    return {
        node: (MARGIN + x * (WIDTH - 2 * MARGIN), MARGIN + y * (HEIGHT - 2 * MARGIN))
        for node, x, y in zip(raw, *axes, strict=True)
    }


def _even(values: list[float]) -> list[float]:
    """``values`` in [0, 1]: the mean of their min-max scaling and their rank."""
    low, high = min(values), max(values)
    order = sorted(range(len(values)), key=lambda i: values[i])
    rank = {index: place / (len(values) - 1) for place, index in enumerate(order)}
    return [((v - low) / ((high - low) or 1) + rank[i]) / 2 for i, v in enumerate(values)]


LABEL_HEIGHT, CHAR_WIDTH = 18, 9.6


def _inside(left: float, top: float, width: float) -> bool:
    """Whether a label box at ``left, top`` lies inside the picture."""
    return left >= 2 and left + width <= WIDTH - 2 and top >= 0 and top + LABEL_HEIGHT <= HEIGHT


def _free(placed, left: float, top: float, width: float) -> bool:
    """Whether a label box at ``left, top`` lies inside the picture and covers none of the
    ``placed`` boxes."""
    return _inside(left, top, width) and all(
        left + width < a or left > c or top + LABEL_HEIGHT < b or top > d for a, b, c, d in placed
    )


def label_places(positions, radii, names) -> dict[str, tuple[float, float, str]]:
    """Where each label goes (x, baseline y, text anchor): beside its node (the side away from
    the nearer edge, the other side, above, below), the first place inside the picture that
    does not cover a label already placed. The biggest nodes choose first."""
    placed: list[tuple[float, float, float, float]] = []
    places = {}
    for name in sorted(names, key=lambda n: -radii[n]):
        (x, y), r, width = positions[name], radii[name], len(name) * CHAR_WIDTH
        candidates = [
            (x + r + 4, y + 5, "start", x + r + 4, y - LABEL_HEIGHT / 2),
            (x - r - 4, y + 5, "end", x - r - 4 - width, y - LABEL_HEIGHT / 2),
            (x, y - r - 6, "middle", x - width / 2, y - r - 6 - LABEL_HEIGHT + 4),
            (x, y + r + 16, "middle", x - width / 2, y + r + 16 - LABEL_HEIGHT + 4),
        ]

        chosen = next(
            (c for c in candidates if _free(placed, c[3], c[4], width)), candidates[0]
        )
        left, top = chosen[3:]
        placed.append((left, top, left + width, top + LABEL_HEIGHT))
        places[name] = chosen[:3]
    return places


def hover_text(name: str, data: dict) -> str:
    """What hovering a character shows."""
    return (
        f"{name}\nmentions: {data.get('mentions', 0)}\ndegree: {data.get('degree', 0)}\n"
        f"co-occurrences: {data.get('weighted_degree', 0)}\ncommunity: {data.get('community', 0)}"
    )


def _radius(strength: float, strongest: float) -> float:
    return 6 + 16 * math.sqrt(strength / strongest) if strongest else 8


def network_svg(graph: nx.Graph, focus: str | None = None) -> str:
    """The picture of ``graph`` (size: weighted degree, colour: community); ``focus`` is drawn
    outlined. Labels sit beside their node where they cover no other label
    (:func:`label_places`)."""
    positions = layout(graph)
    strongest = max((d.get("weighted_degree", 0) for _, d in graph.nodes(data=True)), default=0)
    heaviest = max((w for _, _, w in graph.edges(data="weight", default=1)), default=1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="stnlp-net" role="img" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}">',
        "<title>Character network</title>",
        _STYLE,
        f'<rect class="background" width="{WIDTH}" height="{HEIGHT}"/>',
        '<g class="edges">',
    ]
    for a, b, weight in sorted(graph.edges(data="weight", default=1), key=lambda e: e[2]):
        (x1, y1), (x2, y2) = positions[a], positions[b]
        share = weight / heaviest
        parts.append(
            f'<line class="edge" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
            f'stroke-width="{1 + 5 * share:.1f}" stroke-opacity="{0.25 + 0.55 * share:.2f}">'
            f"<title>{escape(a)} - {escape(b)}: {weight} co-occurrences</title></line>"
        )
    parts.append('</g><g class="nodes">')
    radii = {n: _radius(d.get("weighted_degree", 0), strongest) for n, d in graph.nodes(data=True)}
    labels = label_places(positions, radii, list(graph))
    for name, data in sorted(graph.nodes(data=True), key=lambda n: n[1].get("weighted_degree", 0)):
        x, y = positions[name]
        label_x, label_y, anchor = labels[name]
        colour = PALETTE[data.get("community", 0) % len(PALETTE)]
        focus_class = " focus" if name == focus else ""
        parts.append(
            f'<g class="node{focus_class}" data-name="{escape(name)}">'
            f"<title>{escape(hover_text(name, data))}</title>"
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radii[name]:.1f}" fill="{colour}"/>'
            f'<text x="{label_x:.1f}" y="{label_y:.1f}" text-anchor="{anchor}">'
            f"{escape(name)}</text>"
            "</g>"
        )
    parts.append("</g></svg>")
    return "".join(parts)


def network_html(svg: str) -> str:
    """The picture inside the page's frame (which sets the colour variables)."""
    return f'<div class="stnlp-network">{svg}</div>'


@cache
def _download_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="stnlp-network-"))


def svg_file(svg: str, name: str = "character-network.svg") -> Path:
    """``svg`` written to a file for download (one file per distinct picture)."""
    folder = _download_dir() / hashlib.sha256(svg.encode()).hexdigest()[:16]
    folder.mkdir(exist_ok=True)
    path = folder / name
    if not path.exists():
        path.write_text(svg, encoding="utf-8")
    return path
