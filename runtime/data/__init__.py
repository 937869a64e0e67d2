"""Loaders for the four datasets: subtitles, transcripts, locations, characters.

Each ``load_*`` takes a file or a folder and returns a :class:`LoadResult`; bad input raises
:class:`runtime.errors.DataError` naming the file, line and field.
"""

from pathlib import Path

from runtime.data.corpus import LOADERS, Corpus, group_by_episode, load_corpus
from runtime.data.jsonl import load_characters, load_locations
from runtime.data.records import Caption, Character, LoadResult, Location, TranscriptLine
from runtime.data.subtitles import clean_caption, load_subtitles
from runtime.data.transcripts import load_transcripts
from runtime.data.validate import load_any

# The sample data set shipped with the project (the demo's and the tabs' offline data).
SAMPLE_DIR = Path(__file__).resolve().parents[2] / "data" / "sample"

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
    "group_by_episode",
    "load_any",
    "load_characters",
    "load_corpus",
    "load_locations",
    "load_subtitles",
    "load_transcripts",
]
