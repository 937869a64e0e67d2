"""The whole network build: captions and characters in, annotated graph and report out.

Used by the batch job, the tab's offline fallback and the benchmark alike.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from stnlp.common.errors import DataError
from stnlp.plugins.network.corpus import Episode, episodes_from_captions
from stnlp.plugins.network.graph import add_episode, annotate
from stnlp.plugins.network.mentions import MentionFinder, characters_per_text
from stnlp.plugins.network.ner import load_ner
from stnlp.plugins.network.params import NetworkParams
from stnlp.runtime import logs
from stnlp.runtime.data.names import CharacterNames

log = logging.getLogger(__name__)


@dataclass
class NetworkBuild:
    """The annotated graph, one summary per episode, the notices and the timing."""

    graph: nx.Graph
    episodes: list[dict[str, Any]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    seconds: float = 0.0
    mentions: int = 0

    def info(self, params: NetworkParams) -> dict[str, Any]:
        """Parameters, episodes and notices: the non-graph part of the JSON export."""
        return {
            "params": params.__dict__,
            "episodes": self.episodes,
            "notices": self.notices,
        }

    def metrics(self) -> dict[str, Any]:
        """Numbers for the run record and the model manifest."""
        sentences = sum(e["sentences"] for e in self.episodes)
        return {
            "characters": self.graph.number_of_nodes(),
            "edges": self.graph.number_of_edges(),
            "communities": len({c for _, c in self.graph.nodes(data="community")}),
            "episodes": len(self.episodes),
            "sentences": sentences,
            "mentions": self.mentions,
            "empty_episodes": sum(1 for e in self.episodes if e["characters"] == 0),
            "notices": list(self.notices),
            "seconds": round(self.seconds, 3),
            "sentences_per_second": round(sentences / self.seconds, 1) if self.seconds else None,
        }


def build_network(
    captions: Iterable,
    characters: Iterable,
    params: NetworkParams = NetworkParams(),
    source: str = "characters",
    progress: bool | None = None,
) -> NetworkBuild:
    """Character mentions in every episode's sentences (see :mod:`stnlp.plugins.network.mentions`),
    co-occurrence in the window, the annotated graph.

    ``captions`` are ``stnlp.runtime.data.Caption`` records, ``characters`` ``Character`` records
    (``source`` names their file in errors). An episode naming no character adds nothing to
    the graph and a notice to the result. ``progress`` shows a bar (default: on a terminal).
    """
    started = time.perf_counter()
    names = CharacterNames.from_records(characters)
    if not names.names:
        raise DataError(f"{source}: no characters to build the network from")
    episodes = episodes_from_captions(captions)
    finder = MentionFinder(names, load_ner(params.spacy_model))
    build = NetworkBuild(nx.Graph())
    total = sum(len(e.sentences) for e in episodes)
    show = sys.stderr.isatty() if progress is None else progress
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, disable=not show, transient=True) as bar:
        task = bar.add_task("NER over sentences", total=total)
        mentions = finder.find(
            [s for episode in episodes for s in episode.sentences],
            context=params.window,
            keep_unknown=params.keep_unknown,
            batch_size=params.batch_size,
            n_process=params.n_process,
            on_progress=lambda n: bar.advance(task, n),
        )
    found = characters_per_text(mentions)
    build.mentions = sum(len(m) for m in mentions)
    start = 0
    for episode in episodes:
        end = start + len(episode.sentences)
        _record_episode(build, episode, found[start:end], params.window)
        start = end
    annotate(build.graph, params.seed)
    build.seconds = time.perf_counter() - started
    logs.event(log, "network built", **{k: v for k, v in build.metrics().items() if k != "notices"})
    return build


def _record_episode(
    build: NetworkBuild, episode: Episode, names: list[frozenset[str]], window: int
) -> None:
    pairs = add_episode(build.graph, episode.season, names, window)
    found = set().union(*names) if names else set()
    build.episodes.append(
        {
            "episode": episode.tag,
            "season": episode.season,
            "sentences": len(names),
            "characters": len(found),
            "pairs": pairs,
        }
    )
    if not found:
        notice = (
            f"{episode.tag}: no character named in {len(names)} sentence(s); its graph is empty"
        )
        build.notices.append(notice)
        logs.event(log, "empty episode", logging.WARNING, episode=episode.tag, sentences=len(names))
