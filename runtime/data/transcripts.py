"""Transcripts: CSV files with a ``name,line`` header, one per episode (``S01E02.csv``)."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

from stnlp.common.errors import DataError
from stnlp.runtime import logs
from stnlp.runtime.data.files import episode_of, load_files, read_text
from stnlp.runtime.data.records import LoadResult, TranscriptLine

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("name", "line")


def load_transcripts(path: str | Path) -> LoadResult:
    """Dialogue lines from one ``.csv`` file or every ``.csv`` file in a folder (sorted).

    Season and episode come from the ``SxxEyy`` tag in each file name. Rows with an empty
    ``name`` or ``line`` are skipped and counted.
    """
    return load_files(path, ".csv", _load_file)


def _load_file(path: Path) -> LoadResult:
    try:
        return _read_rows(path)
    except csv.Error as exc:  # a field past csv's size limit, a broken quote
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None


def _read_rows(path: Path) -> LoadResult:
    season, episode = episode_of(path)
    text, encoding = read_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [(column or "").strip().lower() for column in reader.fieldnames or []]
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if missing:
        raise DataError(f"{path}: header is missing column(s) {', '.join(missing)}")
    reader.fieldnames = header
    result = LoadResult(files=[path])
    if encoding != "utf-8":
        result.notes.append(f"{path.name}: read as {encoding}")
    for row in reader:
        name, line = (" ".join((row.get(c) or "").split()) for c in REQUIRED_COLUMNS)
        if name and line:
            result.records.append(TranscriptLine(season, episode, name, line))
        else:
            result.skipped += 1
    if result.skipped:
        result.notes.append(f"{path.name}: skipped {result.skipped} row(s) with no name or line")
    logs.event(
        log, "transcript loaded", file=str(path), lines=len(result.records), skipped=result.skipped
    )
    return result
