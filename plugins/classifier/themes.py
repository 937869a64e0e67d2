"""Theme lists and the subtitle corpus the theme classifier scores.

A theme is a short name (``battle``); the embedding method compares sentences with the theme's
*description*, a few words saying what the theme is about. The default themes have hand-written
descriptions; a custom theme is described by its own name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from stnlp.common.errors import UserError

DEFAULT_THEMES: dict[str, str] = {
    "friendship": "friendship: friends sticking together, loyalty, trust, having each other's back",
    "hope": "hope: believing things will get better, not giving up, optimism",
    "sacrifice": "sacrifice: giving up your life or something precious to save others",
    "battle": "battle: fighting, attacking, killing a monster, weapons, violence, war",
    "self development": "self development: growing up, learning, becoming a better person",
    "betrayal": "betrayal: lying, deceiving, backstabbing, breaking trust, treachery",
    "love": "love: romance, kissing, dating, being in love, affection, a crush",
    "dialogue": "dialogue: ordinary everyday conversation, small talk, chatting",
}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_LETTER = re.compile(r"[A-Za-z]")


def parse_themes(themes: Iterable[str]) -> list[str]:
    """Clean a user's theme list: trimmed, order kept; empty or duplicated themes are errors."""
    cleaned = [" ".join(str(t).split()) for t in themes]
    if not cleaned:
        raise UserError("theme list is empty: give at least one theme")
    if any(not t for t in cleaned):
        raise UserError(f"theme list {list(themes)!r} contains an empty theme")
    seen: dict[str, str] = {}
    for theme in cleaned:
        key = theme.casefold()
        if key in seen:
            raise UserError(f"theme {theme!r} is given twice (as {seen[key]!r} and {theme!r})")
        seen[key] = theme
    return cleaned


def theme_descriptions(themes: Sequence[str]) -> list[str]:
    """The description each theme's score is computed against."""
    return [DEFAULT_THEMES.get(t.casefold(), t) for t in themes]


def split_sentences(text: str) -> list[str]:
    """Sentences of one caption; fragments without a letter (``...``, ``?!``) are dropped."""
    return [s for s in _SENTENCE_END.split(text.strip()) if _LETTER.search(s)]


@dataclass(frozen=True)
class Episode:
    """One episode's sentences, in order; ``key`` is ``S01E01``."""

    key: str
    sentences: tuple[str, ...]


def episodes_from_captions(captions: Iterable, source: str = "corpus") -> list[Episode]:
    """Group :class:`stnlp.runtime.data.Caption` records into episodes of sentences.

    A corpus without a single sentence of dialogue is a :class:`UserError` naming ``source``.
    """
    from stnlp.runtime.data import group_by_episode

    episodes = []
    for (season, episode), group in group_by_episode(captions).items():
        sentences = tuple(s for caption in group for s in split_sentences(caption.text))
        if sentences:
            episodes.append(Episode(f"S{season:02d}E{episode:02d}", sentences))
    if not episodes:
        raise UserError(f"{source}: no dialogue to score (no caption with any words)")
    return episodes
