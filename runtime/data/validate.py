"""What `stnlp data validate` loads: a dataset root, one dataset folder, or one file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from stnlp.common.errors import DataError
from stnlp.runtime.data.corpus import LOADERS, load_corpus
from stnlp.runtime.data.files import read_text
from stnlp.runtime.data.jsonl import parse_line
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
    keys = parse_line(text.strip().splitlines()[0], f"{path}:1")
    if isinstance(keys, dict):
        if "location_name" in keys:
            return "locations"
        if "character_name" in keys:
            return "characters"
    raise DataError(
        f"{path}: cannot tell locations from characters (no location_name or "
        "character_name field on line 1)"
    )


@dataclass
class FileCheck:
    """One dataset file loaded alone: its record count, or why it fails to load."""

    path: Path
    records: int = 0
    error: str | None = None


@dataclass
class DatasetCheck:
    """Every file of one dataset in an upload: good, bad, and ignored (wrong suffix)."""

    name: str
    good: list[FileCheck] = field(default_factory=list)
    bad: list[FileCheck] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)
    single_file: bool = False


def check_files(path: str | Path) -> dict[str, DatasetCheck]:
    """Load each file of ``path`` (a dataset root, one dataset folder or one file) on its own.

    A file fails when its loader raises :class:`DataError` or it yields no record; unlike
    :func:`load_any`, one bad file does not hide the others. Files of another suffix are
    listed as ignored.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir() and any((path / name).is_dir() for name in LOADERS):
        targets = [(name, path / name) for name in LOADERS if (path / name).is_dir()]
    else:
        targets = [(dataset_of(path), path)]
    checks = {}
    for name, target in targets:
        suffix, loader = LOADERS[name]
        check = DatasetCheck(name, single_file=target.is_file())
        files = [target] if target.is_file() else sorted(p for p in target.iterdir() if p.is_file())
        for file in files:
            if file.suffix.lower() != suffix:
                check.ignored.append(file)
                continue
            check.good.append(_check_file(file, loader))
        check.bad = [c for c in check.good if c.error]
        check.good = [c for c in check.good if not c.error]
        checks[name] = check
    return checks


def _check_file(file: Path, loader) -> FileCheck:
    try:
        result: LoadResult = loader(file)
    except DataError as exc:
        return FileCheck(file, error=str(exc).removeprefix(f"{file}: "))
    if not result.records:
        notes = "; ".join(note.removeprefix(f"{file.name}: ") for note in result.notes)
        return FileCheck(file, error="no records loaded" + (f" ({notes})" if notes else ""))
    return FileCheck(file, len(result.records))
