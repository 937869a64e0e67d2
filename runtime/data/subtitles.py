"""SubRip (``.srt``) subtitles: one :class:`Caption` per caption block, markup removed."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from stnlp.runtime import logs
from stnlp.runtime.data.files import episode_of, load_files, read_text
from stnlp.runtime.data.records import Caption, LoadResult

log = logging.getLogger(__name__)

_TIME = r"(\d{1,2}):(\d{2}):(\d{2})[,.](\d{1,3})"
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}(?:\s.*)?$", re.ASCII)
_INDEX = re.compile(r"^\s*([0-9]{1,9})\s*$")
_MARKUP = [
    re.compile(r"\{\\[^}]*\}"),  # ASS override tags such as {\an8}
    re.compile(r"</?[A-Za-z][^<>]*>"),  # HTML-ish tags such as <i>, </font>
    re.compile(r"\[[^\]]*\]"),  # sound cues [door slams]
    re.compile(r"\([^)]*\)"),  # sound cues (GROWLS)
    re.compile(r"[♪♫]"),  # music notes
]
_SPEAKER_DASH = re.compile(r"^\s*-+\s*")
_SPACES = re.compile(r"\s+")


def load_subtitles(path: str | Path) -> LoadResult:
    """Captions from one ``.srt`` file or every ``.srt`` file in a folder (sorted by name)."""
    return load_files(path, ".srt", _load_file)


def clean_caption(lines: list[str]) -> str:
    """The caption's spoken text: markup, cues, notes and speaker dashes removed, lines joined."""
    parts = []
    for line in lines:
        for pattern in _MARKUP:
            line = pattern.sub(" ", line)
        parts.append(_SPEAKER_DASH.sub("", line))
    return _SPACES.sub(" ", " ".join(parts)).strip()


def _seconds(hours: str, minutes: str, seconds: str, millis: str) -> float:
    total = ((int(hours) * 60 + int(minutes)) * 60 + int(seconds)) * 1000 + int(
        millis.ljust(3, "0")
    )
    return total / 1000


def _blocks(text: str) -> list[tuple[int, list[str]]]:
    """The blank-line separated blocks of ``text``, each with its first line number."""
    blocks: list[tuple[int, list[str]]] = []
    current: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            if not current:
                blocks.append((number, current))
            current.append(line)
        else:
            current = []
    return blocks


def _load_file(path: Path) -> LoadResult:
    season, episode = episode_of(path)
    text, encoding = read_text(path)
    result = LoadResult(files=[path])
    if encoding != "utf-8":
        result.notes.append(f"{path.name}: read as {encoding}")
    malformed: list[int] = []
    empty = 0
    for block_line, lines in _blocks(text):
        timing = _TIMING.match(lines[1]) if len(lines) > 1 else None
        index = _INDEX.match(lines[0])
        if index is None or timing is None:
            malformed.append(block_line)
            continue
        start, end = _seconds(*timing.groups()[:4]), _seconds(*timing.groups()[4:])
        if end < start:
            malformed.append(block_line)
            continue
        caption = clean_caption(lines[2:])
        if not caption:
            empty += 1
            continue
        result.records.append(Caption(season, episode, int(index.group(1)), start, end, caption))
    result.skipped = len(malformed) + empty
    if malformed:
        where = ", ".join(str(n) for n in malformed[:5]) + (", ..." if len(malformed) > 5 else "")
        result.notes.append(
            f"{path.name}: skipped {len(malformed)} malformed block(s) near line {where}"
        )
    if empty:
        result.notes.append(f"{path.name}: skipped {empty} caption(s) with no spoken text")
    logs.event(
        log,
        "subtitles loaded",
        file=str(path),
        captions=len(result.records),
        skipped=result.skipped,
    )
    return result
