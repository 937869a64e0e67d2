"""The whole network build: captions and characters in, annotated graph and report out.

Used by the batch job, the tab's offline fallback and the benchmark alike.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from stnlp.common.errors import DataError
from stnlp.plugins.network.corpus import Episode, episodes_from_captions
from stnlp.plugins.network.graph import add_episode, annotate
from stnlp.plugins.network.mentions import (
    Candidate,
    MentionFinder,
    characters_per_text,
    resolve,
)
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
    episodes = episodes_from_captions(captions)
    found = find_candidates(episodes, characters, params, source, progress=progress)
    return assemble(episodes, found, params, time.perf_counter() - started)


def find_candidates(
    episodes: Sequence[Episode],
    characters: Iterable,
    params: NetworkParams,
    source: str = "characters",
    only: Collection[str] | None = None,
    progress: bool | None = None,
) -> dict[str, list[list[Candidate]]]:
    """The expensive pass (NER and tagger) over the episodes tagged in ``only`` (default:
    all): episode tag -> each sentence's candidates. Every episode's sentences count for the
    corpus figures, so a shard finds what the whole corpus run would."""
    names = CharacterNames.from_records(characters)
    if not names.names:
        raise DataError(f"{source}: no characters to build the network from")
    chosen = [e for e in episodes if only is None or e.tag in only]
    finder = MentionFinder(names, load_ner(params.spacy_model))
    texts = [s for episode in chosen for s in episode.sentences]
    show = sys.stderr.isatty() if progress is None else progress
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, disable=not show, transient=True) as bar:
        task = bar.add_task("NER over sentences", total=len(texts))
        found = finder.candidates(
            texts,
            (s for episode in episodes for s in episode.sentences),
            keep_unknown=params.keep_unknown,
            batch_size=params.batch_size,
            n_process=params.n_process,
            on_progress=lambda n: bar.advance(task, n),
        )
    by_episode, start = {}, 0
    for episode in chosen:
        by_episode[episode.tag] = found[start : start + len(episode.sentences)]
        start += len(episode.sentences)
    return by_episode


def assemble(
    episodes: Sequence[Episode],
    candidates: Mapping[str, Sequence[Sequence[Candidate]]],
    params: NetworkParams,
    seconds: float = 0.0,
) -> NetworkBuild:
    """The annotated graph from every episode's candidates: owners resolved over the whole
    corpus, co-occurrence counts folded in episode order, then the graph-level measures
    (degrees, communities) computed once on the whole graph."""
    texts = [s for episode in episodes for s in episode.sentences]
    found = [c for episode in episodes for c in candidates[episode.tag]]
    mentions = resolve(texts, found, params.window)
    per_text = characters_per_text(mentions)
    build = NetworkBuild(nx.Graph())
    build.mentions = sum(len(m) for m in mentions)
    start = 0
    for episode in episodes:
        end = start + len(episode.sentences)
        _record_episode(build, episode, per_text[start:end], params.window)
        start = end
    annotate(build.graph, params.seed)
    build.seconds = seconds
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
