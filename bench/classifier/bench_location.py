"""Benchmark: fine-tuning the location classifier on the sample locations, on this CPU.

Torch is pinned to ``--threads`` threads (2: this machine's cores). Runs the job's entrypoint
(:func:`stnlp.plugins.classifier.location_job.train`) with its default hyperparameters (the packaged
all-MiniLM-L6-v2, stratified 75/25 split, class-weighted loss) and, for comparison, its ``tiny``
preset and the tab's offline fallback (nearest centroid over MiniLM embeddings, same split).
Reports fine-tuning time and held-out accuracy and macro-F1.

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
from stnlp.plugins.classifier.labels import examples_from_locations
from stnlp.plugins.classifier.location_centroid import fit_with_holdout
from stnlp.plugins.classifier.location_job import train
from stnlp.plugins.classifier.plugin import stnlp_training_jobs
from stnlp.runtime.data import SAMPLE_DIR, load_locations
from stnlp.runtime.encoder import shared_encoder
from stnlp.runtime.training import TrainingContext

KEEP = ("accuracy", "macro_f1", "train_examples", "test_examples", "epochs", "train_seconds")


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


def run_fallback() -> dict:
    """The offline fallback's held-out metrics and fitting time."""
    examples = examples_from_locations(load_locations(SAMPLE_DIR / "locations").records)
    started = time.perf_counter()
    classifier = fit_with_holdout(shared_encoder(), examples)
    seconds = time.perf_counter() - started
    metrics = classifier.metrics
    return {
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "fit_seconds": round(seconds, 2),
    }


def main() -> None:
    """Run the three measurements and print (and optionally save) the results."""
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
    results["fallback"] = run_fallback()
    print("fallback", results["fallback"], flush=True)
    results["load_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
