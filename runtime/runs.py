"""Run records: the state machine, the per-job lock, heartbeats, logs and metrics.

A run lives at ``<stack>/runs/<run_id>/`` in the results store: ``state.json`` (the record),
``training.json`` (metrics), ``logs/`` and ``checkpoints/``. The state machine (GUIDE.md §1)::

    initialization -> data_sync -> training -> results_sync -> cleanup
    any of the first four -> failed;  training -> killed;  failed, killed -> cleanup

Every change to ``state.json`` is a conditional write on its etag (read, change, write; reread
and reapply when another writer got there first), and each transition is validated against the
state actually stored. Each write carries a token kept in the record's ``writes``, so a retry
after a lost response sees that its own write landed instead of reapplying it.

``<stack>/locks/<job>.json`` is created with ``if_none_match`` so a job has at most one active
run; it names its run, and is released only by its owner with a conditional delete. A lock is
*abandoned* when it is damaged, when its run has ended or its record is damaged, or when it
names a run with no record and the process that took it is gone from this host or it is older
than :data:`LOCK_GRACE_SECONDS`: a new run takes an abandoned lock over, and `stnlp runs
kill` / `runs sweep` / `doctor --repair` clear one.

A run that published a model moved the model's pointer only while it held the lock in
``results_sync`` (see :func:`stnlp.runtime.backends.local.publish_outcome`); :meth:`Run.fail`
keeps record and pointer in agreement: a run whose version is already the latest is recorded
``succeeded``, and a failed run's version is retracted from the pointer.
:meth:`Run.cleanup` always ends in ``cleanup``, releases the lock and never raises.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stnlp.common.errors import ConflictError, UserError
from stnlp.common.names import EXPIRE_TAG
from stnlp.runtime import logs
from stnlp.runtime.procs import ProcessRef
from stnlp.runtime.store import (
    DamagedObjectError,
    NotFoundError,
    ObjectStore,
    Stores,
    encode_json,
    read_json,
)

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
LOCK_GRACE_SECONDS = 60.0
"""How long a lock may name a run that has no record yet (the moment between taking the lock
and writing the record) before it counts as abandoned."""
WRITE_HISTORY = 16
STOP_GRACE_SECONDS = 10.0
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_ENDED = ("failed", "killed", "cleanup")


class InvalidTransition(UserError):
    """A transition the state machine does not allow."""


class JobLockedError(UserError):
    """The job already has an active run; ``holder`` is its run id."""

    def __init__(self, message: str, holder: str | None):
        super().__init__(message)
        self.holder = holder


class NoRunError(UserError):
    """The stack has no record of that run."""


class FencedError(UserError):
    """A run lost the right to publish: it no longer holds its lock in ``results_sync``."""


def now() -> str:
    """The current UTC time, ISO 8601."""
    return datetime.now(UTC).isoformat()


def new_run_id(job: str) -> str:
    """A unique run id that sorts by start time: ``<job>-<UTC timestamp>-<6 hex>``."""
    return f"{job}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def check_run_id(run_id: Any) -> str:
    """``run_id`` if it is a plausible run id (no ``/``, no ``..``); :class:`UserError` if not."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id) or ".." in run_id:
        raise UserError(f"invalid run id {str(run_id)[:80]!r}")
    return run_id


def run_prefix(stack: str, run_id: str) -> str:
    """The results-store folder of one run."""
    return f"{stack}/runs/{run_id}"


def _record_key(stack: str, run_id: str) -> str:
    return f"{run_prefix(stack, check_run_id(run_id))}/state.json"


def check_transition(run_id: str, current: str, target: str) -> None:
    """Raise :class:`InvalidTransition` unless ``current -> target`` is allowed."""
    if target not in TRANSITIONS:
        raise InvalidTransition(f"run {run_id}: unknown state {target!r}")
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing (terminal)"
        raise InvalidTransition(
            f"run {run_id}: cannot go from {current!r} to {target!r} (allowed: {allowed})"
        )


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_RECORD_TEXT = ("run_id", "job", "backend", "state")
_RECORD_TIMES = ("created", "updated", "heartbeat")


def parse_record(value: Any, what: str, run_id: str | None = None) -> dict[str, Any]:
    """A run record read from ``what``, checked; :class:`DamagedObjectError` naming the field.

    Optional fields of the wrong type (``writes``) are dropped rather than trusted.
    """

    def damaged(why: str) -> DamagedObjectError:
        return DamagedObjectError(f"{what}: {why}")

    if not isinstance(value, dict):
        raise damaged(f"expected a run record (a JSON object), got {type(value).__name__}")
    for field in _RECORD_TEXT:
        if not isinstance(value.get(field), str) or not value[field]:
            raise damaged(f"field {field!r} is missing or not text")
    if value["state"] not in TRANSITIONS:
        raise damaged(f"field 'state' is {value['state'][:40]!r}, not a run state")
    if run_id is not None and value["run_id"] != run_id:
        raise damaged(f"the record names run {value['run_id'][:80]!r}, not {run_id!r}")
    for field in _RECORD_TIMES:
        if _parse_time(value.get(field)) is None:
            raise damaged(f"field {field!r} is missing or not an ISO 8601 time")
    if not isinstance(value.get("history"), list):
        raise damaged("field 'history' is missing or not a list")
    if value.get("result") not in (None, *RESULTS.values()):
        raise damaged(f"field 'result' is {str(value.get('result'))[:40]!r}")
    writes = value.get("writes")
    if not (isinstance(writes, list) and all(isinstance(w, str) for w in writes)):
        value["writes"] = []
    return value


def _read_record(store: ObjectStore, stack: str, run_id: str) -> tuple[dict[str, Any], str]:
    key = _record_key(stack, run_id)
    value, etag = read_json(store, key)
    return parse_record(value, f"{store.description}/{key}", run_id), etag


# --- the job lock -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockState:
    """A lock object as stored: its holder (``None`` when damaged), body, etag and damage."""

    key: str
    etag: str
    body: dict[str, Any] | None
    damage: str | None = None

    @property
    def holder(self) -> str | None:
        """The run id the lock names."""
        return self.body["run_id"] if self.body else None

    def age(self) -> float:
        """Seconds since the lock was taken (infinite when its time is unreadable)."""
        taken = _parse_time((self.body or {}).get("acquired"))
        return (datetime.now(UTC) - taken).total_seconds() if taken else float("inf")


def parse_lock(value: Any) -> str | None:
    """Why ``value`` is not a lock body, or ``None`` when it is one."""
    if not isinstance(value, dict):
        return f"expected a JSON object, got {type(value).__name__}"
    holder = value.get("run_id")
    if not isinstance(holder, str) or not _RUN_ID.match(holder) or ".." in holder:
        return "no valid 'run_id'"
    return None


def _lock_state(store: ObjectStore, key: str) -> LockState | None:
    try:
        value, etag = read_json(store, key)
    except NotFoundError:
        return None
    except DamagedObjectError as exc:
        return LockState(key, store.etag(key) or "", None, str(exc))
    damage = parse_lock(value)
    if damage:
        return LockState(key, etag, None, f"{store.description}/{key}: {damage}")
    return LockState(key, etag, value)


class JobLock:
    """The lock making a job's runs exclusive: ``<stack>/locks/<job>.json``."""

    def __init__(self, store: ObjectStore, stack: str, job: str):
        self.store = store
        self.stack = stack
        self.job = job
        self.key = f"{stack}/locks/{job}.json"

    def state(self) -> LockState | None:
        """The lock as stored, or ``None`` when the job is not locked."""
        return _lock_state(self.store, self.key)

    def holder(self) -> str | None:
        """The run id holding the lock, or ``None`` (not locked, or a damaged lock)."""
        state = self.state()
        return state.holder if state else None

    def acquire(self, run_id: str) -> None:
        """Take the lock for ``run_id``; :class:`JobLockedError` naming the holder if taken.

        An abandoned lock (see the module docstring) is taken over with a conditional replace.
        """
        token = uuid.uuid4().hex
        body = {
            "run_id": run_id,
            "job": self.job,
            "acquired": now(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "owner": ProcessRef.current().to_record(),
            "token": token,
        }
        state = None
        for _ in range(3):
            try:
                self.store.put(self.key, encode_json(body), if_none_match=True)
                return
            except ConflictError:
                state = self.state()
            if state is None:
                continue  # released in between: try again
            if state.body and state.body.get("token") == token:
                return  # our write landed; its response was lost
            reason = abandoned_lock(self.store, self.stack, state)
            if reason is None:
                break
            try:
                self.store.put(self.key, encode_json(body), if_match=state.etag)
            except ConflictError:
                continue
            logs.event(log, "abandoned lock taken over", job=self.job, holder=state.holder,
                       run_id=run_id, reason=reason)  # fmt: skip
            return
        holder = state.holder if state else None
        raise JobLockedError(
            f"job {self.job!r} already has an active run {holder} (lock {self.key}); "
            f"wait for it to finish or stop it with `stnlp runs kill {holder}`",
            holder,
        )

    def release(self, run_id: str) -> bool:
        """Remove the lock if ``run_id`` holds it (a conditional delete); return whether it did."""
        state = self.state()
        if state is None or state.holder != run_id:
            return False
        try:
            self.store.delete(self.key, if_match=state.etag)
        except ConflictError:
            return False  # taken over in between: not ours any more
        return True


def abandoned_lock(store: ObjectStore, stack: str, state: LockState) -> str | None:
    """Why the lock ``state`` is abandoned, or ``None`` while its run may still be active."""
    if state.damage:
        return f"the lock is damaged ({state.damage})"
    holder = state.holder
    try:
        record, _ = _read_record(store, stack, holder)
    except NotFoundError:
        owner = ProcessRef.from_record(state.body.get("owner"))
        if owner is not None and owner.alive() is False:
            return f"run {holder} has no record and the process that took the lock is gone"
        if state.age() > LOCK_GRACE_SECONDS:
            return f"run {holder} has no record (lock taken {state.body.get('acquired')})"
        return None
    except DamagedObjectError as exc:
        return f"the record of run {holder} is damaged ({exc})"
    if record["state"] == "cleanup":
        return f"run {holder} has ended ({record.get('result')})"
    return None


def job_locks(store: ObjectStore, stack: str) -> list[LockState]:
    """Every lock object of ``stack`` (damaged ones included)."""
    prefix = f"{stack}/locks/"
    states = []
    for key in store.list(prefix):
        if key.endswith(".json") and "/" not in key[len(prefix) :]:
            state = _lock_state(store, key)
            if state is not None:
                states.append(state)
    return states


def clear_abandoned_lock(store: ObjectStore, stack: str, state: LockState) -> str | None:
    """Delete the lock ``state`` if it is abandoned (conditionally); return why, or ``None``."""
    reason = abandoned_lock(store, stack, state)
    if reason is None:
        return None
    try:
        store.delete(state.key, if_match=state.etag)
    except ConflictError:
        return None
    logs.event(log, "abandoned lock cleared", key=state.key, reason=reason)
    return reason


# --- the run ------------------------------------------------------------------------------------


class Run:
    """One run's record in the results store, changed only through validated transitions."""

    def __init__(self, stores: Stores, stack: str, record: dict[str, Any], etag: str):
        self.stores = stores
        self.stack = stack
        self.record = record
        self._etag = etag
        self._mutex = threading.RLock()

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
        run_id = check_run_id(run_id or new_run_id(job))
        lock = JobLock(stores.results, stack, job)
        lock.acquire(run_id)
        started = now()
        token = uuid.uuid4().hex
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
            "writes": [token],
        }
        key = _record_key(stack, run_id)
        try:
            etag = stores.results.put(key, encode_json(record), if_none_match=True)
        except ConflictError as exc:
            etag = _own_record(stores.results, stack, run_id, token)
            if etag is None:
                _retrying(lambda: lock.release(run_id), run_id)
                raise UserError(f"run {run_id} already exists in stack {stack!r}") from exc
        except BaseException:
            _retrying(lambda: lock.release(run_id), run_id)
            raise
        logs.event(log, "run started", run_id=run_id, job=job, backend=backend)
        return cls(stores, stack, record, etag)

    def reload(self) -> dict[str, Any]:
        """Read the stored record again (:class:`DamagedObjectError` if it is damaged)."""
        with self._mutex:
            self.record, self._etag = _read_record(self.stores.results, self.stack, self.run_id)
            return self.record

    def _update(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        token = uuid.uuid4().hex
        with self._mutex:
            for _ in range(UPDATE_ATTEMPTS):
                record = copy.deepcopy(self.record)
                change(record)
                record["updated"] = now()
                record["writes"] = [*record.get("writes", [])[-(WRITE_HISTORY - 1) :], token]
                key = f"{self.prefix}/state.json"
                try:
                    self._etag = self.stores.results.put(
                        key, encode_json(record), if_match=self._etag
                    )
                except ConflictError:
                    self.reload()
                    if token in self.record["writes"]:
                        return self.record  # our write landed; its response was lost
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
            from stnlp.runtime.notify import notify_run_end

            notify_run_end(self.stores, self.stack, record)
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

    @contextlib.contextmanager
    def keep_alive(self, interval: float) -> Iterator[None]:
        """Heartbeat every ``interval`` seconds from a thread while the block runs."""
        done = threading.Event()

        def beat() -> None:
            while not done.wait(interval):
                try:
                    self.heartbeat()
                except Exception as exc:  # the block's own writes will report a real problem
                    logs.event(log, "heartbeat failed", logging.WARNING, run_id=self.run_id,
                               error=f"{type(exc).__name__}: {exc}")  # fmt: skip

        thread = threading.Thread(target=beat, name=f"heartbeat-{self.run_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def claim_publish(self, version: str, **fields: Any) -> None:
        """Record ``version`` as the one this run publishes, while it may: the fence.

        Raises :class:`FencedError` unless the stored record is in ``results_sync`` and the
        job lock still names this run.
        """

        def change(record: dict[str, Any]) -> None:
            if record["state"] != "results_sync":
                raise FencedError(
                    f"run {self.run_id} is {record['state']!r}, not 'results_sync': "
                    f"version {version} is not published"
                )
            record.update(fields, model_version=version, heartbeat=now())

        if self.lock.holder() != self.run_id:
            raise FencedError(f"run {self.run_id} no longer holds the lock of its job")
        self._update(change)

    def settle_publish(self) -> bool:
        """After the pointer moved: True if this run may keep it, else retract it (False).

        It may while it still holds its lock in ``results_sync``, or when whoever ended it saw
        the pointer and recorded it ``succeeded`` (see :meth:`fail`).
        """
        self.reload()
        holding = self.state == "results_sync" and self.lock.holder() == self.run_id
        if holding or self.record.get("result") == "succeeded":
            return True
        self._retract(f"run {self.run_id} ended ({self.state}) while publishing")
        return False

    def _registry(self):
        from stnlp.runtime.registry import ModelRegistry

        return ModelRegistry(self.stores.models)

    def published(self) -> bool:
        """True when the model pointer names the version this run claimed to publish."""
        model, version = self.record.get("model"), self.record.get("model_version")
        if not (isinstance(model, str) and isinstance(version, str)):
            return False
        try:
            return self._registry().pointer_state(model).version == version
        except UserError:
            return False

    def _retract(self, reason: str) -> None:
        model, version = self.record.get("model"), self.record.get("model_version")
        claimed = isinstance(model, str) and isinstance(version, str)
        if claimed and self._registry().retract(model, version, reason):
            logs.event(log, "published version retracted", logging.WARNING,
                       run_id=self.run_id, model=model, version=version)  # fmt: skip

    def upload_logs(self, local_log: Path) -> None:
        """Upload a log file to ``logs/<name>``; call it as often as needed while running."""
        if local_log.is_file():
            self.stores.results.upload_file(
                f"{self.prefix}/logs/{local_log.name}", local_log, tags=EXPIRE_LOGS
            )

    def write_metrics(self, records: list[dict[str, Any]]) -> None:
        """Write the metrics records to ``training.json``."""
        self.stores.results.put(f"{self.prefix}/training.json", encode_json(records))

    def upload_checkpoints(self, folder: Path) -> list[str]:
        """Upload changed files of ``folder`` to ``checkpoints/``; return the keys uploaded."""
        if not folder.is_dir():
            return []
        return self.stores.results.sync_up(
            folder, f"{self.prefix}/checkpoints", tags=EXPIRE_CHECKPOINTS, live=True
        )

    def fail(self, error: str, *, killed: bool = False) -> None:
        """Move to ``killed`` (when asked and allowed) or ``failed``, if not there already.

        Decided on the stored record. A run in ``results_sync`` whose claimed version is
        already the model's latest has succeeded: it goes to ``cleanup`` instead. Otherwise,
        once failed, a pointer that names its version (a publish racing this call) is retracted.
        """
        for _ in range(3):
            self.reload()
            if self.state in _ENDED:
                return
            if self.state == "results_sync" and self.published():
                logs.event(log, "run had published; recorded as succeeded", run_id=self.run_id,
                           ignored_error=error)  # fmt: skip
                self.transition("cleanup")
                return
            target = "killed" if killed and self.state == "training" else "failed"
            try:
                self.transition(target, error=error)
            except InvalidTransition:
                continue  # the state moved on in between: decide again
            self._retract(f"run {self.run_id} {target}: {error}")
            return
        raise ConflictError(f"run {self.run_id}: its state kept changing while failing it")

    def _finish(self) -> None:
        self.reload()
        if self.state == "cleanup":
            return
        if self.state not in RESULTS:
            self.fail(f"interrupted during {self.state}")
            self.reload()
        if self.state != "cleanup":
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


def _own_record(store: ObjectStore, stack: str, run_id: str, token: str) -> str | None:
    """The etag of ``run_id``'s record if it holds the write ``token``, else ``None``."""
    try:
        record, etag = _read_record(store, stack, run_id)
    except (NotFoundError, DamagedObjectError):
        return None
    return etag if token in record["writes"] else None


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


def load_run(stores: Stores, stack: str, run_id: str) -> Run:
    """The run ``run_id`` of ``stack``; :class:`UserError` when there is none.

    A damaged record raises :class:`stnlp.runtime.store.DamagedObjectError` naming it.
    """
    try:
        record, etag = _read_record(stores.results, stack, run_id)
    except NotFoundError as exc:
        raise NoRunError(f"no run {run_id!r} in stack {stack!r}") from exc
    return Run(stores, stack, record, etag)


def scan_runs(
    stores: Stores, stack: str, job: str | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Run records of ``stack`` (optionally one job's), newest first, and the damage found.

    A damaged record is left out and reported as one line naming its object.
    """
    records, damaged = [], []
    prefix = f"{stack}/runs/"
    for key in stores.results.list(prefix):
        parts = key[len(prefix) :].split("/")
        if len(parts) != 2 or parts[1] != "state.json":
            continue
        try:
            value, _ = read_json(stores.results, key)
            record = parse_record(value, f"{stores.results.description}/{key}", parts[0])
        except NotFoundError:
            continue  # deleted since it was listed
        except DamagedObjectError as exc:
            damaged.append(str(exc))
            continue
        if job is None or record["job"] == job:
            records.append(record)
    return sorted(records, key=lambda r: r["created"], reverse=True), damaged


def list_runs(stores: Stores, stack: str, job: str | None = None) -> list[dict[str, Any]]:
    """Run records of ``stack`` (optionally one job's), newest first; damaged ones are logged
    and left out (:func:`scan_runs` returns them)."""
    records, damaged = scan_runs(stores, stack, job)
    for line in damaged:
        logs.event(log, "damaged run record", logging.WARNING, reason=line)
    return records


def is_stale(record: dict[str, Any], stale_after: float = STALE_AFTER_SECONDS) -> bool:
    """True when the run's last heartbeat is older than ``stale_after`` seconds (or unreadable)."""
    beat = _parse_time(record.get("heartbeat"))
    return beat is None or (datetime.now(UTC) - beat).total_seconds() > stale_after


def abandoned_run(record: dict[str, Any], stale_after: float = STALE_AFTER_SECONDS) -> str | None:
    """Why nobody is left to carry a run on, or ``None`` while someone may be.

    A run whose supervisor (the process recorded as ``supervisor``) runs on this host is judged
    by that process: gone means abandoned, alive means carried on, however slow. Any other run
    is abandoned when its heartbeat is older than ``stale_after`` seconds.
    """
    supervisor = ProcessRef.from_record(record.get("supervisor"))
    alive = supervisor.alive() if supervisor is not None else None
    if alive is False:
        return f"its supervisor (pid {supervisor.pid} on {supervisor.host}) is gone"
    if alive is None and is_stale(record, stale_after):
        return f"no heartbeat since {record.get('heartbeat')}"
    return None


def stop_worker(record: dict[str, Any], grace: float = STOP_GRACE_SECONDS) -> str:
    """Stop the run's training process when it still runs on this host; say what happened.

    Raises :class:`UserError` when it is alive and could not be stopped, so that the run is
    never ended (and its lock never freed) while its worker trains.
    """
    worker = ProcessRef.from_record(record.get("worker"))
    if worker is None:
        return "no worker recorded"
    alive = worker.alive()
    if alive is None:
        return f"worker pid {worker.pid} is on {worker.host}"
    if not alive:
        return f"worker pid {worker.pid} had exited"
    if not worker.stop_group(grace):
        raise UserError(f"run {record['run_id']}: worker pid {worker.pid} would not stop")
    return f"worker pid {worker.pid} stopped"


def end_abandoned(run: Run, reason: str) -> str:
    """Stop ``run``'s worker if it lives here, then record the run ended and clean it up."""
    stopped = stop_worker(run.record)
    run.fail(f"{reason}; {stopped}", killed=run.state == "training")
    run.cleanup()
    return stopped


def request_kill(
    stores: Stores, stack: str, run_id: str, stale_after: float = STALE_AFTER_SECONDS
) -> Run:
    """Ask the backend running ``run_id`` to stop it (``kill_requested`` in the record).

    A run nobody is left to act on (see :func:`abandoned_run`) is ended here: its worker is
    stopped if it still runs on this host, then the run goes to ``killed``/``failed`` and
    ``cleanup``, and its lock is released.
    """
    run = load_run(stores, stack, run_id)
    if run.state == "cleanup":
        raise UserError(f"run {run_id} has already ended ({run.record.get('result')})")

    def ask(record: dict[str, Any]) -> None:
        record["kill_requested"] = True
        record["kill_requested_by"] = f"{socket.gethostname()}:{os.getpid()}"

    run._update(ask)
    reason = abandoned_run(run.record, stale_after)
    if reason is not None:
        end_abandoned(run, f"killed by request; {reason}")
    return run


def release_lock_of(stores: Stores, stack: str, run_id: str) -> str | None:
    """For a run with no readable record: clear the lock naming it if it is abandoned.

    Returns what was done, ``None`` when no lock names ``run_id``; raises :class:`UserError`
    when the lock is too young to call abandoned (the run may be starting).
    """
    for state in job_locks(stores.results, stack):
        if state.holder != run_id:
            continue
        reason = clear_abandoned_lock(stores.results, stack, state)
        if reason is None:
            raise UserError(
                f"run {run_id} is starting (its lock {state.key} was taken "
                f"{state.age():.0f}s ago and it has no record yet); try again in a minute"
            )
        return f"released lock {state.key}: {reason}"
    return None


def sweep_runs(
    stores: Stores,
    stack: str,
    stale_after: float = STALE_AFTER_SECONDS,
    backends: tuple[str, ...] = ("local",),
) -> list[str]:
    """End ``backends``' runs nobody carries on, and clear abandoned locks; say what was done.

    Cloud runs are left to their backends' sweeps (instances and jobs need their APIs).
    """
    done = []
    records, _ = scan_runs(stores, stack)
    for record in records:
        if record["state"] == "cleanup" or record["backend"] not in backends:
            continue
        reason = abandoned_run(record, stale_after)
        if reason is None:
            continue
        run = load_run(stores, stack, record["run_id"])
        stopped = end_abandoned(run, f"swept: {reason}")
        done.append(f"ended run {run.run_id} ({reason}; {stopped})")
    for state in job_locks(stores.results, stack):
        reason = clear_abandoned_lock(stores.results, stack, state)
        if reason:
            done.append(f"released lock {state.key}: {reason}")
    return done
