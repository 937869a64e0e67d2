"""A hypothesis state machine drives runs through random transitions and injected faults.

Checked after every step: each stored record holds a known state, its history follows the
transition table and ends at the stored state, and at most one run of a job holds its lock.
At the end every run is cleaned up: all end in ``cleanup`` and no lock is left.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from stnlp.runtime import runs
from stnlp.runtime.runs import STATES, TRANSITIONS, InvalidTransition, JobLockedError, Run, load_run
from stnlp.runtime.store import ObjectStore, Stores

JOBS = ("job-a", "job-b")


class InjectedFault(OSError):
    """A store failure made up by the test."""


class FaultyStore(ObjectStore):
    """Wraps a store; the next ``failures`` operations raise :class:`InjectedFault`."""

    def __init__(self, inner: ObjectStore):
        self.inner = inner
        self.failures = 0

    def _maybe_fail(self) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise InjectedFault("injected store fault")

    def get_with_etag(self, key):
        self._maybe_fail()
        return self.inner.get_with_etag(key)

    def etag(self, key):
        self._maybe_fail()
        return self.inner.etag(key)

    def put(self, key, data, *, if_none_match=False, if_match=None):
        self._maybe_fail()
        return self.inner.put(key, data, if_none_match=if_none_match, if_match=if_match)

    def delete(self, key, *, if_match=None):
        self._maybe_fail()
        self.inner.delete(key, if_match=if_match)

    def list(self, prefix=""):
        self._maybe_fail()
        return self.inner.list(prefix)

    def upload_file(self, key, path: Path, *, if_none_match=False, tags=None):
        self._maybe_fail()
        return self.inner.upload_file(key, path, if_none_match=if_none_match, tags=tags)

    def download_file(self, key, path: Path):
        self._maybe_fail()
        self.inner.download_file(key, path)

    def content_etag(self, path: Path):
        return self.inner.content_etag(path)


def make_machine(base: Stores):
    class RunMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.stack = f"s{uuid.uuid4().hex[:8]}"
            self.faulty = FaultyStore(base.results)
            self.stores = Stores(base.datasets, base.models, self.faulty)
            self.runs: list[Run] = []
            self.model: dict[str, str] = {}  # run id -> expected stored state

        def stored(self, run_id: str) -> dict:
            key = f"{self.stack}/runs/{run_id}/state.json"
            return json.loads(base.results.get(key))

        def lock_holder(self, job: str) -> str | None:
            key = f"{self.stack}/locks/{job}.json"
            return json.loads(base.results.get(key))["run_id"] if base.results.exists(key) else None

        @rule(job=st.sampled_from(JOBS))
        def start(self, job):
            holder = self.lock_holder(job)
            try:
                run = Run.start(self.stores, self.stack, job, "local")
            except JobLockedError as exc:
                assert holder is not None and exc.holder == holder
                return
            except InjectedFault:
                assert self.lock_holder(job) == holder  # nothing leaked
                return
            assert holder is None
            self.runs.append(run)
            self.model[run.run_id] = "initialization"

        @rule(data=st.data(), target_state=st.sampled_from(STATES))
        def transition(self, data, target_state):
            if not self.runs:
                return
            run = data.draw(st.sampled_from(self.runs))
            expected = self.model[run.run_id]
            try:
                run.transition(target_state, error="boom" if target_state == "failed" else None)
            except InvalidTransition:
                assert target_state not in TRANSITIONS[expected]
                return
            except InjectedFault:
                return
            assert target_state in TRANSITIONS[expected]
            self.model[run.run_id] = target_state

        @rule(data=st.data())
        def heartbeat(self, data):
            if not self.runs:
                return
            run = data.draw(st.sampled_from(self.runs))
            try:
                run.heartbeat()
            except InvalidTransition:
                assert self.model[run.run_id] == "cleanup"
            except InjectedFault:
                pass

        @rule(count=st.integers(1, 3))
        def inject_faults(self, count):
            self.faulty.failures = count

        @rule(data=st.data())
        def concurrent_writer(self, data):
            if not self.runs:
                return
            run = data.draw(st.sampled_from(self.runs))
            other = load_run(
                Stores(base.datasets, base.models, base.results), self.stack, run.run_id
            )
            if other.state != "cleanup":
                other.heartbeat(instance_id=f"i-{uuid.uuid4().hex[:6]}")

        @rule(data=st.data())
        def cleanup(self, data):
            if not self.runs:
                return
            run = data.draw(st.sampled_from(self.runs))
            run.cleanup()  # never raises, even with faults pending
            self.model[run.run_id] = "cleanup"
            assert self.stored(run.run_id)["state"] == "cleanup"
            assert self.lock_holder(run.record["job"]) != run.run_id

        @invariant()
        def stored_records_are_valid(self):
            holders = {job: self.lock_holder(job) for job in JOBS}
            for run in self.runs:
                record = self.stored(run.run_id)
                assert record["state"] in STATES
                history = [h["state"] for h in record["history"]]
                assert history[0] == "initialization" and history[-1] == record["state"]
                for before, after in zip(history, history[1:], strict=False):
                    assert after in TRANSITIONS[before]
                assert record["state"] == self.model[run.run_id]
                if record["state"] == "cleanup":
                    assert holders[record["job"]] != run.run_id

        def teardown(self):
            self.faulty.failures = 0
            for run in self.runs:
                run.cleanup()
                record = self.stored(run.run_id)
                assert record["state"] == "cleanup" and record["result"] in (
                    "succeeded",
                    "failed",
                    "killed",
                )
            assert base.results.list(f"{self.stack}/locks/") == []

    return RunMachine


def test_random_transitions_and_faults(stores, monkeypatch, request):
    monkeypatch.setattr(runs, "CLEANUP_BACKOFF", 0.0)
    local = "local" in request.node.callspec.id
    run_state_machine_as_test(
        make_machine(stores),
        settings=settings(
            max_examples=40 if local else 12,
            stateful_step_count=25 if local else 15,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
