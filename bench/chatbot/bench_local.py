"""The embedded default's chatbots on a CPU: SmolLM2-135M-Instruct, `local` preset, sample data.

What `stnlp demo` does for each chatbot job, timed, then `stnlp eval` on every held-out line:

1. the one-time conversion of the packaged GGUF into safetensors (in a fresh cache);
2. each job through the local backend (a subprocess, the run state machine, the registry),
   wall time and the machine's load average before and after;
3. the evaluator's table: untuned base and adapter, each with and without retrieval, the
   offline responder, and the actual lines' judge score.

    python bench/chatbot/bench_local.py --out docs/benchmarks-chatbot-local.json

The machine's load is recorded beside every time: on shared cores, times are pessimistic.
``--threads 1`` runs torch (here and in the training subprocesses) on one thread: on cores
other processes are using, two threads mostly wait for each other. The JSON is rewritten after
every stage, so a long run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from stnlp.common.settings import Settings  # noqa: E402
from stnlp.plugins.manager import build_plugin_manager  # noqa: E402
from stnlp.runtime.data import SAMPLE_DIR  # noqa: E402


def load() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def convert(cache: Path) -> dict:
    """Time the GGUF -> safetensors conversion into an empty cache."""
    from stnlp.plugins.chatbot.base import BASE_CACHE_ENV, converted_dir
    from stnlp.plugins.chatbot.catalog import SMOLLM2

    os.environ[BASE_CACHE_ENV] = str(cache)
    before, started = load(), time.perf_counter()
    converted_dir(SMOLLM2)
    return {"seconds": round(time.perf_counter() - started, 1), "load_before": before,
            "load_after": load()}  # fmt: skip


def train_job(spec, settings, stores) -> dict:
    """One job's `local` preset through the local backend, as the demo runs it."""
    from stnlp.runtime.backends import get_backend
    from stnlp.runtime.registry import fetch_latest
    from stnlp.runtime.runs import load_run

    before, started = load(), time.perf_counter()
    run_id = get_backend("local")(spec, settings, stores=stores, preset="local", progress=False)
    seconds = time.perf_counter() - started
    record = load_run(stores, settings.stack, run_id).record
    if record.get("result") != "succeeded":
        raise SystemExit(f"{spec.name}: run {run_id} {record.get('result')}: {record.get('error')}")
    metrics = fetch_latest(settings, spec.output_model).manifest["metrics"]
    keep = ("steps", "train_loss", "held_out_loss", "tokens_per_s", "heldout", "quality")
    return {"seconds": round(seconds, 1), "load_before": before, "load_after": load(),
            **{k: metrics[k] for k in keep}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="chatbot-llama,chatbot-qwen")
    parser.add_argument("--limit", type=int, default=1000, help="held-out lines to evaluate")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--no-eval", action="store_true", help="time the jobs only")
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the training subprocesses too
        torch.set_num_threads(args.threads)
    from stnlp.plugins.chatbot.evaluate import evaluate
    from stnlp.runtime.store import open_stores
    from stnlp.runtime.upload import upload_path

    work = Path(tempfile.mkdtemp(prefix="stnlp-bench-local-"))
    result = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "command": " ".join(sys.argv),
                    "torch": torch.__version__, "python": platform.python_version()},
        "conversion": convert(work / "base-models"),
        "jobs": {},
        "eval": {},
    }  # fmt: skip
    settings = Settings(store=str(work / "store"))
    registry = build_plugin_manager(settings)
    stores = open_stores(settings)
    upload_path(SAMPLE_DIR, stores.datasets, progress=False)

    def save() -> None:
        if args.out:
            args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")

    save()
    for job in args.jobs.split(","):
        spec = registry.job(job)
        result["jobs"][job] = train_job(spec, settings, stores)
        print(job, json.dumps(result["jobs"][job]["heldout"]), flush=True)
        save()
        if args.no_eval:
            continue
        before, started = load(), time.perf_counter()
        report = evaluate(settings, spec, SAMPLE_DIR, limit=args.limit, preset="local")
        report["summary"].update(seconds=round(time.perf_counter() - started, 1),
                                 load_before=before, load_after=load())  # fmt: skip
        result["eval"][job] = report
        for name, row in report.items():
            print(f"  {name}: {row}", flush=True)
        save()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
