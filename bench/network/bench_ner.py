"""Benchmark: the network job's NER and graph vs the original per-sentence full-pipeline loop.

The corpus is ``--episodes`` episodes of ``--lines`` captions in all, cycled from the sample
subtitles (34 episodes and 40,000 lines: the size of the whole series). Measured:

- ``pipeline``: :func:`stnlp.plugins.network.pipeline.build_network` end to end (model load,
  sentence split, NER with ``nlp.pipe`` on the lean pipeline plus the entity ruler,
  co-occurrence, graph, communities) and the three exports, for each ``--n-process`` value,
  with the default ``keep_unknown=False`` (sentences holding no word of a character's name skip
  the model),
  and once with ``keep_unknown=True`` (every sentence goes through the model);
- ``baseline``: the original way, ``nlp(sentence)`` for every sentence through the full
  ``en_core_web_sm`` pipeline (tagger, parser, lemmatizer ...), keeping PERSON entities. It is
  slow, so it runs on the first ``--baseline-sentences`` sentences and is extrapolated.

Run: ``.venv/bin/python bench/network/bench_ner.py`` (add ``--json out.json`` to keep results).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import spacy

from stnlp.plugins.network.corpus import episodes_from_captions
from stnlp.plugins.network.export import write_exports
from stnlp.plugins.network.ner import resolve_model
from stnlp.plugins.network.params import NetworkParams
from stnlp.plugins.network.pipeline import build_network
from stnlp.runtime.data import SAMPLE_DIR, load_characters, load_subtitles


def synthetic_captions(episodes: int, lines: int) -> list:
    """``lines`` captions over ``episodes`` episodes, cycling the sample captions."""
    sample = load_subtitles(SAMPLE_DIR / "subtitles").records
    per_episode = lines // episodes
    captions = []
    for number in range(episodes):
        for i in range(per_episode):
            source = sample[(number * 97 + i) % len(sample)]
            captions.append(
                replace(source, season=1 + number // 9, episode=1 + number % 9, index=i + 1)
            )
    return captions


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (``n_process``)."""
    own, children = (
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_pipeline(captions, characters, params: NetworkParams) -> dict:
    """End-to-end seconds of the network build and exports with ``params``."""
    started, cpu = time.perf_counter(), cpu_seconds()
    build = build_network(captions, characters, params, progress=False)
    with tempfile.TemporaryDirectory() as out:
        write_exports(build.graph, build.info(params), Path(out))
    seconds = time.perf_counter() - started
    metrics = build.metrics()
    return {
        "n_process": params.n_process,
        "keep_unknown": params.keep_unknown,
        "end_to_end_s": round(seconds, 2),
        "cpu_s": round(cpu_seconds() - cpu, 2),
        "build_s": metrics["seconds"],
        "sentences": metrics["sentences"],
        "sentences_per_s": round(metrics["sentences"] / seconds, 1),
        "characters": metrics["characters"],
        "edges": metrics["edges"],
    }


def time_baseline(sentences: list[str]) -> dict:
    """Seconds per sentence of ``nlp(sentence)`` over the full pipeline (model load excluded)."""
    nlp = spacy.load(resolve_model("en_core_web_sm"))
    started, cpu = time.perf_counter(), cpu_seconds()
    found = 0
    for sentence in sentences:
        found += sum(1 for ent in nlp(sentence).ents if ent.label_ == "PERSON")
    seconds = time.perf_counter() - started
    return {
        "pipes": nlp.pipe_names,
        "sentences": len(sentences),
        "seconds": round(seconds, 2),
        "cpu_s": round(cpu_seconds() - cpu, 2),
        "sentences_per_s": round(len(sentences) / seconds, 1),
        "person_mentions": found,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=34)
    parser.add_argument("--lines", type=int, default=40_000)
    parser.add_argument("--baseline-sentences", type=int, default=3_000)
    parser.add_argument("--n-process", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    captions = synthetic_captions(args.episodes, args.lines)
    characters = load_characters(SAMPLE_DIR / "characters").records
    sentences = [s for e in episodes_from_captions(captions) for s in e.sentences]
    results = {
        "cpus": os.cpu_count(),
        "spacy": spacy.__version__,
        "episodes": args.episodes,
        "lines": len(captions),
        "sentences": len(sentences),
        "pipeline": [
            time_pipeline(captions, characters, NetworkParams(n_process=n, keep_unknown=keep))
            for keep, n in [(False, n) for n in args.n_process] + [(True, 1)]
        ],
    }
    baseline = time_baseline(sentences[: args.baseline_sentences])
    scale = len(sentences) / baseline["sentences"]
    baseline["extrapolated_full_s"] = round(baseline["seconds"] * scale, 1)
    baseline["extrapolated_full_cpu_s"] = round(baseline["cpu_s"] * scale, 1)
    results["baseline"] = baseline
    best = min(results["pipeline"], key=lambda r: r["end_to_end_s"])
    results["speedup_wall"] = round(baseline["extrapolated_full_s"] / best["end_to_end_s"], 1)
    leanest = min(results["pipeline"], key=lambda r: r["cpu_s"])
    results["speedup_cpu"] = round(baseline["extrapolated_full_cpu_s"] / leanest["cpu_s"], 1)
    results["load_average"] = os.getloadavg()
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
