"""Versioned datasets in the datasets store, like models (see :mod:`stnlp.runtime.versions`).

Layout, under ``raw/<dataset>/`` (the training role may read ``raw/*``)::

    raw/<dataset>/latest.json              the pointer: which version is current
    raw/<dataset>/<version>/manifest.json  dataset, version, created, source, files, skipped
    raw/<dataset>/<version>/<file>         the files this version stored first

Each manifest entry is ``{"path", "sha256", "size", "key"}``: ``key`` is the object holding the
file, in this version's folder or, for a file unchanged since an earlier version, in that
version's folder (an unchanged file is not uploaded again). Objects are written create-only and
never deleted; the pointer moves after the whole upload landed. ``skipped`` lists files an
upload with ``--skip-bad`` left out, with the reason.

A dataset with files directly under ``raw/<dataset>/`` and no ``latest.json`` is in the older,
unversioned layout (stores written before versions, or by hand): it is read as it is, and
`stnlp doctor` reports it.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stnlp.common.errors import DataError, UserError
from stnlp.runtime import logs
from stnlp.runtime.store import (
    DamagedObjectError,
    LocalStore,
    NotFoundError,
    ObjectStore,
    confined_path,
    encode_json,
    is_folder_marker,
    read_json,
)
from stnlp.runtime.versions import (
    MANIFEST,
    POINTER,
    Pointer,
    PointerState,
    check_entries,
    fetch_entries,
    is_version,
    new_version,
    verify_entries,
    versions_under,
)

log = logging.getLogger(__name__)

ROOT = "raw"
_DATASET = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


def check_dataset(name: Any) -> str:
    """``name`` if it is a valid dataset name; :class:`UserError` otherwise."""
    if not isinstance(name, str) or not _DATASET.match(name):
        raise UserError(f"invalid dataset name {str(name)[:60]!r}: lowercase letters and digits")
    return name


@dataclass(frozen=True)
class StagedFile:
    """One local file to become ``path`` in a dataset version."""

    path: str
    local: Path
    sha256: str
    size: int


@dataclass
class Staged:
    """A staged version: its id, the keys it uploaded and the keys it reused."""

    dataset: str
    version: str
    uploaded: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    bytes_sent: int = 0


@dataclass(frozen=True)
class Fetched:
    """A dataset copied into a local folder: its version (``None``: unversioned) and files."""

    dataset: str
    version: str | None
    files: int


class DatasetStore:
    """Stage, point at, list, fetch and roll back dataset versions on one store."""

    def __init__(self, store: ObjectStore):
        self.store = store

    def prefix(self, name: str) -> str:
        """The folder of dataset ``name``."""
        return f"{ROOT}/{check_dataset(name)}"

    def names(self) -> list[str]:
        """Datasets with at least one object under ``raw/``."""
        found = {key.split("/")[1] for key in self.store.list(f"{ROOT}/") if key.count("/") >= 2}
        return sorted(name for name in found if _DATASET.match(name))

    def pointer_of(self, name: str) -> Pointer:
        """Dataset ``name``'s ``latest.json``."""
        return Pointer(self.store, f"{self.prefix(name)}/{POINTER}", f"dataset {name!r}")

    def pointer_state(self, name: str) -> PointerState:
        """The pointer as stored, damage reported rather than raised."""
        return self.pointer_of(name).state()

    def latest(self, name: str) -> str | None:
        """The current version, or ``None``; :class:`DamagedObjectError` for a damaged pointer."""
        return self.pointer_of(name).read().version

    def versions(self, name: str) -> list[str]:
        """Complete versions of dataset ``name`` (those with a manifest), oldest first."""
        return versions_under(self.store, self.prefix(name))

    def manifest(self, name: str, version: str) -> dict[str, Any]:
        """The checked manifest of one version: every entry's key inside ``raw/<name>/``."""
        if not is_version(version):
            raise UserError(f"invalid version {str(version)[:60]!r} for dataset {name!r}")
        key = f"{self.prefix(name)}/{version}/{MANIFEST}"
        what = f"dataset {name!r} version {version}"
        try:
            manifest, _ = read_json(self.store, key)
        except NotFoundError:
            known = ", ".join(self.versions(name)[-5:]) or "none"
            raise UserError(
                f"dataset {name!r} has no version {version!r} (latest: {known})"
            ) from None
        if not isinstance(manifest, dict):
            raise DamagedObjectError(f"{what}: {MANIFEST} is not a JSON object")
        for entry in check_entries(manifest.get("files"), what):
            stored = entry.get("key")
            inside = f"{self.prefix(name)}/"
            if not isinstance(stored, str) or not stored.startswith(inside):
                raise DamagedObjectError(f"{what}: {entry['path']!r} has a key outside {inside}")
            confined_path(Path("/"), stored, f"{what}: key")
        return manifest

    def stage(
        self,
        name: str,
        files: Iterable[StagedFile],
        *,
        base: dict[str, Any] | None = None,
        skipped: Iterable[dict[str, str]] = (),
        source: str = "",
        advance: Callable[[int], None] = lambda size: None,
    ) -> Staged:
        """Store ``files`` as a new version (the pointer does not move); return what it did.

        A file whose path and sha256 match an entry of ``base`` (the current manifest) reuses
        that entry's object instead of being uploaded again. ``advance(size)`` follows each
        file.
        """
        version = new_version()
        staged = Staged(name, version)
        known = {(e["path"], e["sha256"]): e["key"] for e in (base or {}).get("files", [])}
        entries = []
        for item in sorted(files, key=lambda f: f.path):
            key = known.get((item.path, item.sha256))
            if key is None:
                key = f"{self.prefix(name)}/{version}/{item.path}"
                self.store.upload_file(key, item.local, if_none_match=True)
                staged.uploaded.append(key)
                staged.bytes_sent += item.size
            else:
                staged.reused.append(key)
            advance(item.size)
            entries.append({"path": item.path, "sha256": item.sha256, "size": item.size,
                            "key": key})  # fmt: skip
        manifest = {
            "dataset": name,
            "version": version,
            "created": datetime.now(UTC).isoformat(),
            "source": source,
            "files": entries,
            "skipped": list(skipped),
        }
        key = f"{self.prefix(name)}/{version}/{MANIFEST}"
        self.store.put(key, encode_json(manifest), if_none_match=True)
        return staged

    def move_latest(self, name: str, version: str, reason: str) -> str | None:
        """Point ``latest.json`` at ``version``; return the version before."""
        return self.pointer_of(name).move(version, reason)

    def rollback(self, name: str, version: str) -> str | None:
        """Point the dataset at an existing, verified ``version``; return the one before.

        A damaged pointer is replaced; a version that fails verification is refused.
        """
        self.verify(name, version)
        previous = self.move_latest(name, version, "rollback")
        logs.event(log, "dataset rolled back", dataset=name, version=version, previous=previous)
        return previous

    def verify(self, name: str, version: str) -> None:
        """Check every file of ``version`` is stored with its checksum (downloads them)."""
        scratch = Path(tempfile.mkdtemp(prefix=f"stnlp-verify-{name}-"))
        try:
            self.fetch(name, scratch, version)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def legacy_keys(self, name: str) -> list[str]:
        """Objects of the unversioned layout: under ``raw/<name>/`` but in no version folder."""
        prefix = f"{self.prefix(name)}/"
        keys = []
        for key in self.store.list(prefix):
            first = key[len(prefix) :].split("/")[0]
            if not (is_folder_marker(key) or is_version(first) or key == prefix + POINTER):
                keys.append(key)
        return keys

    def fetch(self, name: str, dest: Path, version: str | None = None) -> Fetched:
        """Copy dataset ``name`` (default: its current version) into ``dest``, verified.

        Files already in ``dest`` with the right checksum are kept; files of ``dest`` the
        version does not hold are removed. With no pointer, the unversioned layout is read.
        Every path is confined to ``dest``. Raises :class:`DataError` when there is nothing.
        """
        dest = Path(dest)
        version = version or self.latest(name)
        if version is None:
            keys = self.legacy_keys(name)
            if not keys:
                raise DataError(f"dataset {name!r} has no files under {self.prefix(name)}/ in "
                                f"{self.store.description}")  # fmt: skip
            self.store.download_keys(keys, f"{self.prefix(name)}/", dest)
            return Fetched(name, None, len(keys))
        manifest = self.manifest(name, version)
        what = f"dataset {name!r} version {version}"
        fetch_entries(self.store, manifest["files"], dest, lambda e: e["key"], what,
                      DamagedObjectError)  # fmt: skip
        verify_entries(manifest["files"], dest, what, DamagedObjectError)
        wanted = {confined_path(dest, e["path"], what) for e in manifest["files"]}
        for path in [p for p in dest.rglob("*") if p.is_file() and p not in wanted]:
            path.unlink()
        return Fetched(name, version, len(wanted))


def dataset_folder(settings, name: str) -> Path | None:
    """A verified local copy of dataset ``name``'s current version, or ``None`` (logged).

    The local store's version folder is used in place when it holds every file itself (and an
    unversioned local dataset is its own folder); otherwise (S3, or a version reusing earlier
    objects) it is copied into a cache folder.
    """
    from stnlp.runtime.registry import cache_dir
    from stnlp.runtime.store import open_stores

    try:
        datasets = DatasetStore(open_stores(settings).datasets)
        dest = cache_dir(settings).parent / "datasets" / check_dataset(name)
        version = datasets.latest(name)
        if isinstance(datasets.store, LocalStore) and version is None:
            legacy = datasets.store.path(datasets.prefix(name))
            return legacy if datasets.legacy_keys(name) else None
        if version is not None and isinstance(datasets.store, LocalStore):
            folder = f"{datasets.prefix(name)}/{version}/"
            files = datasets.manifest(name, version)["files"]
            if all(entry["key"].startswith(folder) for entry in files):
                in_place = datasets.store.path(folder.rstrip("/"))
                verify_entries(files, in_place, f"dataset {name!r} version {version}",
                               DamagedObjectError)  # fmt: skip
                return in_place
        datasets.fetch(name, dest, version)
    except UserError as exc:
        logs.event(log, "stored dataset unavailable", logging.WARNING, dataset=name,
                   reason=str(exc))  # fmt: skip
        return None
    return dest
