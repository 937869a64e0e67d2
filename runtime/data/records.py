"""The records the loaders return, and the result of one load."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Caption:
    """One subtitle caption; ``start`` and ``end`` in seconds, ``text`` free of markup."""

    season: int
    episode: int
    index: int
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class TranscriptLine:
    """One line of dialogue spoken by ``name`` in an episode's transcript."""

    season: int
    episode: int
    name: str
    line: str


@dataclass(frozen=True)
class Location:
    """A place in the series, with its description and type (e.g. ``Residential``)."""

    name: str
    description: str
    type: str


@dataclass(frozen=True)
class Character:
    """A character, a description and every other field of its record in ``fields``."""

    name: str
    description: str
    fields: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)


@dataclass
class LoadResult:
    """What one load produced: the records, how many entries were skipped, the files read, notes.

    ``notes`` are short human-readable remarks (why entries were skipped, which encoding was
    used) for `stnlp data validate`.
    """

    records: list = field(default_factory=list)
    skipped: int = 0
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def extend(self, other: LoadResult) -> None:
        """Add another result (e.g. of the next file) to this one."""
        self.records.extend(other.records)
        self.skipped += other.skipped
        self.files.extend(other.files)
        self.notes.extend(other.notes)
