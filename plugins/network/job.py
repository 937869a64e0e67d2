"""Entrypoint of the ``network-characters`` batch job (called by the runtime)."""

from __future__ import annotations

from dataclasses import fields

from stnlp.common.errors import UserError
from stnlp.plugins.network.export import write_exports
from stnlp.plugins.network.params import NetworkParams
from stnlp.plugins.network.pipeline import build_network
from stnlp.runtime.data import load_characters, load_subtitles
from stnlp.runtime.training import TrainingContext, TrainingOutcome


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
    write_exports(build.graph, build.info(params), ctx.output_dir)
    metrics = build.metrics()
    ctx.log_metrics(step=None, **metrics)
    return TrainingOutcome(metrics=metrics, base_model=params.spacy_model)
