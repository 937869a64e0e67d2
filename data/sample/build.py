"""Build the sample transcripts and subtitles from the hand-written scenes in ``scenes/``.

Each ``scenes/SxxEyy.txt`` holds one episode: ``# heading`` lines start a scene, ``NAME: text``
lines are dialogue (``NAME (radio): text`` is heard over a walkie-talkie), and lines in
``[brackets]``, ``(PARENTHESES)`` or ``♪ notes ♪`` are sound cues. The script writes:

- ``transcripts/SxxEyy.csv`` (``name,line``): every dialogue line, cues removed;
- ``subtitles/SxxEyy.srt``: the same dialogue as captions with time codes paced by length,
  radio lines in ``<i>``, the speaker's label (``LUCAS:``) left in the text of radio lines and
  of every 13th caption and of unnamed speakers (as subtitles have it for a speaker off
  screen: `MAN 2:`), some captions raised
  with ``{\\an8}``, short exchanges shown as one
  two-speaker caption with ``-`` dashes, cues as their own captions, and the deliberate faults
  listed in ``FAULTS`` so that validation has something to skip.

The output depends only on the scene files: run ``python data/sample/build.py`` after editing them.
"""

from __future__ import annotations

import csv
import re
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
FAULTS = {
    "S01E02": (70, "index"),  # an OCR-style typo in the caption number
    "S01E03": (40, "timing"),  # a broken time code
}
_LINE = re.compile(r"^(?P<name>[A-Z][A-Za-z0-9. ]*?)(?P<radio> \(radio\))?:\s*(?P<text>.+)$")
_INLINE_CUE = re.compile(r"\s*\[[^\]]*\]\s*")


def parse_scene_file(path: Path) -> list[list[tuple[str, str, bool]]]:
    """Scenes of ``path``: lists of ``(name, text, radio)``; a cue has name ``""``."""
    scenes: list[list[tuple[str, str, bool]]] = [[]]
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            scenes.append([])
        elif line[0] in "[(♪":
            scenes[-1].append(("", line, False))
        else:
            match = _LINE.match(line)
            if match is None:
                raise SystemExit(f"{path}:{number}: expected 'NAME: text', got {line!r}")
            scenes[-1].append((match["name"].title(), match["text"], bool(match["radio"])))
    return [scene for scene in scenes if scene]


def transcript_rows(scenes: list[list[tuple[str, str, bool]]]) -> list[tuple[str, str]]:
    """``(name, line)`` for every dialogue line, inline cues removed."""
    return [
        (name, _INLINE_CUE.sub(" ", text).strip())
        for scene in scenes
        for name, text, _ in scene
        if name
    ]


def caption_texts(scenes: list[list[tuple[str, str, bool]]]) -> list[tuple[str, bool]]:
    """Caption bodies with markup, each with whether a scene break follows it."""
    captions: list[tuple[str, bool]] = []
    for scene in scenes:
        i = 0
        while i < len(scene):
            name, text, radio = scene[i]
            nxt = scene[i + 1] if i + 1 < len(scene) else None
            if (
                name
                and nxt
                and nxt[0]
                and nxt[0] != name
                and not radio
                and not nxt[2]
                and len(text) + len(nxt[1]) <= 40
                and len(captions) % 3 == 0
            ):
                body, i = f"- {text}\n- {nxt[1]}", i + 2
            else:
                if name and (radio or len(captions) % 13 == 5 or name[-1].isdigit()):  # off screen
                    text = f"{name.upper()}: {text}"
                body, i = "\n".join(textwrap.wrap(text, 42)), i + 1
                if radio:
                    body = f"<i>{body}</i>"
            if len(captions) % 29 == 7:
                body = "{\\an8}" + body
            captions.append((body, False))
        captions[-1] = (captions[-1][0], True)
    return captions


def srt_time(seconds: float) -> str:
    """``HH:MM:SS,mmm`` for ``seconds``."""
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d},{rest % 1000:03d}"


def srt_text(episode: str, captions: list[tuple[str, bool]]) -> str:
    """The SubRip file for ``captions``, paced by length, with ``FAULTS`` applied."""
    fault_at, fault = FAULTS.get(episode, (None, None))
    blocks, clock = [], 4.0
    for number, (body, scene_break) in enumerate(captions, start=1):
        duration = min(6.0, max(1.2, 0.8 + 0.06 * len(body)))
        start, end = srt_time(clock), srt_time(clock + duration)
        index = str(number)
        if number == fault_at and fault == "index":
            index = index[:-1] + "O"
        timing = f"{start} --> {end}"
        if number == fault_at and fault == "timing":
            timing = f"{start} -> {end[:5]}"
        blocks.append(f"{index}\n{timing}\n{body}\n")
        clock += duration + (6.0 + number % 7 if scene_break else 0.3 + (number % 5) * 0.15)
    return "\n".join(blocks)


def build(root: Path = HERE) -> None:
    """Write ``transcripts/`` and ``subtitles/`` under ``root`` from ``root/scenes``."""
    (root / "transcripts").mkdir(exist_ok=True)
    (root / "subtitles").mkdir(exist_ok=True)
    for scene_file in sorted((root / "scenes").glob("S??E??.txt")):
        episode = scene_file.stem
        scenes = parse_scene_file(scene_file)
        with open(root / "transcripts" / f"{episode}.csv", "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["name", "line"])
            writer.writerows(transcript_rows(scenes))
        (root / "subtitles" / f"{episode}.srt").write_text(
            srt_text(episode, caption_texts(scenes)), encoding="utf-8"
        )


if __name__ == "__main__":
    build()
