"""Benchmark: the location classifier against its nearest-centroid baseline, on this CPU.

Torch is pinned to ``--threads`` threads. Runs the job's entrypoint
(:func:`stnlp.plugins.classifier.location_job.train`) with its default hyperparameters (the
packaged all-MiniLM-L6-v2, class-weighted loss, 5-fold stratified cross-validation of both the
fine-tuned model and the nearest-centroid baseline on the same folds) and with its ``tiny``
preset. Reports both cross-validated accuracy and macro-F1, and the time.

Run: ``.venv/bin/python bench/classifier/bench_location.py`` (add ``--json out.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from stnlp.common.settings import Settings
from stnlp.plugins.classifier.location_job import train
from stnlp.plugins.classifier.plugin import stnlp_training_jobs
from stnlp.runtime.data import SAMPLE_DIR
from stnlp.runtime.training import TrainingContext

KEEP = ("accuracy", "macro_f1", "baseline", "split", "test_examples", "epochs", "train_seconds")


def run_job(preset: str | None, epochs: int | None) -> dict:
    """Run the job on the sample locations; its metrics plus wall-clock seconds."""
    (spec,) = [j for j in stnlp_training_jobs(Settings()) if j.name == "classifier-location"]
    params = spec.resolved_hyperparameters(preset, {"epochs": epochs} if epochs else None)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = TrainingContext.in_directory(Path(tmp), "bench", spec.name, params, SAMPLE_DIR)
        started = time.perf_counter()
        outcome = train(ctx)
        seconds = time.perf_counter() - started
    return {
        "base_model": outcome.base_model,
        **{k: outcome.metrics[k] for k in KEEP},
        "job_seconds": round(seconds, 2),
    }


def main() -> None:
    """Run both measurements and print (and optionally save) the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, help="override the default epochs")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {"threads": args.threads, "load_before": os.getloadavg()}
    results["default"] = run_job(None, args.epochs)
    print("default", results["default"], flush=True)
    results["tiny"] = run_job("tiny", None)
    print("tiny", results["tiny"], flush=True)
    results["load_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
