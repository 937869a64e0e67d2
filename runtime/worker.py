"""The training subprocess: ``python -m stnlp.runtime.worker WORK_JSON``.

``WORK_JSON`` is a file ``{"entrypoint": "module:function", "context": {...}}`` (the context as
:meth:`stnlp.runtime.training.TrainingContext.to_json` writes it). The worker calls the entrypoint
through :func:`stnlp.runtime.training.run_entrypoint` and writes, beside ``WORK_JSON``, either
``outcome.json`` (metrics and base model; exit status 0) or ``error.json`` (exception type and
message; exit status 1). Backends (local subprocess, EC2 user data) run it the same way.
"""

from __future__ import annotations

import json
import sys
import traceback
from dataclasses import asdict
from pathlib import Path

from stnlp.runtime.training import TrainingContext, run_entrypoint


def main(argv: list[str]) -> int:
    """Run the entrypoint described by ``argv[0]``; return the exit status."""
    if len(argv) != 1:
        print("usage: python -m stnlp.runtime.worker WORK_JSON", file=sys.stderr)
        return 2
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
