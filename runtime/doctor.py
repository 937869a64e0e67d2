"""`stnlp doctor`: find what is damaged in a stack's stores, and repair what is safe to repair.

Checked: every run record (junk, partial, or naming another run), every job lock (damaged,
abandoned, see :mod:`stnlp.runtime.runs`), local runs nobody carries on, and each model's and
dataset's pointer (damaged, or naming a missing or corrupt version) and versions. Repairs, with
``repair``:

- a damaged run record: the original bytes are kept beside it (``state.damaged-<time>.json``)
  and the record becomes an ended run (``cleanup``, ``failed``) that says so;
- an abandoned lock: removed (conditionally on its etag);
- a local run whose supervisor is gone or whose heartbeat is stale: its worker is stopped, the
  run ended (the same as `stnlp runs sweep`);
- a damaged pointer, or one naming a version that fails verification: moved to the newest
  version that verifies (or to none), reason ``doctor``.

A version whose manifest is damaged, and datasets still in the unversioned layout, are
reported only: nothing is deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stnlp.common.errors import UserError
from stnlp.runtime.datasets import DatasetStore
from stnlp.runtime.registry import ModelRegistry
from stnlp.runtime.runs import (
    STALE_AFTER_SECONDS,
    abandoned_lock,
    abandoned_run,
    job_locks,
    parse_record,
    run_prefix,
    scan_runs,
    sweep_runs,
)
from stnlp.runtime.store import DamagedObjectError, Stores, encode_json, parse_json
from stnlp.runtime.versions import Pointer


@dataclass(frozen=True)
class Finding:
    """One problem: the object, what is wrong, and what repairing did (or would do)."""

    subject: str
    problem: str
    repair: str | None = None
    repaired: bool = False

    def line(self) -> str:
        """The finding as one line."""
        if self.repaired:
            return f"repaired: {self.subject}: {self.problem} -> {self.repair}"
        fix = f" (--repair: {self.repair})" if self.repair else " (reported only)"
        return f"damaged: {self.subject}: {self.problem}{fix}"


def diagnose(
    stores: Stores, stack: str, *, repair: bool = False, stale_after: float = STALE_AFTER_SECONDS
) -> list[Finding]:
    """Every problem found in ``stack``'s stores; with ``repair``, the safe ones repaired."""
    findings = list(_records(stores, stack, repair))
    findings += _locks_and_runs(stores, stack, repair, stale_after)
    registry = ModelRegistry(stores.models)
    for model in registry.models():
        findings += _versioned(registry.pointer_of(model), registry.versions(model),
                               lambda v, m=model: registry.verify(m, v), repair)  # fmt: skip
    datasets = DatasetStore(stores.datasets)
    for name in datasets.names():
        pointer = datasets.pointer_of(name)
        findings += _versioned(pointer, datasets.versions(name),
                               lambda v, n=name: datasets.verify(n, v), repair)  # fmt: skip
        if pointer.state().version is None and datasets.legacy_keys(name):
            findings.append(Finding(f"dataset {name}", "unversioned layout (files directly "
                                    f"under raw/{name}/); `stnlp data upload` versions it"))
    return findings


def _records(stores: Stores, stack: str, repair: bool) -> Iterator[Finding]:
    _, damaged = scan_runs(stores, stack)
    store = stores.results
    for key in store.list(f"{stack}/runs/"):
        parts = key[len(f"{stack}/runs/") :].split("/")
        if len(parts) != 2 or parts[1] != "state.json":
            continue
        run_id = parts[0]
        problem = next((d for d in damaged if d.startswith(f"{store.description}/{key}")), None)
        if problem is None:
            continue
        problem = problem.removeprefix(f"{store.description}/{key}: ")
        plan = "keep the original beside it and record the run as ended (failed)"
        if not repair:
            yield Finding(key, problem, plan)
            continue
        yield Finding(key, problem, _rewrite_record(stores, stack, run_id, key, problem), True)


def _rewrite_record(stores: Stores, stack: str, run_id: str, key: str, problem: str) -> str:
    """Keep a damaged record's bytes aside and write an ended record in its place."""
    store = stores.results
    data, etag = store.get_with_etag(key)
    kept = f"{run_prefix(stack, run_id)}/state.damaged-{datetime.now(UTC):%Y%m%dT%H%M%S%f}.json"
    store.put(kept, data, if_none_match=True)
    try:
        old = parse_json(data, key)
    except DamagedObjectError:
        old = None
    old = old if isinstance(old, dict) else {}
    moment = datetime.now(UTC).isoformat()
    error = f"the run record was damaged ({problem}); the original is kept at {kept}"
    record: dict[str, Any] = {
        "run_id": run_id,
        "stack": stack,
        "job": _text(old.get("job")) or _job_of_lock(stores, stack, run_id) or "unknown",
        "backend": _text(old.get("backend")) or "unknown",
        "state": "cleanup",
        "result": "failed",
        "error": error,
        "created": _text(old.get("created")) or moment,
        "updated": moment,
        "heartbeat": moment,
        "history": [{"state": "cleanup", "time": moment, "error": error}],
        "writes": [],
    }
    parse_record(record, key, run_id)  # what is written must read back
    store.put(key, encode_json(record), if_match=etag)
    return f"record rewritten as ended (failed); original kept at {kept}"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value and len(value) < 200 else None


def _job_of_lock(stores: Stores, stack: str, run_id: str) -> str | None:
    for state in job_locks(stores.results, stack):
        if state.holder == run_id:
            return state.key.rsplit("/", 1)[1].removesuffix(".json")
    return None


def _locks_and_runs(
    stores: Stores, stack: str, repair: bool, stale_after: float
) -> list[Finding]:
    if repair:
        return [Finding("runs and locks", "abandoned", line, True)
                for line in sweep_runs(stores, stack, stale_after)]  # fmt: skip
    findings = []
    records, _ = scan_runs(stores, stack)
    for record in records:
        if record["state"] != "cleanup" and record["backend"] == "local":
            reason = abandoned_run(record, stale_after)
            if reason:
                findings.append(Finding(f"run {record['run_id']}", f"abandoned: {reason}",
                                        "stop its worker and end it"))  # fmt: skip
    for state in job_locks(stores.results, stack):
        reason = abandoned_lock(stores.results, stack, state)
        if reason:
            findings.append(Finding(state.key, f"abandoned lock: {reason}", "remove it"))
    return findings


def _versioned(
    pointer: Pointer,
    versions: list[str],
    verify: Callable[[str], None],
    repair: bool,
) -> list[Finding]:
    """Findings for one pointer and its versions (a model's or a dataset's)."""
    state = pointer.state()
    problem = state.damage
    if problem is None and state.version is not None:
        try:
            verify(state.version)
        except UserError as exc:
            problem = f"latest.json names version {state.version}, which fails: {exc}"
    if problem is None:
        return []
    if not repair:
        return [Finding(pointer.key, problem, "point at the newest version that verifies")]
    good = None
    for version in reversed(versions):
        try:
            verify(version)
        except UserError:
            continue
        good = version
        break
    pointer.move(good, f"doctor: {problem[:200]}")
    done = f"now points at {good}" if good else "now points at no version (none verifies)"
    return [Finding(pointer.key, problem, done, True)]

