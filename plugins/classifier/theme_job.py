"""Job ``classifier-theme``: score a whole subtitle corpus against a theme list.

A batch job, not a training one: it reads the ``subtitles`` dataset, scores every sentence
once, and publishes the scores (``themes.json`` for the tab, ``per_episode.csv`` and
``per_window.csv`` for people) as a version of the ``classifier-theme`` model.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from stnlp.common.errors import UserError
from stnlp.plugins.classifier.defaults import NLI_MODEL_ID, THEME_DEFAULTS
from stnlp.plugins.classifier.onnx_encoder import theme_encoder
from stnlp.plugins.classifier.theme_scorers import (
    MIN_SIMILARITY,
    EmbeddingThemeScorer,
    NliThemeScorer,
)
from stnlp.plugins.classifier.theme_scores import (
    ThemeResult,
    combined_hash,
    concat_results,
    corpus_hash,
    episode_digest,
    score_corpus,
)
from stnlp.plugins.classifier.themes import Episode, episodes_from_captions, parse_themes
from stnlp.runtime.logs import event
from stnlp.runtime.training import TrainingContext, TrainingOutcome

log = logging.getLogger(__name__)

RESULT_FILE = "themes.json"
PART_FILE = "part.json"


def make_scorer(
    method: str, tau: float = 0.05, nli_model: str = NLI_MODEL_ID,
    min_similarity: float = MIN_SIMILARITY, encoder: str = "auto",
):  # fmt: skip
    """The scorer for ``method`` (``embedding`` or ``nli``)."""
    if method == "embedding":
        return EmbeddingThemeScorer(theme_encoder(encoder), tau=tau, min_similarity=min_similarity)
    if method == "nli":
        return NliThemeScorer.from_hub(nli_model)
    raise UserError(f"theme method must be 'embedding' or 'nli', got {method!r}")


def _truncate(episodes: list[Episode], limit: int) -> list[Episode]:
    if limit <= 0:
        return episodes
    return [Episode(e.key, e.sentences[:limit]) for e in episodes]


def _setup(ctx: TrainingContext) -> tuple[dict, list[str], list[Episode]]:
    """The parameters, themes and (truncated) episodes of the job."""
    from stnlp.runtime.data import load_subtitles

    params = {**THEME_DEFAULTS, **ctx.hyperparameters}
    themes = parse_themes(params["themes"])
    source = ctx.dataset("subtitles")
    episodes = episodes_from_captions(load_subtitles(source).records, str(source))
    return params, themes, _truncate(episodes, int(params["max_sentences_per_episode"]))


def _score(params: dict, themes: list[str], episodes: list[Episode]):
    scorer = make_scorer(
        params["method"], float(params["tau"]), params["nli_model"],
        float(params["min_similarity"]), params["encoder"],
    )  # fmt: skip
    started = time.perf_counter()
    result = score_corpus(episodes, themes, scorer, int(params["window"]))
    return result, time.perf_counter() - started


def run(ctx: TrainingContext) -> TrainingOutcome:
    """Entrypoint of ``classifier-theme``: score the corpus, write the scores as artifacts."""
    params, themes, episodes = _setup(ctx)
    result, seconds = _score(params, themes, episodes)
    return _publish(ctx, params, result, corpus_hash(episodes), seconds)


def episodes(ctx: TrainingContext) -> list[str]:
    """Shard hook: the corpus's episode keys (``S01E01``...), in order."""
    return [episode.key for episode in _setup(ctx)[2]]


def shard(ctx: TrainingContext, keys: Sequence[str]) -> None:
    """Shard hook: score the episodes ``keys`` only; writes their per-episode and per-window
    scores and digests to ``ctx.output_dir/part.json``."""
    params, themes, corpus = _setup(ctx)
    chosen = [e for e in corpus if e.key in set(keys)]
    result, seconds = _score(params, themes, chosen)
    body = {"result": result.to_json(), "seconds": seconds,
            "digests": {e.key: episode_digest(e) for e in chosen}}  # fmt: skip
    (ctx.output_dir / PART_FILE).write_text(json.dumps(body), encoding="utf-8")


def merge(ctx: TrainingContext, parts: Sequence[Path]) -> TrainingOutcome:
    """Merge hook: the shards' episode rows joined in episode order; the series' scores, what
    is distinctive per episode and the corpus hash computed again over the whole."""
    params = {**THEME_DEFAULTS, **ctx.hyperparameters}
    bodies = [json.loads((Path(p) / PART_FILE).read_text(encoding="utf-8")) for p in parts]
    result = concat_results([ThemeResult.from_json(b["result"]) for b in bodies])
    digests = {k: v for b in bodies for k, v in b["digests"].items()}
    seconds = sum(b["seconds"] for b in bodies)
    return _publish(ctx, params, result, combined_hash(digests[k] for k in sorted(digests)),
                    seconds)


def _publish(ctx: TrainingContext, params: dict, result: ThemeResult, corpus: str,
             seconds: float) -> TrainingOutcome:  # fmt: skip
    """Write the artifacts of ``result`` and return the outcome with its metrics."""
    sentences = int(result.per_episode["sentences"].sum())
    payload = {
        **json.loads(result.to_json()),
        "corpus_hash": corpus,
        "window": int(params["window"]),
    }
    (ctx.output_dir / RESULT_FILE).write_text(json.dumps(payload), encoding="utf-8")
    result.per_episode.to_csv(ctx.output_dir / "per_episode.csv")
    result.distinctive.to_csv(ctx.output_dir / "distinctive.csv")
    result.per_window.to_csv(ctx.output_dir / "per_window.csv", index=False)
    overall = result.overall
    metrics = {
        "episodes": len(result.per_episode),
        "sentences": sentences,
        "seconds": round(seconds, 2),
        "sentences_per_second": round(sentences / seconds, 1) if seconds else None,
        "top_theme": str(overall.idxmax()),
        "overall": {t: round(float(v), 4) for t, v in overall.items()},
        "relevant_sentences": int(result.per_episode["relevant"].sum()),
        "most_distinctive": {
            episode: str(theme) for episode, theme in result.distinctive.idxmax(axis=1).items()
        },
    }
    ctx.log_metrics(step=1, **metrics)
    event(log, "themes scored", sentences=sentences, top=metrics["top_theme"])
    base = params["nli_model"] if params["method"] == "nli" else "all-MiniLM-L6-v2 (packaged)"
    return TrainingOutcome(metrics=metrics, base_model=base)
