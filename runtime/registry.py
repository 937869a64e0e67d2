"""The model registry, on any :class:`stnlp.runtime.store.ObjectStore`.

Layout: ``models/<model>/<version>/`` holds the artifacts and ``manifest.json`` (each file with
its sha256 and size, base model, run id, metrics, created time); ``models/<model>/latest.json``
points at one version. Publishing writes the artifacts, then the manifest (both create-only, so a
version is never overwritten), then moves the pointer with a conditional write, retrying when
another publisher moved it in between. Fetching verifies every checksum.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import secrets
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stnlp.common.errors import ConflictError, UserError
from stnlp.common.settings import Settings
from stnlp.runtime import logs
from stnlp.runtime.store import LocalStore, NotFoundError, ObjectStore, StoreError, sha256_file

log = logging.getLogger(__name__)

_MODEL = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
_VERSION = re.compile(r"^v\d{8}T\d{6}\d{6}-[0-9a-f]{6}$")
MANIFEST = "manifest.json"
POINTER_ATTEMPTS = 20


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """The sha256 of ``path``, computed once per process while its size and mtime are unchanged.

    Published versions never change, so re-reading a verified model (a tab's header, then the
    tab itself, then every request that asks for the latest version) costs a ``stat`` per file.
    """
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


class CorruptModelError(UserError):
    """A published version is incomplete or a file does not match its checksum."""


@dataclass(frozen=True)
class LocalModel:
    """A verified model version as a local folder."""

    path: Path
    version: str
    manifest: dict[str, Any]


def new_version() -> str:
    """A unique version id that sorts by creation time: ``v<UTC timestamp>-<6 hex>``."""
    return f"v{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{secrets.token_hex(3)}"


def _check_model(model: str) -> str:
    if not _MODEL.match(model):
        raise UserError(f"invalid model name {model!r}: lowercase letters, digits and dashes")
    return model


def _safe_relative(model: str, version: str, name: Any) -> str:
    parts = str(name).split("/")
    if not name or str(name).startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise CorruptModelError(f"model {model!r} version {version}: bad file path {name!r}")
    return str(name)


class ModelRegistry:
    """Publish, list, fetch and roll back versions of models on one store."""

    def __init__(self, store: ObjectStore):
        self.store = store

    def _prefix(self, model: str, version: str | None = None) -> str:
        base = f"models/{_check_model(model)}"
        if version is None:
            return base
        if not _VERSION.match(version):
            raise UserError(f"invalid version {version!r} for model {model!r}")
        return f"{base}/{version}"

    def models(self) -> list[str]:
        """Names of the models with at least one key in the store."""
        return sorted({key.split("/")[1] for key in self.store.list("models/") if "/" in key[7:]})

    def versions(self, model: str) -> list[str]:
        """Complete versions of ``model`` (those with a manifest), oldest first."""
        prefix = self._prefix(model) + "/"
        found = []
        for key in self.store.list(prefix):
            parts = key[len(prefix) :].split("/")
            if len(parts) == 2 and parts[1] == MANIFEST:
                found.append(parts[0])
        return sorted(found)

    def pointer(self, model: str) -> tuple[dict[str, Any] | None, str | None]:
        """The ``latest.json`` document and its etag, or ``(None, None)``."""
        try:
            data, etag = self.store.get_with_etag(f"{self._prefix(model)}/latest.json")
        except NotFoundError:
            return None, None
        return json.loads(data), etag

    def latest(self, model: str) -> str | None:
        """The version ``latest.json`` points at, or ``None`` when nothing is published."""
        document, _ = self.pointer(model)
        return document["version"] if document else None

    def manifest(self, model: str, version: str) -> dict[str, Any]:
        """The manifest of one version; :class:`UserError` when the version does not exist."""
        key = f"{self._prefix(model, version)}/{MANIFEST}"
        try:
            data = self.store.get(key)
        except NotFoundError as exc:
            known = ", ".join(self.versions(model)[-5:]) or "none"
            raise UserError(
                f"model {model!r} has no version {version!r} (latest versions: {known})"
            ) from exc
        try:
            manifest = json.loads(data)
        except json.JSONDecodeError as exc:
            raise CorruptModelError(
                f"model {model!r} version {version}: {MANIFEST} is not valid JSON"
            ) from exc
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
            raise CorruptModelError(f"model {model!r} version {version}: {MANIFEST} has no files")
        return manifest

    def publish(
        self,
        model: str,
        source_dir: Path,
        *,
        base_model: str | None = None,
        run_id: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> str:
        """Publish every file under ``source_dir`` as a new version and make it the latest.

        Returns the version id. Artifacts and manifest are written create-only; the pointer moves
        with a conditional write, retried when another publisher moved it first.
        """
        files = sorted(p for p in Path(source_dir).rglob("*") if p.is_file())
        if not files:
            raise UserError(f"model {model!r}: nothing to publish in {source_dir}")
        version = new_version()
        prefix = self._prefix(model, version)
        entries = []
        for path in files:
            name = path.relative_to(source_dir).as_posix()
            entries.append({"path": name, "sha256": sha256_file(path), "size": path.stat().st_size})
            self.store.upload_file(f"{prefix}/{name}", path, if_none_match=True)
        manifest = {
            "model": model,
            "version": version,
            "created": datetime.now(UTC).isoformat(),
            "base_model": base_model,
            "run_id": run_id,
            "metrics": dict(metrics or {}),
            "files": entries,
        }
        body = json.dumps(manifest, indent=1, sort_keys=True).encode()
        self.store.put(f"{prefix}/{MANIFEST}", body, if_none_match=True)
        self._move_pointer(model, version, reason="publish")
        logs.event(log, "model published", model=model, version=version, files=len(entries))
        return version

    def _move_pointer(self, model: str, version: str, reason: str) -> str | None:
        key = f"{self._prefix(model)}/latest.json"
        for attempt in range(POINTER_ATTEMPTS):
            current, etag = self.pointer(model)
            previous = current["version"] if current else None
            document = {
                "version": version,
                "previous": previous,
                "reason": reason,
                "updated": datetime.now(UTC).isoformat(),
            }
            body = json.dumps(document, sort_keys=True).encode()
            try:
                if etag is None:
                    self.store.put(key, body, if_none_match=True)
                else:
                    self.store.put(key, body, if_match=etag)
                return previous
            except ConflictError:
                time.sleep(random.uniform(0, 0.02 * (attempt + 1)))
        raise StoreError(
            f"model {model!r}: could not move latest.json after {POINTER_ATTEMPTS} attempts"
        )

    def rollback(self, model: str, version: str) -> str | None:
        """Point ``latest.json`` at an existing ``version``; return the version it pointed at."""
        self.manifest(model, version)
        previous = self._move_pointer(model, version, reason="rollback")
        logs.event(log, "model rolled back", model=model, version=version, previous=previous)
        return previous

    def verify_local(self, model: str, version: str, folder: Path, manifest: dict) -> None:
        """Check every manifest file exists in ``folder`` with its sha256 and size."""
        for entry in manifest["files"]:
            name = _safe_relative(model, version, entry.get("path"))
            path = folder / name
            if not path.is_file():
                raise CorruptModelError(
                    f"model {model!r} version {version} is incomplete: {name} is missing"
                )
            digest = file_digest(path)
            if digest != entry.get("sha256"):
                raise CorruptModelError(
                    f"model {model!r} version {version}: {name} fails its checksum "
                    f"(sha256 {digest[:12]}..., manifest says {str(entry.get('sha256'))[:12]}...)"
                )

    def fetch(self, model: str, version: str | None = None, dest: Path | None = None) -> LocalModel:
        """A verified local copy of ``version`` (default: the latest).

        With a :class:`LocalStore` and no ``dest`` the version is verified in place. Otherwise
        files are downloaded into ``dest`` (a fresh temporary folder by default); files already
        there with the right checksum are not downloaded again. Raises
        :class:`CorruptModelError` naming the model, version and file when verification fails.
        """
        version = version or self.latest(model)
        if version is None:
            raise UserError(f"model {model!r} has no published version")
        manifest = self.manifest(model, version)
        prefix = self._prefix(model, version)
        if dest is None and isinstance(self.store, LocalStore):
            folder = self.store.path(prefix)
        else:
            folder = Path(dest) if dest else Path(tempfile.mkdtemp(prefix=f"stnlp-{model}-"))
            for entry in manifest["files"]:
                name = _safe_relative(model, version, entry.get("path"))
                target = folder / name
                if target.is_file() and file_digest(target) == entry.get("sha256"):
                    continue
                try:
                    self.store.download_file(f"{prefix}/{name}", target)
                except NotFoundError as exc:
                    raise CorruptModelError(
                        f"model {model!r} version {version} is incomplete: {name} is missing"
                    ) from exc
        self.verify_local(model, version, folder, manifest)
        return LocalModel(folder, version, manifest)


def cache_dir(settings: Settings) -> Path:
    """Where models fetched from S3 are cached: ``$XDG_CACHE_HOME/stnlp/<stack>/models``."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "stnlp" / settings.stack / "models"


def fetch_latest(settings: Settings, model: str) -> LocalModel | None:
    """The latest verified version of ``model``, or ``None`` (logged) when there is none.

    A corrupt or unreadable version gives ``None`` too, so a caller can fall back to a hub model
    or an offline one. The local store is verified in place; S3 versions are cached locally.
    """
    from stnlp.runtime.store import open_stores

    try:
        registry = ModelRegistry(open_stores(settings).models)
        version = registry.latest(model)
        if version is None:
            logs.event(log, "no published version", model=model)
            return None
        dest = None if not settings.uses_s3 else cache_dir(settings) / model / version
        return registry.fetch(model, version, dest)
    except UserError as exc:
        logs.event(log, "model unavailable", logging.WARNING, model=model, reason=str(exc))
        return None
