"""Immutable versions behind a ``latest.json`` pointer: what models and datasets share.

A version is a folder of files plus a ``manifest.json`` listing each file with its sha256 and
size; both are written create-only, so nothing stored is ever overwritten. The pointer
``latest.json`` names the current version and moves with a conditional write on its etag.

Pointer document: ``version`` (``None`` once a publish was retracted and there was nothing
before it), ``previous``, ``reason``, ``updated``, ``token`` (the write's own token, so a
retry after a lost response recognises its write) and optional fields such as ``run_id``.
A pointer object that is not such a document is *damaged*: reading it raises
:class:`DamagedObjectError` naming the key, and moving it (publish, rollback, `stnlp doctor
--repair`) replaces it conditionally on the damaged object's etag.
"""

from __future__ import annotations

import logging
import random
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stnlp.common.errors import ConflictError
from stnlp.runtime import logs
from stnlp.runtime.store import (
    DamagedObjectError,
    NotFoundError,
    ObjectStore,
    StoreError,
    confined_path,
    encode_json,
    read_json,
    sha256_file,
)

log = logging.getLogger(__name__)

VERSION_PATTERN = re.compile(r"^v\d{8}T\d{6}\d{6}-[0-9a-f]{6}$")
POINTER_ATTEMPTS = 20
MANIFEST = "manifest.json"
POINTER = "latest.json"

_DIGESTS: dict[tuple, str] = {}


def new_version() -> str:
    """A unique version id that sorts by creation time: ``v<UTC timestamp>-<6 hex>``."""
    return f"v{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{secrets.token_hex(3)}"


def is_version(text: Any) -> bool:
    """True when ``text`` is a version id made by :func:`new_version`."""
    return isinstance(text, str) and VERSION_PATTERN.match(text) is not None


def file_digest(path: Path) -> str:
    """The sha256 of ``path``, computed once per process while the file is unchanged.

    "Unchanged" is the same inode, size, mtime and ctime: a rewrite that restores the size and
    mtime still changes the ctime, which no user call can set back. Published versions never
    change, so re-reading a verified version costs one ``stat`` per file.
    """
    stat = path.stat()
    key = (str(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


def _check_pointer(document: Any) -> str | None:
    """Why ``document`` is not a pointer document, or ``None`` when it is one."""
    if not isinstance(document, dict):
        return f"expected a JSON object, got {type(document).__name__}"
    if "version" not in document:
        return "no 'version' field"
    for field in ("version", "previous"):
        value = document.get(field)
        if value is not None and not is_version(value):
            return f"{field!r} is not a version id: {str(value)[:40]!r}"
    return None


@dataclass(frozen=True)
class PointerState:
    """What a pointer object holds: its document (``None`` if absent or damaged) and etag."""

    document: dict[str, Any] | None
    etag: str | None
    damage: str | None = None

    @property
    def version(self) -> str | None:
        """The version it names, or ``None``."""
        return self.document.get("version") if self.document else None


class Pointer:
    """One ``latest.json``; ``what`` names its owner in messages (``model 'x'``)."""

    def __init__(self, store: ObjectStore, key: str, what: str):
        self.store = store
        self.key = key
        self.what = what

    def state(self) -> PointerState:
        """The pointer as stored; damage is reported in the result, never raised."""
        try:
            document, etag = read_json(self.store, self.key)
        except NotFoundError:
            return PointerState(None, None)
        except DamagedObjectError as exc:
            return PointerState(None, self.store.etag(self.key), str(exc))
        damage = _check_pointer(document)
        if damage is not None:
            return PointerState(None, etag, f"{self.store.description}/{self.key}: {damage}")
        return PointerState(document, etag)

    def read(self) -> PointerState:
        """The pointer; :class:`DamagedObjectError` naming the key when it is damaged."""
        state = self.state()
        if state.damage:
            raise DamagedObjectError(
                f"{self.what}: latest.json is damaged ({state.damage}); "
                "repair it with `stnlp doctor --repair` or a rollback"
            )
        return state

    def move(self, version: str | None, reason: str, **fields: Any) -> str | None:
        """Point at ``version``; return the version it pointed at before.

        Conditional on the etag just read (a damaged pointer is replaced the same way),
        retried with jitter when another writer moved it in between.
        """
        token = uuid.uuid4().hex
        for attempt in range(POINTER_ATTEMPTS):
            state = self.state()
            if state.damage:
                logs.event(log, "replacing damaged pointer", logging.WARNING, key=self.key)
            document = {
                "version": version,
                "previous": state.version,
                "reason": reason,
                "updated": datetime.now(UTC).isoformat(),
                "token": token,
                **fields,
            }
            try:
                if state.etag is None:
                    self.store.put(self.key, encode_json(document), if_none_match=True)
                else:
                    self.store.put(self.key, encode_json(document), if_match=state.etag)
                return state.version
            except ConflictError:
                now = self.state()
                if now.document and now.document.get("token") == token:
                    return state.version  # our write landed; its response was lost
                time.sleep(random.uniform(0, 0.02 * (attempt + 1)))
        raise StoreError(f"{self.what}: could not move latest.json in {POINTER_ATTEMPTS} attempts")

    def retract(self, version: str, reason: str) -> bool:
        """Move back to the previous version if the pointer still names ``version``."""
        for _ in range(POINTER_ATTEMPTS):
            state = self.state()
            if state.version != version:
                return False
            document = {
                "version": state.document.get("previous"),
                "previous": version,
                "reason": reason,
                "updated": datetime.now(UTC).isoformat(),
                "token": uuid.uuid4().hex,
            }
            try:
                self.store.put(self.key, encode_json(document), if_match=state.etag)
            except ConflictError:
                continue
            logs.event(log, "pointer retracted", key=self.key, version=version, reason=reason)
            return True
        raise StoreError(f"{self.what}: could not retract latest.json")


def versions_under(store: ObjectStore, prefix: str) -> list[str]:
    """Version ids with a manifest directly under ``prefix/`` (complete versions), oldest first."""
    prefix = prefix.rstrip("/") + "/"
    found = []
    for key in store.list(prefix):
        parts = key[len(prefix) :].split("/")
        if len(parts) == 2 and parts[1] == MANIFEST and is_version(parts[0]):
            found.append(parts[0])
    return sorted(found)


def check_entries(files: Any, what: str) -> list[dict[str, Any]]:
    """A manifest's ``files`` list, each entry checked to have a path, a sha256 and a size."""
    if not isinstance(files, list):
        raise DamagedObjectError(f"{what}: manifest has no files list")
    for entry in files:
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("path"), str)
            and isinstance(entry.get("sha256"), str)
            and isinstance(entry.get("size"), int)
        ):
            raise DamagedObjectError(f"{what}: manifest entry {str(entry)[:80]!r} is malformed")
    return files


def fetch_entries(
    store: ObjectStore,
    entries: Iterable[dict[str, Any]],
    folder: Path,
    key_of: Callable[[dict[str, Any]], str],
    what: str,
    error: Callable[[str], Exception],
) -> None:
    """Download each manifest entry into ``folder`` (confined), skipping verified copies.

    ``key_of(entry)`` is the store key holding the entry; ``error(message)`` the error for an
    entry missing from the store.
    """
    for entry in entries:
        target = confined_path(folder, entry["path"], f"{what}: file")
        if target.is_file() and file_digest(target) == entry["sha256"]:
            continue
        try:
            store.download_file(key_of(entry), target)
        except NotFoundError as exc:
            raise error(f"{what} is incomplete: {entry['path']} is missing") from exc


def verify_entries(
    entries: Iterable[dict[str, Any]],
    folder: Path,
    what: str,
    error: Callable[[str], Exception],
) -> None:
    """Check every entry exists in ``folder`` with its sha256; ``error(message)`` when one
    fails, the message naming ``what`` and the file."""
    for entry in entries:
        name = entry["path"]
        path = confined_path(folder, name, f"{what}: file")
        if not path.is_file():
            raise error(f"{what} is incomplete: {name} is missing")
        digest = file_digest(path)
        if digest != entry["sha256"]:
            raise error(
                f"{what}: {name} fails its checksum (sha256 {digest[:12]}..., "
                f"manifest says {entry['sha256'][:12]}...)"
            )
