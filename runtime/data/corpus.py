"""A dataset root (``subtitles/ transcripts/ locations/ characters/``); episode grouping."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from stnlp.common.errors import DataError
from stnlp.runtime.data.jsonl import load_characters, load_locations
from stnlp.runtime.data.records import LoadResult
from stnlp.runtime.data.subtitles import load_subtitles
from stnlp.runtime.data.transcripts import load_transcripts

LOADERS: dict[str, tuple[str, Callable[[Path], LoadResult]]] = {
    "subtitles": (".srt", load_subtitles),
    "transcripts": (".csv", load_transcripts),
    "locations": (".jsonl", load_locations),
    "characters": (".jsonl", load_characters),
}
"""Each dataset's folder name -> (file suffix, loader)."""

R = TypeVar("R")


@dataclass
class Corpus:
    """The four datasets of one root; a dataset whose folder is missing is an empty result."""

    root: Path
    subtitles: LoadResult = field(default_factory=LoadResult)
    transcripts: LoadResult = field(default_factory=LoadResult)
    locations: LoadResult = field(default_factory=LoadResult)
    characters: LoadResult = field(default_factory=LoadResult)

    def results(self) -> dict[str, LoadResult]:
        """Dataset name -> its result, in the order of :data:`LOADERS`."""
        return {name: getattr(self, name) for name in LOADERS}


def load_corpus(root: str | Path) -> Corpus:
    """Load every dataset folder present under ``root``.

    Missing or empty dataset folders give empty results; a root with nothing to load at all is
    a DataError naming the root.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    corpus = Corpus(root)
    for name, (suffix, loader) in LOADERS.items():
        folder = root / name
        if folder.is_dir() and any(p.suffix.lower() == suffix for p in folder.iterdir()):
            setattr(corpus, name, loader(folder))
        else:
            getattr(corpus, name).notes.append(f"no {suffix} files in {name}/")
    if not any(result.files for result in corpus.results().values()):
        raise DataError(
            f"{root}: nothing to load (no {', '.join(n + '/' for n in LOADERS)} folder with data)"
        )
    return corpus


def group_by_episode(records: Iterable[R]) -> dict[tuple[int, int], list[R]]:
    """Records with ``season`` and ``episode`` (captions, transcript lines) grouped by episode.

    Keys are ``(season, episode)`` in ascending order; records keep their order within a group.
    """
    groups: dict[tuple[int, int], list[R]] = {}
    for record in records:
        groups.setdefault((record.season, record.episode), []).append(record)
    return dict(sorted(groups.items()))
