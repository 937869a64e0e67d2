"""What `stnlp data validate` loads: a dataset root, one dataset folder, or one file."""

from __future__ import annotations

import json
from pathlib import Path

from stnlp.common.errors import DataError
from stnlp.runtime.data.corpus import LOADERS, load_corpus
from stnlp.runtime.data.files import read_text
from stnlp.runtime.data.records import LoadResult

_SUFFIXES = {".srt": "subtitles", ".csv": "transcripts"}


def load_any(path: str | Path) -> dict[str, LoadResult]:
    """Dataset name -> result for ``path``: a dataset root, a dataset folder or a single file.

    Raises DataError naming the path when its kind cannot be told or it holds nothing to load.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir() and any((path / name).is_dir() for name in LOADERS):
        return load_corpus(path).results()
    name = dataset_of(path)
    return {name: LOADERS[name][1](path)}


def dataset_of(path: Path) -> str:
    """The dataset a file or a dataset folder belongs to, from its name, suffix or content."""
    if path.is_dir():
        if path.name in LOADERS:
            return path.name
        suffixes = {p.suffix.lower() for p in path.iterdir() if p.is_file()}
        kinds = {_SUFFIXES[s] for s in suffixes if s in _SUFFIXES}
        if len(kinds) == 1 and ".jsonl" not in suffixes:
            return kinds.pop()
        raise DataError(f"{path}: cannot tell which dataset this folder holds")
    suffix = path.suffix.lower()
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    if suffix == ".jsonl":
        return _jsonl_dataset(path)
    raise DataError(f"{path}: unknown file type {suffix or '(none)'} (expected .srt, .csv, .jsonl)")


def _jsonl_dataset(path: Path) -> str:
    """``locations`` or ``characters``, from the name of the file or the keys of its first line."""
    for name in ("locations", "characters"):
        if name[:-1] in path.stem.lower():
            return name
    text, _ = read_text(path)
    first = text.strip().splitlines()[0]
    try:
        keys = json.loads(first)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:1: invalid JSON ({exc.msg})") from None
    if isinstance(keys, dict):
        if "location_name" in keys:
            return "locations"
        if "character_name" in keys:
            return "characters"
    raise DataError(
        f"{path}: cannot tell locations from characters (no location_name or "
        "character_name field on line 1)"
    )
