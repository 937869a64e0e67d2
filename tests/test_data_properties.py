"""Property: subtitles and transcripts written from arbitrary text read back unchanged."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from stnlp.runtime.data import Caption, TranscriptLine, load_subtitles, load_transcripts

MARKUP = "<>[](){}\\-♪♫"
word = st.text(
    st.characters(categories=("L", "N", "P", "S"), exclude_characters=MARKUP),
    min_size=1,
    max_size=8,
)
text = st.lists(word, min_size=1, max_size=6).map(" ".join)
caption = st.tuples(
    st.integers(0, 36_000_000 - 20_000),  # start, ms, below ten hours
    st.integers(0, 10_000),  # duration, ms
    st.lists(text, min_size=1, max_size=3),  # caption lines
)


def srt_time(ms: int) -> str:
    """``HH:MM:SS,mmm`` for ``ms`` milliseconds."""
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


@settings(max_examples=60, deadline=None)
@given(
    season=st.integers(1, 99),
    episode=st.integers(1, 99),
    captions=st.lists(caption, min_size=1, max_size=8),
)
def test_subtitles_round_trip(season, episode, captions):
    blocks = [
        f"{i}\n{srt_time(start)} --> {srt_time(start + length)}\n" + "\n".join(lines)
        for i, (start, length, lines) in enumerate(captions, start=1)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"S{season:02d}E{episode:02d}.srt"
        path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
        result = load_subtitles(path)
    assert result.skipped == 0
    assert result.records == [
        Caption(season, episode, i, start / 1000, (start + length) / 1000, " ".join(lines))
        for i, (start, length, lines) in enumerate(captions, start=1)
    ]


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(text, text), min_size=1, max_size=10))
def test_transcripts_round_trip(rows):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s03e11.csv"
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["name", "line"])
            writer.writerows(rows)
        result = load_transcripts(path)
    assert result.skipped == 0
    assert result.records == [TranscriptLine(3, 11, name, line) for name, line in rows]
