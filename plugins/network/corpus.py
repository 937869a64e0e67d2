"""From subtitle captions to the sentences of each episode.

Captions break sentences across lines and hold several sentences at once, so an episode's
captions are joined in order and split again at sentence-final punctuation (``.``, ``!``,
``?``, ``…``) followed by a space, except after common honorifics (``Mr.``, ``Dr.``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_HONORIFICS = ("Mr", "Mrs", "Ms", "Dr", "St", "Jr", "Sr")
_SPLIT = re.compile(
    "".join(rf"(?<!\b{h}\.)" for h in _HONORIFICS) + r"(?:(?<=[.!?…])|(?<=[.!?…][\"'”’)]))\s+"
)


@dataclass(frozen=True)
class Episode:
    """One episode's sentences, in order."""

    season: int
    episode: int
    sentences: tuple[str, ...]

    @property
    def tag(self) -> str:
        """``S01E02`` style name of the episode."""
        return f"S{self.season:02d}E{self.episode:02d}"


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, stripped, empty ones dropped."""
    return [s.strip() for s in _SPLIT.split(text) if s.strip()]


def episodes_from_captions(captions: Iterable) -> list[Episode]:
    """Group captions (``stnlp.runtime.data.Caption``) by episode and split them into sentences.

    Episodes come out sorted by season and episode; captions inside one by their index.
    """
    grouped: dict[tuple[int, int], list] = {}
    for caption in captions:
        grouped.setdefault((caption.season, caption.episode), []).append(caption)
    episodes = []
    for (season, number), items in sorted(grouped.items()):
        text = " ".join(c.text for c in sorted(items, key=lambda c: c.index))
        episodes.append(Episode(season, number, tuple(split_sentences(text))))
    return episodes
