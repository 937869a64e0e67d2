"""The model registry, on any :class:`stnlp.runtime.store.ObjectStore`.

Layout: ``models/<model>/<version>/`` holds the artifacts and ``manifest.json`` (each file with
its sha256 and size, base model, run id, metrics, created time); ``models/<model>/latest.json``
points at one version (see :mod:`stnlp.runtime.versions`). Publishing *stages* a version
(artifacts, then the manifest, both create-only, so a version is never overwritten), then
moves the pointer with a conditional write. A run publishes through a fence (see
:func:`stnlp.runtime.backends.local.publish_outcome`): only the lock holder in
``results_sync`` moves the pointer, and a pointer moved by a run that then failed is retracted.
Fetching and rolling back verify every checksum.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stnlp.common.cache import cache_root
from stnlp.common.errors import UserError
from stnlp.common.settings import Settings
from stnlp.runtime import logs
from stnlp.runtime.store import (
    DamagedObjectError,
    LocalStore,
    NotFoundError,
    ObjectStore,
    encode_json,
    read_json,
    sha256_file,
)
from stnlp.runtime.versions import (
    MANIFEST,
    Pointer,
    PointerState,
    check_entries,
    fetch_entries,
    file_digest,
    is_version,
    new_version,
    verify_entries,
    versions_under,
)

log = logging.getLogger(__name__)

_MODEL = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
_STANDARD_FIELDS = ("model", "version", "created", "base_model", "run_id", "metrics")

__all__ = ["CorruptModelError", "LocalModel", "ModelRegistry", "fetch_latest", "file_digest",
           "new_version"]  # fmt: skip


class CorruptModelError(UserError):
    """A published version is incomplete or a file does not match its checksum."""


@dataclass(frozen=True)
class LocalModel:
    """A verified model version as a local folder."""

    path: Path
    version: str
    manifest: dict[str, Any]


def _check_model(model: str) -> str:
    if not isinstance(model, str) or not _MODEL.match(model):
        raise UserError(f"invalid model name {model!r}: lowercase letters, digits and dashes")
    return model


class ModelRegistry:
    """Publish, list, fetch and roll back versions of models on one store."""

    def __init__(self, store: ObjectStore):
        self.store = store

    def _prefix(self, model: str, version: str | None = None) -> str:
        base = f"models/{_check_model(model)}"
        if version is None:
            return base
        if not is_version(version):
            raise UserError(f"invalid version {version!r} for model {model!r}")
        return f"{base}/{version}"

    def models(self) -> list[str]:
        """Names of the models with at least one key in the store."""
        names = {key.split("/")[1] for key in self.store.list("models/") if "/" in key[7:]}
        return sorted(name for name in names if _MODEL.match(name))

    def versions(self, model: str) -> list[str]:
        """Complete versions of ``model`` (those with a manifest), oldest first."""
        return versions_under(self.store, self._prefix(model))

    def pointer_of(self, model: str) -> Pointer:
        """``model``'s ``latest.json``."""
        return Pointer(self.store, f"{self._prefix(model)}/latest.json", f"model {model!r}")

    def pointer(self, model: str) -> tuple[dict[str, Any] | None, str | None]:
        """The ``latest.json`` document and its etag, or ``(None, None)``.

        A damaged pointer raises :class:`stnlp.runtime.store.DamagedObjectError` naming it.
        """
        state = self.pointer_of(model).read()
        return state.document, state.etag

    def pointer_state(self, model: str) -> PointerState:
        """The pointer as stored, damage reported rather than raised (for `stnlp doctor`)."""
        return self.pointer_of(model).state()

    def latest(self, model: str) -> str | None:
        """The version ``latest.json`` points at, or ``None`` when nothing is published."""
        return self.pointer_of(model).read().version

    def manifest(self, model: str, version: str) -> dict[str, Any]:
        """The manifest of one version; :class:`UserError` when the version does not exist."""
        key = f"{self._prefix(model, version)}/{MANIFEST}"
        try:
            manifest, _ = read_json(self.store, key)
        except NotFoundError as exc:
            known = ", ".join(self.versions(model)[-5:]) or "none"
            raise UserError(
                f"model {model!r} has no version {version!r} (latest versions: {known})"
            ) from exc
        except DamagedObjectError as exc:
            raise CorruptModelError(f"model {model!r} version {version}: {exc}") from None
        what = f"model {model!r} version {version}"
        if not isinstance(manifest, dict):
            raise CorruptModelError(f"{what}: {MANIFEST} has no files")
        try:
            check_entries(manifest.get("files"), what)
        except DamagedObjectError as exc:
            raise CorruptModelError(str(exc)) from None
        return manifest

    def stage(
        self,
        model: str,
        source_dir: Path,
        *,
        base_model: str | None = None,
        run_id: str | None = None,
        metrics: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """Store every file under ``source_dir`` as a new complete version; return its id.

        ``extra`` adds fields to the manifest (a tuned version's ``hyperparameters`` and
        ``trials``); it may not replace the standard ones. The pointer does not move:
        :meth:`move_latest` (or :meth:`publish`) does that.
        """
        clash = sorted(set(extra or {}) & {*_STANDARD_FIELDS, "files"})
        if clash:
            raise UserError(f"model {model!r}: extra manifest field(s) {', '.join(clash)} "
                            "would replace standard ones")
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
            **(extra or {}),
            "files": entries,
        }
        self.store.put(f"{prefix}/{MANIFEST}", encode_json(manifest), if_none_match=True)
        return version

    def move_latest(self, model: str, version: str, reason: str, **fields: Any) -> str | None:
        """Point ``latest.json`` at ``version``; return the version it pointed at."""
        return self.pointer_of(model).move(version, reason, **fields)

    def retract(self, model: str, version: str, reason: str) -> bool:
        """Move ``latest.json`` back to its previous version if it still names ``version``."""
        return self.pointer_of(model).retract(version, reason)

    def publish(self, model: str, source_dir: Path, **details: Any) -> str:
        """Publish every file under ``source_dir`` as a new version and make it the latest.

        ``details`` are :meth:`stage`'s (``base_model``, ``run_id``, ``metrics``). Returns the
        version id. Artifacts and manifest are written create-only; the pointer moves with a
        conditional write, retried when another publisher moved it first.
        """
        version = self.stage(model, source_dir, **details)
        self.move_latest(model, version, "publish", run_id=details.get("run_id"))
        logs.event(log, "model published", model=model, version=version)
        return version

    def rollback(self, model: str, version: str) -> str | None:
        """Point ``latest.json`` at an existing, verified ``version``; return the one before.

        A damaged ``latest.json`` is replaced (a rollback is how it is repaired). A version
        that fails verification (missing file, bad checksum, bad manifest) is refused.
        """
        self.verify(model, version)
        previous = self.move_latest(model, version, "rollback")
        logs.event(log, "model rolled back", model=model, version=version, previous=previous)
        return previous

    def verify(self, model: str, version: str) -> None:
        """Check ``version`` is complete with every checksum right (downloads it from S3)."""
        if isinstance(self.store, LocalStore):
            self.fetch(model, version)
            return
        scratch = Path(tempfile.mkdtemp(prefix=f"stnlp-verify-{model}-"))
        try:
            self.fetch(model, version, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def verify_local(self, model: str, version: str, folder: Path, manifest: dict) -> None:
        """Check every manifest file exists in ``folder`` with its sha256 and size."""
        try:
            verify_entries(manifest["files"], folder, f"model {model!r} version {version}",
                           CorruptModelError)  # fmt: skip
        except DamagedObjectError as exc:  # a path that leaves the folder
            raise CorruptModelError(str(exc)) from None

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
        what = f"model {model!r} version {version}"
        if dest is None and isinstance(self.store, LocalStore):
            folder = self.store.path(prefix)
        else:
            folder = Path(dest) if dest else Path(tempfile.mkdtemp(prefix=f"stnlp-{model}-"))
            try:
                fetch_entries(self.store, manifest["files"], folder,
                              lambda entry: f"{prefix}/{entry['path']}", what, CorruptModelError)
            except DamagedObjectError as exc:
                raise CorruptModelError(str(exc)) from None
        self.verify_local(model, version, folder, manifest)
        return LocalModel(folder, version, manifest)


def cache_dir(settings: Settings) -> Path:
    """Where models fetched from S3 are cached: ``$XDG_CACHE_HOME/stnlp/<stack>/models``."""
    return cache_root(settings.stack, "models")


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
