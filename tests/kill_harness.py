"""A local run of the example job that stops at one phase, for the SIGKILL tests.

``python -m tests.kill_harness PHASE STORE STACK MARKER``: trains ``example-linefit`` on the
local store ``STORE`` and, at ``PHASE``, writes its pid to ``MARKER`` and sleeps, waiting to be
killed. Phases: ``locked`` (lock taken, no record yet), ``data_sync``, ``training`` (the worker
runs; nothing is patched), ``claimed`` (version staged and claimed, pointer not moved) and
``published`` (pointer moved, run not yet ended); ``unguarded`` trains like ``training`` but
with the worker's own guards off (no parent-death signal, no lease), as a worker that outlived
its supervisor would be.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from stnlp.common.settings import Settings
from stnlp.plugins.spec import JobSpec
from stnlp.runtime.backends import local
from stnlp.runtime.registry import ModelRegistry
from stnlp.runtime.runs import JobLock, Run

sys.path.insert(0, str(Path(__file__).parent / "example_plugin"))  # the worker imports it
# The example plugin's job, declared here: its plugin module imports Gradio (seconds).
SPEC = JobSpec(
    name="example-linefit", component="line-length", entrypoint="stnlp_example.train:train",
    output_model="line-length", max_runtime_minutes=10, input_datasets=("transcripts",),
    hyperparameters={"steps": 20, "step_seconds": 0.0, "fail_at_step": -1},
)  # fmt: skip

PAUSE_AFTER = {
    "locked": (JobLock, "acquire"),
    "claimed": (Run, "claim_publish"),
    "published": (ModelRegistry, "move_latest"),
}  # classes and method names: patched only for the phase asked


def pause_after(owner, name: str, marker: Path) -> None:
    """Make ``owner.name`` run, then write the marker and wait to be killed."""
    original = getattr(owner, name)

    def paused(*args, **kwargs):
        original(*args, **kwargs)
        marker.write_text(str(os.getpid()))
        time.sleep(3600)

    setattr(owner, name, paused)


def main(phase: str, store: str, stack: str, marker: str) -> None:
    """Train until ``phase``, then wait there."""
    settings = Settings(store=store, stack=stack)
    if phase in PAUSE_AFTER:
        pause_after(*PAUSE_AFTER[phase], Path(marker))
    elif phase == "unguarded":
        plain_env = local.worker_env
        local.die_with_parent = lambda: None
        local.worker_env = lambda *args: plain_env()
    elif phase == "data_sync":
        original = local.sync_datasets
        local.sync_datasets = lambda *a: (original(*a), Path(marker).write_text("x"),
                                          time.sleep(3600))[0]  # fmt: skip
    steps = {"steps": 4000, "step_seconds": 0.05} if phase in ("training", "unguarded") else None
    intervals = local.Intervals(heartbeat=0.2, upload=0.5, poll=0.05, terminate_grace=5)
    local.train_local(SPEC, settings, overrides=steps, progress=False, intervals=intervals)


if __name__ == "__main__":
    main(*sys.argv[1:])
