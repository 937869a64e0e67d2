"""Upload datasets to a stack's datasets bucket: validate, checksum, skip what is unchanged.

Every file is first loaded with :mod:`stnlp.runtime.data` (bad data stops the upload before anything
is sent, naming file and field), then goes to ``raw/<dataset>/<file>``. Each object carries the
sha256 of its content: in S3 as the object metadata ``sha256``; in the local store the etag is
that sha256. A file whose stored sha256 matches is skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from stnlp.common.errors import DataError
from stnlp.runtime.data import load_any
from stnlp.runtime.store import ObjectStore, S3Store, sha256_file

METADATA_KEY = "sha256"


@dataclass(frozen=True)
class UploadItem:
    """One local file and where it goes."""

    path: Path
    key: str
    sha256: str
    size: int


@dataclass
class UploadReport:
    """What an upload did: keys uploaded and skipped, bytes sent."""

    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_sent: int = 0


def plan_upload(path: Path) -> list[UploadItem]:
    """Validate ``path`` (a dataset root, one dataset folder or one file) and list its uploads."""
    results = load_any(path)
    items = []
    for dataset, result in sorted(results.items()):
        if result.files and not result.records:
            raise DataError(f"{path}: dataset {dataset!r} loaded no records; nothing to upload")
        for file in sorted(result.files):
            file = Path(file)
            items.append(UploadItem(file, f"raw/{dataset}/{file.name}", sha256_file(file),
                                    file.stat().st_size))
    if not items:
        raise DataError(f"{path}: no dataset files to upload")
    return items


def stored_sha256(store: ObjectStore, key: str) -> str | None:
    """The sha256 recorded for ``key`` in ``store``, or ``None`` when absent or unrecorded."""
    if isinstance(store, S3Store):
        from botocore.exceptions import ClientError

        try:
            head = store.client.head_object(Bucket=store.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return head.get("Metadata", {}).get(METADATA_KEY)
    return store.etag(key)  # the local store's etag is the content's sha256


def put_with_sha256(store: ObjectStore, item: UploadItem, advance: Callable[[int], None]) -> None:
    """Upload one file with its sha256 (S3: metadata; multipart above 8 MiB, with progress)."""
    if isinstance(store, S3Store):
        store.client.upload_file(
            str(item.path), store.bucket, item.key,
            ExtraArgs={"Metadata": {METADATA_KEY: item.sha256}}, Callback=advance,
        )  # fmt: skip
        return
    if store.upload_file(item.key, item.path) != item.sha256:  # local etag: the sha256
        raise DataError(f"{item.path}: changed while uploading to {item.key}; upload again")
    advance(item.size)


def upload(items: list[UploadItem], store: ObjectStore, progress: bool = True) -> UploadReport:
    """Upload the changed ``items`` to ``store``, showing a byte progress bar."""
    report = UploadReport()
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    todo = []
    for item in items:
        if stored_sha256(store, item.key) == item.sha256:
            report.skipped.append(item.key)
        else:
            todo.append(item)
    with Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task(f"upload to {store.description}", total=sum(i.size for i in todo))
        for item in todo:
            put_with_sha256(store, item, lambda n: bar.advance(task, n))
            report.uploaded.append(item.key)
            report.bytes_sent += item.size
    return report


def upload_path(path: Path, store: ObjectStore, progress: bool = True) -> UploadReport:
    """Validate ``path`` (a dataset root, folder or file), then upload what changed."""
    return upload(plan_upload(Path(path)), store, progress=progress)
