"""Entrypoint of the ``network-characters`` batch job (called by the runtime)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from stnlp.common.errors import DataError, UserError
from stnlp.plugins.network.corpus import Episode, episodes_from_captions
from stnlp.plugins.network.export import write_exports
from stnlp.plugins.network.params import NetworkParams
from stnlp.plugins.network.pipeline import NetworkBuild, assemble, build_network, find_candidates
from stnlp.runtime.data import load_characters, load_subtitles
from stnlp.runtime.training import TrainingContext, TrainingOutcome

PART_FILE = "candidates.json"


def params_from(hyperparameters: dict) -> NetworkParams:
    """The build parameters from the job's hyperparameters; unknown keys are a UserError."""
    known = [f.name for f in fields(NetworkParams)]
    unknown = set(hyperparameters) - set(known)
    if unknown:
        raise UserError(
            f"network-characters: unknown hyperparameter(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(known)})"
        )
    defaults = NetworkParams()
    values = {}
    for name, value in hyperparameters.items():
        kind = type(getattr(defaults, name))
        if kind is bool and isinstance(value, str):
            value = value.strip().lower() in ("1", "true", "yes")
        try:
            values[name] = kind(value)
        except (TypeError, ValueError) as exc:
            raise UserError(
                f"network-characters: hyperparameter {name}={value!r} is not a {kind.__name__}"
            ) from exc
    return NetworkParams(**values)


def run(ctx: TrainingContext) -> TrainingOutcome:
    """Build the character network from the ``subtitles`` and ``characters`` datasets.

    Writes ``network.json``, ``network.graphml`` and ``edges.csv`` to ``ctx.output_dir``
    (published as the ``character-network`` model) and logs the metrics.
    """
    params = params_from(ctx.hyperparameters)
    characters_dir = ctx.dataset("characters")
    captions = load_subtitles(ctx.dataset("subtitles")).records
    characters = load_characters(characters_dir).records
    build = build_network(captions, characters, params, source=str(characters_dir))
    return _publish(ctx, build, params)


def _publish(ctx: TrainingContext, build: NetworkBuild, params: NetworkParams) -> TrainingOutcome:
    write_exports(build.graph, build.info(params), ctx.output_dir)
    metrics = build.metrics()
    ctx.log_metrics(step=None, **metrics)
    return TrainingOutcome(metrics=metrics, base_model=params.spacy_model)


def _episodes(ctx: TrainingContext) -> list[Episode]:
    return episodes_from_captions(load_subtitles(ctx.dataset("subtitles")).records)


def episodes(ctx: TrainingContext) -> list[str]:
    """Shard hook: the corpus's episode tags (``S01E01``...), in order."""
    return [episode.tag for episode in _episodes(ctx)]


def shard(ctx: TrainingContext, tags: Sequence[str]) -> None:
    """Shard hook: the NER pass over the episodes ``tags`` only (the corpus figures still come
    from every episode); writes their candidates to ``ctx.output_dir/candidates.json``."""
    params = params_from(ctx.hyperparameters)
    characters_dir = ctx.dataset("characters")
    characters = load_characters(characters_dir).records
    started = time.perf_counter()
    found = find_candidates(_episodes(ctx), characters, params, str(characters_dir), set(tags))
    body = {"episodes": found, "seconds": time.perf_counter() - started}
    (ctx.output_dir / PART_FILE).write_text(json.dumps(body), encoding="utf-8")


def merge(ctx: TrainingContext, parts: Sequence[Path]) -> TrainingOutcome:
    """Merge hook: every shard's candidates, resolved and counted over the whole corpus; the
    graph, its communities and centralities computed once on the merged counts."""
    params = params_from(ctx.hyperparameters)
    found: dict[str, list] = {}
    seconds = 0.0
    for folder in parts:
        body = json.loads((Path(folder) / PART_FILE).read_text(encoding="utf-8"))
        seconds += body["seconds"]
        for tag, sentences in body["episodes"].items():
            if tag in found:
                raise DataError(f"{folder}: episode {tag} is in two shards")
            found[tag] = [[(start, end, tuple(owners)) for start, end, owners in candidates]
                          for candidates in sentences]  # fmt: skip
    corpus = _episodes(ctx)
    missing = [e.tag for e in corpus if e.tag not in found]
    if missing:
        raise DataError(f"network-characters: no shard holds episode(s) {', '.join(missing)}")
    return _publish(ctx, assemble(corpus, found, params, seconds), params)
