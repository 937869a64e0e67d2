"""The object store: one small interface, a local directory and S3 behind it.

Both implementations support conditional writes (``if_none_match``: create only if absent;
``if_match``: replace only if unchanged) and raise
:class:`stnlp.common.errors.ConflictError` when one loses. Etags are opaque strings: the sha256
of the content for the local store, S3's ETag for S3.
Keys are ``/``-separated relative paths, identical in both stores (see docs/architecture.md).

Writes are idempotent: every conditional S3 write carries a write token (object metadata
``stnlp-write``), so when a request lands but its response is lost, the retry that then loses
the condition recognises its own write and counts it as success. Keys read back from a store
are confined: :func:`confined_path` refuses one that would leave its target folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
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


class DamagedObjectError(StoreError):
    """An object exists but does not hold what it should (junk JSON, a missing field).

    The message names the object; commands report it as one line and carry on with the rest.
    """


class UnsafePathError(DamagedObjectError):
    """A key or manifest path read from a store would land outside its target folder."""


def parse_json(data: bytes, what: str) -> Any:
    """``data`` decoded as JSON; :class:`DamagedObjectError` naming ``what`` otherwise.

    Covers what :func:`json.loads` raises besides ``JSONDecodeError``: numbers past the
    interpreter's digit limit (``ValueError``), nesting past the recursion limit, bad UTF-8.
    """
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError too
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise DamagedObjectError(f"{what}: not valid JSON ({reason})") from None


def read_json(store: ObjectStore, key: str) -> tuple[Any, str]:
    """The JSON value at ``key`` and its etag; :class:`NotFoundError` or
    :class:`DamagedObjectError` (naming the object)."""
    data, etag = store.get_with_etag(key)
    return parse_json(data, f"{store.description}/{key}"), etag


def encode_json(value: Any) -> bytes:
    """The stored form of a JSON document: indented, keys sorted."""
    return json.dumps(value, indent=1, sort_keys=True).encode()


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
WRITE_TOKEN = "stnlp-write"
"""The S3 object metadata key holding a conditional write's token."""


def confined_path(root: Path, relative: str, what: str) -> Path:
    """``root / relative`` for a ``/``-separated path read from a store, checked to stay inside.

    Refuses (:class:`UnsafePathError` naming ``what``) an empty, absolute or ``..`` path, empty or
    ``.`` segments, NUL bytes, and a path whose resolved target leaves ``root``.
    """
    parts = relative.split("/") if isinstance(relative, str) else []
    if (
        not parts
        or "\0" in relative
        or relative.startswith("/")
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise UnsafePathError(f"refusing {what}: {relative!r} is not a plain relative path")
    target = Path(root, *parts)
    resolved_root = Path(root).resolve()
    if not target.resolve().is_relative_to(resolved_root):
        raise UnsafePathError(f"refusing {what}: {relative!r} leaves the folder {root}")
    return target


def is_folder_marker(key: str) -> bool:
    """True for an S3 "folder" (a key ending with ``/``, as the console creates): no file."""
    return key.endswith("/")


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
    def delete(self, key: str, *, if_match: str | None = None) -> None:
        """Remove ``key``; removing an absent key is not an error.

        ``if_match``: remove only while the etag is still this one, else :class:`ConflictError`
        (so a lock is released only by its owner, never after someone else took it over).
        """

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

        See :meth:`download_keys`.
        """
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        return self.download_keys(self.list(prefix), prefix, dest_dir)

    def download_keys(self, keys: list[str], prefix: str, dest_dir: Path) -> list[str]:
        """Download ``keys`` (each under ``prefix``) to their paths below ``dest_dir``.

        Files already present with the same content are skipped, folder markers (keys ending
        with ``/``) are ignored, and a key that would land outside ``dest_dir`` (``..``, an
        absolute path) is refused with :class:`UnsafePathError` naming it, before anything is
        written. Returns the keys transferred.
        """
        targets = [
            (key, confined_path(dest_dir, key[len(prefix) :], f"{self.description}/{key}"))
            for key in keys
            if not is_folder_marker(key)
        ]
        done = []
        for key, target in targets:
            if target.is_file() and self.content_etag(target) == self.etag(key):
                continue
            self.download_file(key, target)
            done.append(key)
        return done

    def sync_up(
        self, src_dir: Path, prefix: str, tags: Tags = None, live: bool = False
    ) -> list[str]:
        """Upload every file under ``src_dir`` below ``prefix``; return the keys transferred.

        Objects that already hold the same content are skipped. ``live``: another process is
        still writing ``src_dir`` (a training's checkpoints), so a file that is gone by the time
        it is read (a temporary file renamed to its final name) is skipped, not an error; the
        next sync finds it under its final name.
        """
        done = []
        for path in _files_under(src_dir):
            key = _join(prefix, path.relative_to(src_dir).as_posix())
            try:
                if self.etag(key) == self.content_etag(path):
                    continue
                self.upload_file(key, path, tags=tags)
            except FileNotFoundError:
                if not live:
                    raise
                continue
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

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        """See :meth:`ObjectStore.delete`; empty parent folders are removed too."""
        path = self.path(key)
        with self._locked():
            current = self.etag(key) if if_match is not None else None
            if if_match is not None and current not in (None, if_match):
                raise ConflictError(f"{self.description}: {key} changed since it was read")
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

    def _call(
        self,
        operation: str,
        key: str,
        fn: Callable[[], Any],
        landed: Callable[[], Any] | None = None,
    ) -> Any:
        """``fn()``, retrying transient errors; ``landed()`` settles a lost condition.

        When an attempt's outcome is unknown (a 5xx or a dropped connection: the request may
        have landed) and a later attempt loses its condition, ``landed()`` says whether the
        object now holds this very write (its result) or not (``None``: a real conflict).
        """
        from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

        uncertain = False
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except ClientError as exc:
                error = exc.response.get("Error", {})
                code = str(error.get("Code", ""))
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                where = f"s3://{self.bucket}/{key}"
                if code in _CONFLICT_CODES or status in (409, 412):
                    own = landed() if uncertain and landed is not None else None
                    if own is not None:
                        logs.event(log, "s3 own write landed", op=operation, key=key)
                        return own
                    raise ConflictError(f"{operation} {where}: {code}") from exc
                if code in ("NoSuchKey", "404", "NotFound"):
                    raise NotFoundError(f"{operation} {where}: no such key") from exc
                if (code not in _TRANSIENT_CODES and status < 500) or attempt == self.attempts:
                    message = error.get("Message", code)
                    raise StoreError(f"{operation} {where} failed: {code}: {message}") from exc
                reason, uncertain = code, True
            except (ConnectionError, HTTPClientError) as exc:
                if attempt == self.attempts:
                    raise StoreError(f"{operation} s3://{self.bucket}/{key} failed: {exc}") from exc
                reason, uncertain = type(exc).__name__, True
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
        landed = self._token(args) if (if_none_match or if_match is not None) else None
        try:
            return self._call("put", key, lambda: self.client.put_object(**args), landed)["ETag"]
        except NotFoundError as exc:  # IfMatch on a key deleted since it was read
            raise ConflictError(f"put s3://{self.bucket}/{key}: object is gone") from exc

    def _token(self, args: dict[str, Any]) -> Callable[[], dict | None]:
        """Give a conditional write a token; return the check that it landed (see ``_call``)."""
        token = uuid.uuid4().hex
        args["Metadata"] = {**args.get("Metadata", {}), WRITE_TOKEN: token}

        def landed() -> dict | None:
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=args["Key"])
            except Exception:  # unknown: treat as a real conflict, the caller rereads
                return None
            return head if head.get("Metadata", {}).get(WRITE_TOKEN) == token else None

        return landed

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        """See :meth:`ObjectStore.delete` (S3 conditional ``DeleteObject`` with ``IfMatch``).

        Where the endpoint does not implement conditional deletes, the etag is checked again
        just before an unconditional delete.
        """
        args = {"Bucket": self.bucket, "Key": key}
        if if_match is None:
            self._call("delete", key, lambda: self.client.delete_object(**args))
            return
        try:
            self._call("delete", key, lambda: self.client.delete_object(**args, IfMatch=if_match))
        except NotFoundError:
            return  # gone already (a retry after a lost response lands here)
        except StoreError as exc:
            if "NotImplemented" not in str(exc):
                raise
            if self.etag(key) not in (None, if_match):
                raise ConflictError(f"delete s3://{self.bucket}/{key}: changed") from exc
            self._call("delete", key, lambda: self.client.delete_object(**args))

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
            extra: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
            if if_none_match:
                extra["IfNoneMatch"] = "*"
            if tags:
                extra["Tagging"] = urlencode(tags)
            landed = self._token(extra) if if_none_match else None

            def single_put() -> dict:
                with path.open("rb") as body:
                    return self.client.put_object(Body=body, **extra)

            return self._call("put", key, single_put, landed)["ETag"]
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
