"""Checks run on a training instance before any data moves: GPUs, disk, data.

Each check is a small function returning a :class:`Check`; :func:`run_preflight` runs them all
and raises :class:`PreflightError` listing every failure. The probes (how GPUs are counted, how
free disk is measured, how a dataset is looked up) are arguments, so a sandbox can stand in
for an instance.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path


class PreflightError(RuntimeError):
    """One or more preflight checks failed; the message lists each failure."""


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    name: str
    ok: bool
    detail: str


def torch_gpu_count() -> int:
    """GPUs that torch can use (0 on a CPU build or without a driver)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def free_gb(path: Path) -> float:
    """Free space in GiB on the filesystem holding ``path``."""
    return shutil.disk_usage(path).free / 2**30


def check_gpus(required: int, count: Callable[[], int] = torch_gpu_count) -> Check:
    """At least ``required`` GPUs are present and seen by torch."""
    if required <= 0:
        return Check("gpu", True, "no GPU required")
    seen = count()
    ok = seen >= required
    return Check("gpu", ok, f"torch sees {seen} GPU(s), the job needs {required}")


def check_disk(path: Path, min_gb: float, measure: Callable[[Path], float] = free_gb) -> Check:
    """At least ``min_gb`` GiB are free under ``path``."""
    available = measure(path)
    ok = available >= min_gb
    return Check("disk", ok, f"{available:.1f} GiB free at {path}, need {min_gb:.1f} GiB")


def check_data(datasets: Iterable[str], has_objects: Callable[[str], bool]) -> Check:
    """Each input dataset has at least one object in the datasets bucket."""
    names = list(datasets)
    missing = [name for name in names if not has_objects(name)]
    if missing:
        return Check("data", False, f"no objects under raw/ for dataset(s) {', '.join(missing)}")
    return Check("data", True, f"{len(names)} dataset(s) reachable")


def run_preflight(checks: Iterable[Check]) -> list[Check]:
    """Return the checks if all passed, else raise :class:`PreflightError` naming the failures."""
    results = list(checks)
    failed = [c for c in results if not c.ok]
    if failed:
        reasons = "; ".join(f"{c.name}: {c.detail}" for c in failed)
        raise PreflightError(f"preflight failed: {reasons}")
    return results
