"""The training subprocess: ``python -m stnlp.runtime.worker WORK_JSON``.

``WORK_JSON`` is a file ``{"entrypoint": "module:function", "context": {...}}`` (the context as
:meth:`stnlp.runtime.training.TrainingContext.to_json` writes it). The worker calls the entrypoint
through :func:`stnlp.runtime.training.run_entrypoint` and writes, beside ``WORK_JSON``, either
``outcome.json`` (metrics and base model; exit status 0) or ``error.json`` (exception type and
message; exit status 1). Backends (local subprocess, EC2 user data) run it the same way.

With ``STNLP_SUPERVISOR_PID``, ``STNLP_LEASE_FILE`` and ``STNLP_LEASE_SECONDS`` set (the local
backend sets them), a thread ends the worker's process group when the supervisor is gone or
the lease file has not been touched for that many seconds: a worker never outlives the process
that heartbeats for it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from stnlp.runtime.training import TrainingContext, run_entrypoint

CHECK_SECONDS = 0.5


def supervision_lost(supervisor: int, lease_file: Path, lease: float) -> str | None:
    """Why this worker must stop (its parent changed, its lease expired), or ``None``."""
    if os.getppid() != supervisor:
        return f"supervisor pid {supervisor} is gone"
    try:
        age = time.time() - lease_file.stat().st_mtime
    except OSError:
        return f"lease file {lease_file} is gone"
    if age > lease:
        return f"no heartbeat written for {age:.0f}s (lease {lease:.0f}s)"
    return None


def watch_supervisor(env: dict[str, str] | None = None) -> threading.Thread | None:
    """Start the thread that ends this process group when supervision is lost (see above)."""
    env = os.environ if env is None else env
    try:
        supervisor = int(env["STNLP_SUPERVISOR_PID"])
        lease_file = Path(env["STNLP_LEASE_FILE"])
        lease = float(env["STNLP_LEASE_SECONDS"])
    except (KeyError, ValueError):
        return None

    def watch() -> None:
        while (why := supervision_lost(supervisor, lease_file, lease)) is None:
            time.sleep(CHECK_SECONDS)
        print(f"worker: stopping: {why}", flush=True)
        os.killpg(os.getpgrp(), signal.SIGKILL)

    thread = threading.Thread(target=watch, name="supervisor-watch", daemon=True)
    thread.start()
    return thread


def main(argv: list[str]) -> int:
    """Run the entrypoint described by ``argv[0]``; return the exit status."""
    if len(argv) != 1:
        print("usage: python -m stnlp.runtime.worker WORK_JSON", file=sys.stderr)
        return 2
    watch_supervisor()
    work_file = Path(argv[0])
    work = json.loads(work_file.read_text(encoding="utf-8"))
    ctx = TrainingContext.from_json(json.dumps(work["context"]))
    print(f"worker: run {ctx.run_id} job {ctx.job} entrypoint {work['entrypoint']}", flush=True)
    try:
        outcome = run_entrypoint(work["entrypoint"], ctx)
    except Exception as exc:
        traceback.print_exc()
        error = {"type": type(exc).__name__, "message": str(exc)}
        (work_file.parent / "error.json").write_text(json.dumps(error), encoding="utf-8")
        return 1
    (work_file.parent / "outcome.json").write_text(json.dumps(asdict(outcome)), encoding="utf-8")
    print(f"worker: run {ctx.run_id} finished: {outcome.metrics}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
