"""Run records: the state machine, the per-job lock, heartbeats, logs and metrics.

A run lives at ``<stack>/runs/<run_id>/`` in the results store: ``state.json`` (the record),
``training.json`` (metrics), ``logs/`` and ``checkpoints/``. The state machine (GUIDE.md §1)::

    initialization -> data_sync -> training -> results_sync -> cleanup
    any of the first four -> failed;  training -> killed;  failed, killed -> cleanup

Every change to ``state.json`` is a conditional write on its etag (read, change, write; reread
and reapply when another writer got there first), and each transition is validated against the
state actually stored. ``<stack>/locks/<job>.json`` is created with ``if_none_match`` so a job
has at most one active run. :meth:`Run.cleanup` always ends in ``cleanup``, releases the lock
and never raises.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stnlp.common.errors import ConflictError, UserError
from stnlp.common.names import EXPIRE_TAG
from stnlp.runtime import logs
from stnlp.runtime.store import NotFoundError, ObjectStore, Stores

log = logging.getLogger(__name__)

TRANSITIONS: dict[str, frozenset[str]] = {
    "initialization": frozenset({"data_sync", "failed"}),
    "data_sync": frozenset({"training", "failed"}),
    "training": frozenset({"results_sync", "failed", "killed"}),
    "results_sync": frozenset({"cleanup", "failed"}),
    "failed": frozenset({"cleanup"}),
    "killed": frozenset({"cleanup"}),
    "cleanup": frozenset(),
}
STATES = tuple(TRANSITIONS)
RESULTS = {"results_sync": "succeeded", "failed": "failed", "killed": "killed"}
UPDATE_ATTEMPTS = 20
# Object tags the stack's lifecycle rules expire by (see infra/storage.py).
EXPIRE_LOGS = {EXPIRE_TAG: "logs"}
EXPIRE_CHECKPOINTS = {EXPIRE_TAG: "checkpoints"}
CLEANUP_ATTEMPTS = 5
CLEANUP_BACKOFF = 0.05
STALE_AFTER_SECONDS = 300.0


class InvalidTransition(UserError):
    """A transition the state machine does not allow."""


class JobLockedError(UserError):
    """The job already has an active run; ``holder`` is its run id."""

    def __init__(self, message: str, holder: str | None):
        super().__init__(message)
        self.holder = holder


def now() -> str:
    """The current UTC time, ISO 8601."""
    return datetime.now(UTC).isoformat()


def new_run_id(job: str) -> str:
    """A unique run id that sorts by start time: ``<job>-<UTC timestamp>-<6 hex>``."""
    return f"{job}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def run_prefix(stack: str, run_id: str) -> str:
    """The results-store folder of one run."""
    return f"{stack}/runs/{run_id}"


def check_transition(run_id: str, current: str, target: str) -> None:
    """Raise :class:`InvalidTransition` unless ``current -> target`` is allowed."""
    if target not in TRANSITIONS:
        raise InvalidTransition(f"run {run_id}: unknown state {target!r}")
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing (terminal)"
        raise InvalidTransition(
            f"run {run_id}: cannot go from {current!r} to {target!r} (allowed: {allowed})"
        )


class JobLock:
    """The lock making a job's runs exclusive: ``<stack>/locks/<job>.json``."""

    def __init__(self, store: ObjectStore, stack: str, job: str):
        self.store = store
        self.stack = stack
        self.job = job
        self.key = f"{stack}/locks/{job}.json"

    def holder(self) -> str | None:
        """The run id holding the lock, or ``None``."""
        try:
            return json.loads(self.store.get(self.key))["run_id"]
        except NotFoundError:
            return None

    def acquire(self, run_id: str) -> None:
        """Take the lock for ``run_id``; :class:`JobLockedError` naming the holder if taken.

        A lock left behind by a run that already reached ``cleanup`` (its release failed) is
        taken over with a conditional replace.
        """
        body = {"run_id": run_id, "job": self.job, "acquired": now(), "host": socket.gethostname()}
        try:
            self.store.put(self.key, json.dumps(body).encode(), if_none_match=True)
            return
        except ConflictError:
            pass
        try:
            data, etag = self.store.get_with_etag(self.key)
            holder = json.loads(data).get("run_id")
            if self._ended(holder):
                self.store.put(self.key, json.dumps(body).encode(), if_match=etag)
                logs.event(log, "stale lock taken over", job=self.job, holder=holder, run_id=run_id)
                return
        except (NotFoundError, ConflictError):
            holder = self.holder()
        raise JobLockedError(
            f"job {self.job!r} already has an active run {holder} (lock {self.key}); "
            f"wait for it to finish or stop it with `stnlp runs kill {holder}`",
            holder,
        )

    def _ended(self, holder: str | None) -> bool:
        try:
            record = json.loads(self.store.get(f"{run_prefix(self.stack, holder)}/state.json"))
        except NotFoundError:
            return False
        return record.get("state") == "cleanup"

    def release(self, run_id: str) -> bool:
        """Remove the lock if ``run_id`` holds it; return whether it did."""
        try:
            data, etag = self.store.get_with_etag(self.key)
        except NotFoundError:
            return False
        if json.loads(data).get("run_id") != run_id:
            return False
        if self.store.etag(self.key) != etag:
            return False
        self.store.delete(self.key)
        return True


class Run:
    """One run's record in the results store, changed only through validated transitions."""

    def __init__(self, stores: Stores, stack: str, record: dict[str, Any], etag: str):
        self.stores = stores
        self.stack = stack
        self.record = record
        self._etag = etag

    @property
    def run_id(self) -> str:
        """The run id."""
        return self.record["run_id"]

    @property
    def state(self) -> str:
        """The state last read or written."""
        return self.record["state"]

    @property
    def prefix(self) -> str:
        """The run's folder in the results store."""
        return run_prefix(self.stack, self.run_id)

    @property
    def lock(self) -> JobLock:
        """The job lock this run takes."""
        return JobLock(self.stores.results, self.stack, self.record["job"])

    @classmethod
    def start(
        cls,
        stores: Stores,
        stack: str,
        job: str,
        backend: str,
        run_id: str | None = None,
        **fields: Any,
    ) -> Run:
        """Take the job's lock and create the run record in ``initialization``.

        Raises :class:`JobLockedError` when the job already has an active run.
        """
        run_id = run_id or new_run_id(job)
        lock = JobLock(stores.results, stack, job)
        lock.acquire(run_id)
        started = now()
        record = {
            "run_id": run_id,
            "stack": stack,
            "job": job,
            "backend": backend,
            "state": "initialization",
            "result": None,
            "error": None,
            "instance_id": None,
            "job_id": None,
            "kill_requested": False,
            "created": started,
            "updated": started,
            "heartbeat": started,
            "history": [{"state": "initialization", "time": started}],
            **fields,
        }
        key = f"{run_prefix(stack, run_id)}/state.json"
        try:
            etag = stores.results.put(key, _encode(record), if_none_match=True)
        except ConflictError as exc:
            _retrying(lambda: lock.release(run_id), run_id)
            raise UserError(f"run {run_id} already exists in stack {stack!r}") from exc
        except BaseException:
            _retrying(lambda: lock.release(run_id), run_id)
            raise
        logs.event(log, "run started", run_id=run_id, job=job, backend=backend)
        return cls(stores, stack, record, etag)

    def reload(self) -> dict[str, Any]:
        """Read the stored record again."""
        data, self._etag = self.stores.results.get_with_etag(f"{self.prefix}/state.json")
        self.record = json.loads(data)
        return self.record

    def _update(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        for _ in range(UPDATE_ATTEMPTS):
            record = copy.deepcopy(self.record)
            change(record)
            record["updated"] = now()
            try:
                key = f"{self.prefix}/state.json"
                self._etag = self.stores.results.put(key, _encode(record), if_match=self._etag)
            except ConflictError:
                self.reload()
                continue
            self.record = record
            return record
        raise ConflictError(f"run {self.run_id}: state.json kept changing; gave up")

    def transition(self, state: str, **fields: Any) -> dict[str, Any]:
        """Move to ``state`` (validated against the stored state), recording ``fields``.

        ``error``, ``instance_id``, ``job_id`` and any other field are stored in the record;
        ``error`` also goes into the history entry. Entering ``cleanup`` records the ``result``
        (``succeeded``, ``failed`` or ``killed``) and releases the job lock.
        """

        def change(record: dict[str, Any]) -> None:
            check_transition(self.run_id, record["state"], state)
            entry = {"state": state, "time": now()}
            if fields.get("error"):
                entry["error"] = fields["error"]
            if state == "cleanup":
                record["result"] = RESULTS[record["state"]]
            record.update(fields, state=state)
            record["history"].append(entry)

        record = self._update(change)
        logs.event(log, "run state", run_id=self.run_id, state=state)
        if state == "cleanup":
            _retrying(lambda: self.lock.release(self.run_id), self.run_id)
        return record

    def heartbeat(self, **fields: Any) -> dict[str, Any]:
        """Record that the run is alive (and any ``fields``); return the record.

        The record may carry ``kill_requested`` set by `stnlp runs kill`.
        """

        def change(record: dict[str, Any]) -> None:
            if record["state"] == "cleanup":
                raise InvalidTransition(f"run {self.run_id} has ended; no more heartbeats")
            record.update(fields, heartbeat=now())

        return self._update(change)

    def upload_logs(self, local_log: Path) -> None:
        """Upload a log file to ``logs/<name>``; call it as often as needed while running."""
        if local_log.is_file():
            self.stores.results.upload_file(
                f"{self.prefix}/logs/{local_log.name}", local_log, tags=EXPIRE_LOGS
            )

    def write_metrics(self, records: list[dict[str, Any]]) -> None:
        """Write the metrics records to ``training.json``."""
        body = json.dumps(records, indent=1).encode()
        self.stores.results.put(f"{self.prefix}/training.json", body)

    def upload_checkpoints(self, folder: Path) -> list[str]:
        """Upload changed files of ``folder`` to ``checkpoints/``; return the keys uploaded."""
        if not folder.is_dir():
            return []
        return self.stores.results.sync_up(
            folder, f"{self.prefix}/checkpoints", tags=EXPIRE_CHECKPOINTS
        )

    def fail(self, error: str, *, killed: bool = False) -> None:
        """Move to ``killed`` (when asked and allowed) or ``failed``, if not there already."""
        target = "killed" if killed and self.state == "training" else "failed"
        if self.state in ("failed", "killed", "cleanup"):
            return
        self.transition(target, error=error)

    def _finish(self) -> None:
        self.reload()
        if self.state == "cleanup":
            return
        if self.state not in RESULTS:
            self.transition("failed", error=f"interrupted during {self.state}")
        self.transition("cleanup")

    def cleanup(self) -> None:
        """End in ``cleanup`` and release the job lock. Retries store errors; never raises."""
        _retrying(self._finish, self.run_id)
        _retrying(lambda: self.lock.release(self.run_id), self.run_id)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None:
            try:
                interrupted = issubclass(exc_type, KeyboardInterrupt | SystemExit)
                self.fail(f"{exc_type.__name__}: {exc}", killed=interrupted)
            except Exception as inner:  # the original error matters more
                logs.event(
                    log,
                    "could not record failure",
                    logging.WARNING,
                    run_id=self.run_id,
                    error=str(inner),
                )
        self.cleanup()


def _retrying(step: Callable[[], Any], run_id: str) -> None:
    """Run a cleanup step, retrying errors with backoff; log and give up without raising."""
    for attempt in range(1, CLEANUP_ATTEMPTS + 1):
        try:
            step()
            return
        except Exception as exc:  # cleanup must not raise: log and retry
            logs.event(
                log,
                "cleanup step failed",
                logging.WARNING,
                run_id=run_id,
                attempt=attempt,
                error=f"{type(exc).__name__}: {exc}",
            )
            time.sleep(CLEANUP_BACKOFF * 2**attempt)


def _encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, indent=1, sort_keys=True).encode()


def load_run(stores: Stores, stack: str, run_id: str) -> Run:
    """The run ``run_id`` of ``stack``; :class:`UserError` when there is none."""
    key = f"{run_prefix(stack, run_id)}/state.json"
    try:
        data, etag = stores.results.get_with_etag(key)
    except NotFoundError as exc:
        raise UserError(f"no run {run_id!r} in stack {stack!r}") from exc
    return Run(stores, stack, json.loads(data), etag)


def list_runs(stores: Stores, stack: str, job: str | None = None) -> list[dict[str, Any]]:
    """Run records of ``stack`` (optionally one job's), newest first."""
    records = []
    for key in stores.results.list(f"{stack}/runs/"):
        if key.endswith("/state.json") and key.count("/") == 3:
            record = json.loads(stores.results.get(key))
            if job is None or record.get("job") == job:
                records.append(record)
    return sorted(records, key=lambda r: r["created"], reverse=True)


def is_stale(record: dict[str, Any], stale_after: float = STALE_AFTER_SECONDS) -> bool:
    """True when the run's last heartbeat is older than ``stale_after`` seconds."""
    beat = datetime.fromisoformat(record["heartbeat"])
    return (datetime.now(UTC) - beat).total_seconds() > stale_after


def request_kill(
    stores: Stores, stack: str, run_id: str, stale_after: float = STALE_AFTER_SECONDS
) -> Run:
    """Ask the backend running ``run_id`` to stop it (``kill_requested`` in the record).

    A run whose heartbeat is older than ``stale_after`` has nobody left to act on the request:
    it is ended here (``killed``/``failed`` then ``cleanup``, lock released).
    """
    run = load_run(stores, stack, run_id)
    if run.state == "cleanup":
        raise UserError(f"run {run_id} has already ended ({run.record.get('result')})")

    def ask(record: dict[str, Any]) -> None:
        record["kill_requested"] = True
        record["kill_requested_by"] = f"{socket.gethostname()}:{os.getpid()}"

    run._update(ask)
    if is_stale(run.record, stale_after):
        run.fail("killed by request; the run had stopped sending heartbeats", killed=True)
        run.cleanup()
    return run
