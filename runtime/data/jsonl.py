"""JSON Lines datasets: ``locations.jsonl`` and ``characters.jsonl``."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from stnlp.common.errors import DataError
from stnlp.runtime import logs
from stnlp.runtime.data.files import load_files, read_text
from stnlp.runtime.data.records import Character, LoadResult, Location

log = logging.getLogger(__name__)

LOCATION_FIELDS = ("location_name", "location_description", "location_type")
CHARACTER_FIELDS = ("character_name",)
_DESCRIPTION_HINTS = ("description", "personality", "background", "biography", "bio")


def load_locations(path: str | Path) -> LoadResult:
    """Locations from one ``.jsonl`` file or every ``.jsonl`` file in a folder (sorted)."""
    return load_files(path, ".jsonl", lambda file: _load_file(file, LOCATION_FIELDS, _location))


def load_characters(path: str | Path) -> LoadResult:
    """Characters from one ``.jsonl`` file or every ``.jsonl`` file in a folder (sorted).

    ``description`` is the record's ``description`` field, or else its description-like fields
    (``personality``, ``background`` ...) joined; every field but the name is kept in ``fields``.
    """
    return load_files(path, ".jsonl", lambda file: _load_file(file, CHARACTER_FIELDS, _character))


def read_objects(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each non-blank line of ``path`` as ``(line number, JSON object)``.

    Raises DataError naming the file and line for invalid JSON (numbers past the digit limit,
    nesting past the recursion limit, lone surrogates included) or a value that is not an
    object.
    """
    text, _ = read_text(path)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        value = parse_line(line, f"{path}:{number}")
        if not isinstance(value, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, got {type(value).__name__}")
        yield number, value


def parse_line(line: str, where: str) -> Any:
    """One JSON value from ``line``; DataError naming ``where`` for anything that is not
    JSON a record can hold (what :func:`json.loads` raises, and text that is not Unicode)."""
    try:
        value = json.loads(line)
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: invalid JSON ({exc.msg})") from None
    except (ValueError, RecursionError) as exc:  # digit limit, nesting, lone surrogates
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:80]
        raise DataError(f"{where}: invalid JSON ({reason})") from None
    return value


def _load_file(
    path: Path, required: tuple[str, ...], build: Callable[[dict[str, Any]], Any]
) -> LoadResult:
    result = LoadResult(files=[path])
    for number, obj in read_objects(path):
        for name in required:
            value = obj.get(name)
            if not isinstance(value, str) or not value.strip():
                problem = "missing" if value is None else f"not a non-empty string: {value!r}"
                raise DataError(f"{path}:{number}: field {name!r} is {problem}")
        result.records.append(build(obj))
    logs.event(log, "jsonl loaded", file=str(path), records=len(result.records))
    return result


def _location(obj: dict[str, Any]) -> Location:
    return Location(
        name=obj["location_name"].strip(),
        description=obj["location_description"].strip(),
        type=obj["location_type"].strip(),
    )


def _character(obj: dict[str, Any]) -> Character:
    fields = {key: value for key, value in obj.items() if key != "character_name"}
    description = fields.get("description")
    if not isinstance(description, str):
        description = " ".join(
            str(value).strip()
            for key, value in fields.items()
            if any(hint in key.lower() for hint in _DESCRIPTION_HINTS) and value
        )
    return Character(name=obj["character_name"].strip(), description=description, fields=fields)
