"""Theme scores of a corpus per episode and per window of sentences, and their on-disk cache.

An episode's (or a window's) score for a theme is the mean of its sentences' scores, where a
sentence relating to no theme scores 0 everywhere: the score is the share of the episode's
sentences that are about the theme. ``relevant`` counts the sentences that vote. What is
*distinctive* about an episode is its score minus the series' (:attr:`ThemeResult.distinctive`).
Results are cached by a key made of the corpus hash, the theme list with descriptions, the
method and the window size, so the same question is answered once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import pandas as pd
from rich.progress import Progress

from stnlp.common.errors import UserError
from stnlp.plugins.classifier.themes import Episode, theme_descriptions


@dataclass
class ThemeResult:
    """Scores per episode (rows ``S01E01``...) and per window, plus the overall mean."""

    themes: list[str]
    method: str
    per_episode: pd.DataFrame  # index: episode; "sentences", "relevant", then one per theme
    per_window: pd.DataFrame  # episode, window, first, last, relevant, then one per theme

    @property
    def overall(self) -> pd.Series:
        """Each theme's mean score over every sentence of the corpus."""
        weights = self.per_episode["sentences"]
        return (self.per_episode[self.themes].mul(weights, axis=0)).sum() / weights.sum()

    @property
    def distinctive(self) -> pd.DataFrame:
        """Each episode's scores minus the series' (:attr:`overall`): positive where the
        episode is more about a theme than the series is."""
        return self.per_episode[self.themes] - self.overall

    def to_json(self) -> str:
        """Serialise (for the cache and the theme job's artifact)."""
        return json.dumps(
            {
                "themes": self.themes,
                "method": self.method,
                "per_episode": self.per_episode.to_json(orient="split", double_precision=15),
                "per_window": self.per_window.to_json(
                    orient="split", index=False, double_precision=15
                ),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ThemeResult:
        """Inverse of :meth:`to_json`."""
        data = json.loads(text)
        per_episode = pd.read_json(StringIO(data["per_episode"]), orient="split")
        per_window = pd.read_json(StringIO(data["per_window"]), orient="split")
        per_episode.index.name = "episode"
        return cls(data["themes"], data["method"], per_episode, per_window)


def episode_digest(episode: Episode) -> str:
    """sha256 over one episode's key and sentences."""
    digest = hashlib.sha256(episode.key.encode())
    for sentence in episode.sentences:
        digest.update(b"\x00" + sentence.encode())
    return digest.hexdigest()


def corpus_hash(episodes: Sequence[Episode]) -> str:
    """sha256 over the episodes' digests (:func:`episode_digest`), in order: shards of a corpus
    give their episodes' digests, and the merge the same hash as the whole."""
    return combined_hash(episode_digest(e) for e in episodes)


def combined_hash(digests) -> str:
    """The corpus hash from its episodes' digests, in order."""
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def concat_results(parts: Sequence[ThemeResult]) -> ThemeResult:
    """One result from results over disjoint sets of episodes, episodes in order (``S01E01``
    before ``S01E02``): the per-episode and per-window rows are additive, and the overall and
    distinctive scores are recomputed from them (:attr:`ThemeResult.overall`)."""
    first = parts[0]
    if any((p.themes, p.method) != (first.themes, first.method) for p in parts):
        raise UserError("theme results to merge differ in themes or method")
    per_episode = pd.concat([p.per_episode for p in parts]).sort_index(kind="stable")
    if per_episode.index.has_duplicates:
        raise UserError("theme results to merge share an episode")
    per_window = pd.concat([p.per_window for p in parts], ignore_index=True)
    per_window = per_window.sort_values(["episode", "window"], kind="stable", ignore_index=True)
    return ThemeResult(first.themes, first.method, per_episode, per_window)


def score_corpus(episodes: Sequence[Episode], themes: Sequence[str], scorer, window: int = 20):
    """Score every sentence once (one scorer call for the corpus), then aggregate.

    ``window`` is the number of consecutive sentences per window (the last one may be shorter).
    """
    if window < 1:
        raise UserError(f"window must be at least 1 sentence, got {window}")
    themes = list(themes)
    sentences = [s for e in episodes for s in e.sentences]
    with Progress(transient=True) as progress:
        task = progress.add_task("scoring sentences", total=len(sentences))
        scores = scorer.score(sentences, themes, lambda n: progress.advance(task, n))
    frame = pd.DataFrame(scores.double().numpy(), columns=themes)
    episode_rows, window_rows, start = [], [], 0
    for episode in episodes:
        part = frame.iloc[start : start + len(episode.sentences)]
        start += len(episode.sentences)
        episode_rows.append(
            {"episode": episode.key, "sentences": len(part), "relevant": _voting(part),
             **part.mean()}  # fmt: skip
        )
        for w, first in enumerate(range(0, len(part), window)):
            chunk = part.iloc[first : first + window]
            window_rows.append(
                {
                    "episode": episode.key,
                    "window": w,
                    "first": first,
                    "last": first + len(chunk) - 1,
                    "relevant": _voting(chunk),
                    **chunk.mean(),
                }
            )
    per_episode = pd.DataFrame(episode_rows).set_index("episode")
    return ThemeResult(themes, scorer.method, per_episode, pd.DataFrame(window_rows))


def _voting(frame: pd.DataFrame) -> int:
    """How many sentences (rows) relate to some theme."""
    return int((frame.sum(axis=1) > 0).sum())


class ThemeCache:
    """Theme results on disk, one JSON file per (corpus, themes, method, window) key."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    @staticmethod
    def key(episodes: Sequence[Episode], themes: Sequence[str], method: str, window: int) -> str:
        """The cache key of one question."""
        question = {
            "corpus": corpus_hash(episodes),
            "themes": list(themes),
            "descriptions": theme_descriptions(themes),
            "method": method,
            "window": window,
        }
        return hashlib.sha256(json.dumps(question, sort_keys=True).encode()).hexdigest()

    def get(self, key: str) -> ThemeResult | None:
        """The cached result for ``key``, or ``None``."""
        path = self.folder / f"{key}.json"
        return ThemeResult.from_json(path.read_text(encoding="utf-8")) if path.exists() else None

    def put(self, key: str, result: ThemeResult) -> None:
        """Store ``result`` under ``key`` (written atomically)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f"{key}.tmp"
        tmp.write_text(result.to_json(), encoding="utf-8")
        tmp.replace(self.folder / f"{key}.json")

    def score(self, episodes, themes, scorer, window: int = 20) -> tuple[ThemeResult, bool]:
        """``(result, hit)``: the cached result, or a fresh one that is then cached."""
        key = self.key(episodes, themes, scorer.method, window)
        cached = self.get(key)
        if cached is not None:
            return cached, True
        result = score_corpus(episodes, themes, scorer, window)
        self.put(key, result)
        return result, False
