"""The object store: one small interface, a local directory and S3 behind it.

Both implementations support conditional writes (``if_none_match``: create only if absent;
``if_match``: replace only if unchanged) and raise
:class:`stnlp.common.errors.ConflictError` when one loses. Etags are opaque strings: the sha256
of the content for the local store, S3's ETag for S3.
Keys are ``/``-separated relative paths, identical in both stores (see docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import random
import shutil
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from stnlp.common.errors import ConflictError, UserError
from stnlp.common.names import BUCKET_KINDS
from stnlp.common.settings import Settings
from stnlp.runtime import logs

log = logging.getLogger(__name__)



class StoreError(UserError):
    """A store operation failed for a reason other than a lost conditional write."""


class NotFoundError(StoreError):
    """The key does not exist in the store."""


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _join(prefix: str, relative: str) -> str:
    return f"{prefix.rstrip('/')}/{relative}" if prefix else relative


Tags = dict[str, str] | None


class ObjectStore(ABC):
    """A flat key -> bytes store with etags and conditional writes."""

    description: str = "store"

    @abstractmethod
    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        """The object's content and etag; :class:`NotFoundError` when absent."""

    @abstractmethod
    def etag(self, key: str) -> str | None:
        """The object's etag, or ``None`` when absent."""

    @abstractmethod
    def put(
        self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> str:
        """Write ``data`` at ``key`` and return the new etag.

        ``if_none_match``: fail with :class:`ConflictError` if the key exists. ``if_match``: fail
        with :class:`ConflictError` unless the current etag equals it (an absent key fails too).
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; removing an absent key is not an error."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """All keys starting with ``prefix`` (a plain string prefix, as in S3), sorted."""

    @abstractmethod
    def upload_file(
        self, key: str, path: Path, *, if_none_match: bool = False, tags: Tags = None
    ) -> str:
        """Store a local file at ``key``; return the etag.

        ``tags`` become S3 object tags (lifecycle rules expire logs and checkpoints by tag);
        the local store has no lifecycle and ignores them.
        """

    @abstractmethod
    def download_file(self, key: str, path: Path) -> None:
        """Write the object at ``key`` to a local file (atomically), creating parent folders."""

    @abstractmethod
    def content_etag(self, path: Path) -> str:
        """The etag this store would give a local file's content (to skip unchanged files)."""

    def get(self, key: str) -> bytes:
        """The object's content; :class:`NotFoundError` when absent."""
        return self.get_with_etag(key)[0]

    def exists(self, key: str) -> bool:
        """True when ``key`` exists."""
        return self.etag(key) is not None

    def sync_down(self, prefix: str, dest_dir: Path) -> list[str]:
        """Download every key under ``prefix`` into ``dest_dir``; return the keys transferred.

        Files already present with the same content are skipped.
        """
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        done = []
        for key in self.list(prefix):
            target = dest_dir / key[len(prefix) :]
            if target.is_file() and self.content_etag(target) == self.etag(key):
                continue
            self.download_file(key, target)
            done.append(key)
        return done

    def sync_up(self, src_dir: Path, prefix: str, tags: Tags = None) -> list[str]:
        """Upload every file under ``src_dir`` below ``prefix``; return the keys transferred.

        Objects that already hold the same content are skipped.
        """
        done = []
        for path in _files_under(src_dir):
            key = _join(prefix, path.relative_to(src_dir).as_posix())
            if self.etag(key) == self.content_etag(path):
                continue
            self.upload_file(key, path, tags=tags)
            done.append(key)
        return done


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StoreError(f"invalid store key {key!r}: use a relative path without '..' or '//'")
    if parts[0].startswith("."):
        raise StoreError(
            f"invalid store key {key!r}: top-level names starting with '.' are reserved"
        )
    return key


class LocalStore(ObjectStore):
    """A directory standing for one bucket.

    Writes go to a temporary file and are renamed into place. Conditional writes hold an
    ``fcntl`` lock on ``<root>/.lock`` between the etag check and the rename, so they are atomic
    across threads and processes.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.description = f"local store {self.root}"
        self._tmp = self.root / ".tmp"

    def path(self, key: str) -> Path:
        """The file holding ``key`` (which may not exist)."""
        return self.root / _check_key(key)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _staged(self, write: Callable[[Path], None]) -> Path:
        self._tmp.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp / uuid.uuid4().hex
        write(tmp)
        return tmp

    def _commit(self, key: str, tmp: Path, if_none_match: bool, if_match: str | None) -> str:
        target = self.path(key)
        etag = sha256_file(tmp)
        try:
            with self._locked():
                current = self.etag(key) if (if_none_match or if_match is not None) else None
                if if_none_match and current is not None:
                    raise ConflictError(f"{self.description}: {key} already exists")
                if if_match is not None and current != if_match:
                    raise ConflictError(f"{self.description}: {key} changed since it was read")
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return etag

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        """See :meth:`ObjectStore.get_with_etag`."""
        try:
            data = self.path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise NotFoundError(f"{self.description}: no object {key}") from exc
        return data, hashlib.sha256(data).hexdigest()

    def etag(self, key: str) -> str | None:
        """See :meth:`ObjectStore.etag`."""
        path = self.path(key)
        return sha256_file(path) if path.is_file() else None

    def put(
        self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> str:
        """See :meth:`ObjectStore.put`."""
        self.path(key)
        tmp = self._staged(lambda p: p.write_bytes(data))
        return self._commit(key, tmp, if_none_match, if_match)

    def delete(self, key: str) -> None:
        """See :meth:`ObjectStore.delete`; empty parent folders are removed too."""
        path = self.path(key)
        with self._locked():
            path.unlink(missing_ok=True)
            parent = path.parent
            while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent

    def list(self, prefix: str = "") -> list[str]:
        """See :meth:`ObjectStore.list`."""
        if not self.root.is_dir():
            return []
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not base.is_dir():
            return []
        keys = []
        for path in base.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and not key.startswith(".") and key.startswith(prefix):
                keys.append(key)
        return sorted(keys)

    def upload_file(
        self, key: str, path: Path, *, if_none_match: bool = False, tags: Tags = None
    ) -> str:
        """See :meth:`ObjectStore.upload_file` (``tags`` are ignored: no lifecycle here)."""
        self.path(key)
        tmp = self._staged(lambda p: shutil.copyfile(path, p))
        return self._commit(key, tmp, if_none_match, None)

    def download_file(self, key: str, path: Path) -> None:
        """See :meth:`ObjectStore.download_file`."""
        source = self.path(key)
        if not source.is_file():
            raise NotFoundError(f"{self.description}: no object {key}")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
        shutil.copyfile(source, tmp)
        os.replace(tmp, path)

    def content_etag(self, path: Path) -> str:
        """The sha256 of the file."""
        return sha256_file(path)


_TRANSIENT_CODES = {
    "Throttling",
    "ThrottlingException",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "503",
    "500",
    "502",
    "504",
}
_CONFLICT_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_SINGLE_PUT_LIMIT = 5 * 1024**3


class S3Store(ObjectStore):
    """One S3 bucket through a boto3 client.

    Transient errors (throttling, 5xx, connection errors) are retried ``attempts`` times with
    exponential backoff and jitter; other errors raise :class:`StoreError` naming bucket and key.
    """

    def __init__(self, bucket: str, client: Any, *, attempts: int = 6, backoff: float = 0.2):
        self.bucket = bucket
        self.client = client
        self.attempts = attempts
        self.backoff = backoff
        self.description = f"s3://{bucket}"

    def _call(self, operation: str, key: str, fn: Callable[[], Any]) -> Any:
        from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except ClientError as exc:
                error = exc.response.get("Error", {})
                code = str(error.get("Code", ""))
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                where = f"s3://{self.bucket}/{key}"
                if code in _CONFLICT_CODES or status in (409, 412):
                    raise ConflictError(f"{operation} {where}: {code}") from exc
                if code in ("NoSuchKey", "404", "NotFound"):
                    raise NotFoundError(f"{operation} {where}: no such key") from exc
                if (code not in _TRANSIENT_CODES and status < 500) or attempt == self.attempts:
                    message = error.get("Message", code)
                    raise StoreError(f"{operation} {where} failed: {code}: {message}") from exc
                reason = code
            except (ConnectionError, HTTPClientError) as exc:
                if attempt == self.attempts:
                    raise StoreError(f"{operation} s3://{self.bucket}/{key} failed: {exc}") from exc
                reason = type(exc).__name__
            delay = self.backoff * 2 ** (attempt - 1) * (0.5 + random.random())
            logs.event(
                log,
                "s3 retry",
                logging.WARNING,
                op=operation,
                bucket=self.bucket,
                key=key,
                reason=reason,
                attempt=attempt,
                delay=round(delay, 3),
            )
            time.sleep(delay)
        raise AssertionError("unreachable")

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        """See :meth:`ObjectStore.get_with_etag`."""

        def fetch() -> tuple[bytes, str]:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            return response["Body"].read(), response["ETag"]

        return self._call("get", key, fetch)

    def etag(self, key: str) -> str | None:
        """See :meth:`ObjectStore.etag`."""
        try:
            head = self._call(
                "head", key, lambda: self.client.head_object(Bucket=self.bucket, Key=key)
            )
        except NotFoundError:
            return None
        return head["ETag"]

    def put(
        self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> str:
        """See :meth:`ObjectStore.put` (S3 ``IfNoneMatch='*'`` / ``IfMatch``)."""
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": _check_key(key), "Body": data}
        if if_none_match:
            args["IfNoneMatch"] = "*"
        if if_match is not None:
            args["IfMatch"] = if_match
        try:
            return self._call("put", key, lambda: self.client.put_object(**args))["ETag"]
        except NotFoundError as exc:  # IfMatch on a key deleted since it was read
            raise ConflictError(f"put s3://{self.bucket}/{key}: object is gone") from exc

    def delete(self, key: str) -> None:
        """See :meth:`ObjectStore.delete`."""
        self._call("delete", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=key))

    def list(self, prefix: str = "") -> list[str]:
        """See :meth:`ObjectStore.list`."""

        def page_through() -> list[str]:
            paginator = self.client.get_paginator("list_objects_v2")
            pages = paginator.paginate(Bucket=self.bucket, Prefix=prefix)
            return [item["Key"] for page in pages for item in page.get("Contents", [])]

        return sorted(self._call("list", prefix, page_through))

    def upload_file(
        self, key: str, path: Path, *, if_none_match: bool = False, tags: Tags = None
    ) -> str:
        """See :meth:`ObjectStore.upload_file`: one conditional PUT up to 5 GiB, else multipart.

        A multipart upload cannot carry ``IfNoneMatch``; the key is checked to be absent first.
        """
        _check_key(key)
        if path.stat().st_size <= _SINGLE_PUT_LIMIT:
            extra = {"IfNoneMatch": "*"} if if_none_match else {}
            if tags:
                extra["Tagging"] = urlencode(tags)

            def single_put() -> dict:
                with path.open("rb") as body:
                    return self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)

            return self._call("put", key, single_put)["ETag"]
        if if_none_match and self.exists(key):
            raise ConflictError(f"put s3://{self.bucket}/{key}: already exists")
        args = {"ExtraArgs": {"Tagging": urlencode(tags)}} if tags else {}
        self._call(
            "upload", key, lambda: self.client.upload_file(str(path), self.bucket, key, **args)
        )
        return self.etag(key) or ""

    def download_file(self, key: str, path: Path) -> None:
        """See :meth:`ObjectStore.download_file`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            self._call(
                "download", key, lambda: self.client.download_file(self.bucket, key, str(tmp))
            )
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def content_etag(self, path: Path) -> str:
        """The quoted md5 of the file: S3's ETag for a single-part upload."""
        digest = hashlib.md5(usedforsecurity=False)
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        return f'"{digest.hexdigest()}"'


@dataclass
class Stores:
    """The three buckets of a stack: datasets, models and results."""

    datasets: ObjectStore
    models: ObjectStore
    results: ObjectStore


def s3_client(settings: Settings, service: str = "s3") -> Any:
    """A boto3 client honouring ``settings.region`` and ``settings.endpoint_url``.

    botocore's own retries are switched off for S3: :class:`S3Store` retries with backoff.
    """
    import boto3
    from botocore.config import Config

    config = Config(retries={"total_max_attempts": 1}) if service == "s3" else None
    return boto3.client(
        service, region_name=settings.region, endpoint_url=settings.endpoint_url, config=config
    )


def open_stores(settings: Settings) -> Stores:
    """The stores for ``settings``: folders under ``settings.store``, or the stack's S3 buckets.

    For S3 the bucket names come from the stack manifest
    (:func:`stnlp.runtime.manifest.load_manifest`).
    """
    if not settings.uses_s3:
        root = Path(settings.store)
        return Stores(*(LocalStore(root / name) for name in BUCKET_KINDS))
    from stnlp.runtime.manifest import load_manifest

    buckets = load_manifest(settings)["buckets"]
    client = s3_client(settings)
    return Stores(*(S3Store(buckets[name], client) for name in BUCKET_KINDS))
