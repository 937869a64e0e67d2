"""Upload datasets as new versions: validate every file, checksum, store, then move the pointer.

Each file is first loaded on its own with :mod:`stnlp.runtime.data`; if any fails (an error, or
no record), the upload is refused whole, naming each bad file, unless ``skip_bad`` leaves them
out (the new version's manifest lists them). Then each dataset gets a new immutable version
(:mod:`stnlp.runtime.datasets`): files unchanged since the current version are not sent again,
and a dataset whose files are all unchanged gets no new version. Pointers move only after every
dataset of the upload is staged. A folder upload is the whole dataset; uploading one file adds
it to (or replaces it in) the current version's files.
"""

from __future__ import annotations

import logging
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
from stnlp.runtime import logs
from stnlp.runtime.data.validate import DatasetCheck, check_files
from stnlp.runtime.datasets import DatasetStore, StagedFile
from stnlp.runtime.store import ObjectStore, sha256_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadItem:
    """One local file and the path it takes in its dataset."""

    path: Path
    dataset: str
    name: str
    sha256: str
    size: int


@dataclass
class UploadPlan:
    """What an upload will store: files per dataset, and the bad files it leaves out."""

    datasets: dict[str, list[UploadItem]] = field(default_factory=dict)
    skipped: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    merge: set[str] = field(default_factory=set)
    source: str = ""

    @property
    def items(self) -> list[UploadItem]:
        """Every file of the plan."""
        return [item for items in self.datasets.values() for item in items]


@dataclass
class UploadReport:
    """What an upload did: keys stored and reused, bytes sent, the version of each dataset."""

    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_sent: int = 0
    versions: dict[str, str] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    bad_skipped: list[str] = field(default_factory=list)


def _refusal(path: Path, checks: dict[str, DatasetCheck]) -> DataError:
    bad = [c for check in checks.values() for c in check.bad]
    named = "; ".join(f"{c.path}: {c.error}" for c in bad)
    return DataError(
        f"{path}: upload refused, nothing stored: {len(bad)} file(s) fail to load: {named} "
        "(fix them, or pass --skip-bad to upload the rest)"
    )


def plan_upload(path: Path, skip_bad: bool = False) -> UploadPlan:
    """Validate every file under ``path`` (a dataset root, one dataset folder or one file).

    Raises :class:`DataError` naming each file that fails to load (unless ``skip_bad``: then a
    dataset with no good file is left out and keeps its current version) and when nothing is
    left to upload.
    """
    path = Path(path)
    checks = check_files(path)
    if any(check.bad for check in checks.values()) and not skip_bad:
        raise _refusal(path, checks)
    plan = UploadPlan(source=str(path))
    for name, check in sorted(checks.items()):
        if check.bad:
            plan.skipped[name] = [{"path": c.path.name, "reason": c.error} for c in check.bad]
        if not check.good:  # with skip_bad, a dataset of bad files keeps its current version
            continue
        if check.single_file:
            plan.merge.add(name)
        plan.datasets[name] = [
            UploadItem(c.path, name, c.path.name, sha256_file(c.path), c.path.stat().st_size)
            for c in check.good
        ]
    if not plan.datasets:
        why = " that load" if plan.skipped else ""
        raise DataError(f"{path}: no dataset files{why} to upload; nothing stored")
    return plan


def _files(plan: UploadPlan, name: str, base: dict | None) -> list[StagedFile]:
    """The new version's files: the upload's, plus (for one file) the rest of ``base``."""
    files = [StagedFile(i.name, i.path, i.sha256, i.size) for i in plan.datasets[name]]
    if name in plan.merge and base:
        uploaded = {f.path for f in files}
        files += [StagedFile(e["path"], Path(), e["sha256"], e["size"])
                  for e in base["files"] if e["path"] not in uploaded]  # fmt: skip
    return files


def _current(datasets: DatasetStore, name: str) -> dict | None:
    """The current manifest, or ``None`` (no version yet, or a damaged pointer: logged)."""
    state = datasets.pointer_state(name)
    if state.damage:
        logs.event(log, "damaged dataset pointer", logging.WARNING, dataset=name,
                   reason=state.damage)  # fmt: skip
    return datasets.manifest(name, state.version) if state.version else None


def upload(plan: UploadPlan, store: ObjectStore, progress: bool = True) -> UploadReport:
    """Store ``plan`` as new dataset versions, then move their pointers; show byte progress."""
    datasets = DatasetStore(store)
    report = UploadReport()
    staged = []
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, disable=not progress, transient=True) as bar:
        files_of = {}
        for name in sorted(plan.datasets):
            base = _current(datasets, name)
            files_of[name] = (base, _files(plan, name, base))
        total = sum(f.size for _, files in files_of.values() for f in files)
        task = bar.add_task(f"upload to {store.description}", total=total)
        for name, (base, files) in files_of.items():
            wanted = sorted((f.path, f.sha256) for f in files)
            if base and wanted == sorted((e["path"], e["sha256"]) for e in base["files"]):
                report.unchanged.append(name)
                report.versions[name] = base["version"]
                report.skipped += [e["key"] for e in base["files"]]
                bar.advance(task, sum(f.size for f in files))
                continue
            done = datasets.stage(name, files, base=base, skipped=plan.skipped.get(name, ()),
                                  source=plan.source, advance=lambda n: bar.advance(task, n))
            staged.append(done)
            report.uploaded += done.uploaded
            report.skipped += done.reused
            report.bytes_sent += done.bytes_sent
    for done in staged:  # every version is complete before any pointer moves
        datasets.move_latest(done.dataset, done.version, "upload")
        report.versions[done.dataset] = done.version
        logs.event(log, "dataset version", dataset=done.dataset, version=done.version,
                   uploaded=len(done.uploaded), reused=len(done.reused))  # fmt: skip
    report.bad_skipped = [f"{name}/{s['path']}" for name, items in plan.skipped.items()
                          for s in items]  # fmt: skip
    return report


def upload_path(
    path: Path, store: ObjectStore, progress: bool = True, skip_bad: bool = False
) -> UploadReport:
    """Validate ``path`` (a dataset root, folder or file), then upload it as new versions."""
    return upload(plan_upload(Path(path), skip_bad), store, progress=progress)
