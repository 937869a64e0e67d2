"""Loaders for the four datasets: subtitles, transcripts, locations, characters.

Each ``load_*`` takes a file or a folder and returns a :class:`LoadResult`; bad input raises
:class:`stnlp.common.errors.DataError` naming the file, line and field.
"""

import sys
from pathlib import Path

from stnlp.runtime.data.corpus import LOADERS, Corpus, group_by_episode, load_corpus
from stnlp.runtime.data.jsonl import load_characters, load_locations
from stnlp.runtime.data.records import Caption, Character, LoadResult, Location, TranscriptLine
from stnlp.runtime.data.subtitles import clean_caption, load_subtitles
from stnlp.runtime.data.transcripts import load_transcripts
from stnlp.runtime.data.validate import load_any


def find_sample_dir(checkout: Path, prefix: Path) -> Path:
    """The sample data set: ``data/sample`` of a source checkout, else the copy a wheel
    installs under ``<prefix>/share/stranger-things-nlp/sample``."""
    installed = prefix / "share" / "stranger-things-nlp" / "sample"
    return installed if not checkout.is_dir() and installed.is_dir() else checkout


# The sample data set shipped with the project (the demo's and the tabs' offline data).
SAMPLE_DIR = find_sample_dir(
    Path(__file__).resolve().parents[2] / "data" / "sample", Path(sys.prefix)
)

__all__ = [
    "LOADERS",
    "SAMPLE_DIR",
    "Caption",
    "Character",
    "Corpus",
    "LoadResult",
    "Location",
    "TranscriptLine",
    "clean_caption",
    "find_sample_dir",
    "group_by_episode",
    "load_any",
    "load_characters",
    "load_corpus",
    "load_locations",
    "load_subtitles",
    "load_transcripts",
]
