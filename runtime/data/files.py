"""File discovery and decoding shared by the loaders."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from stnlp.common.errors import DataError
from stnlp.runtime.data.records import LoadResult

_EPISODE = re.compile(r"S(\d{1,3})E(\d{1,3})", re.IGNORECASE | re.ASCII)


def find_files(path: str | Path, suffix: str) -> list[Path]:
    """``path`` itself when it is a ``suffix`` file, or a folder's ``*suffix`` files, sorted.

    Raises DataError naming the path when it does not exist, has the wrong suffix, or holds
    nothing to load.
    """
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() != suffix:
            raise DataError(f"{path}: expected a {suffix} file")
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == suffix)
        if not found:
            raise DataError(f"{path}: nothing to load (no {suffix} files)")
        return found
    raise DataError(f"{path}: no such file or folder")


def load_files(
    path: str | Path, suffix: str, load_file: Callable[[Path], LoadResult]
) -> LoadResult:
    """Load every ``suffix`` file under ``path`` with ``load_file`` and merge the results."""
    result = LoadResult()
    for file in find_files(path, suffix):
        result.extend(load_file(file))
    return result


def read_text(path: Path) -> tuple[str, str]:
    """The text of ``path`` and the encoding used: UTF-8 (BOM optional), else cp1252.

    Raises DataError naming the file when it decodes as neither, or holds only whitespace.
    """
    data = path.read_bytes()
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise DataError(f"{path}: cannot decode the file as UTF-8 or cp1252")
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    return text, "utf-8" if encoding == "utf-8-sig" else encoding


def episode_of(path: Path) -> tuple[int, int]:
    """Season and episode from an ``SxxEyy`` tag in the file name (any case)."""
    match = _EPISODE.search(path.name)
    if match is None:
        raise DataError(f"{path}: file name has no season/episode tag like S01E02")
    return int(match.group(1)), int(match.group(2))
