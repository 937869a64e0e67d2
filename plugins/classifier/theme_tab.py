"""The "Themes" tab: pick a corpus and themes, see a bar chart and a per-episode table.

Sources, in order: the scores published by the ``classifier-theme`` job when they answer the
same question (sample corpus, same themes and window); else the NLI model configured as
``models.classifier-theme`` when it is in the local Hugging Face cache; else the packaged MiniLM
by embedding similarity (offline, always works). Live results are cached on disk by corpus hash,
themes, method and window.
"""

from __future__ import annotations

import json
import logging
import os
from functools import lru_cache
from pathlib import Path

import gradio as gr
import pandas as pd

from stnlp.common.errors import UserError
from stnlp.plugins.classifier.onnx_encoder import theme_encoder
from stnlp.plugins.classifier.theme_job import RESULT_FILE
from stnlp.plugins.classifier.theme_scorers import EmbeddingThemeScorer, NliThemeScorer
from stnlp.plugins.classifier.theme_scores import ThemeCache, ThemeResult, corpus_hash
from stnlp.plugins.classifier.themes import (
    DEFAULT_THEMES,
    Episode,
    episodes_from_captions,
    parse_themes,
)
from stnlp.runtime import logs
from stnlp.runtime.data import SAMPLE_DIR

log = logging.getLogger(__name__)

COMPONENT = MODEL = "classifier-theme"
SAMPLE, UPLOAD = "Sample corpus", "Upload .srt files"
EMBEDDING = "all-MiniLM-L6-v2 (packaged) by embedding similarity"


def cache_dir() -> Path:
    """Where live theme results are cached: ``$XDG_CACHE_HOME/stnlp/themes``."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "stnlp" / "themes"


def load_corpus(choice: str, files, sample_dir: Path | None = None) -> list[Episode]:
    """Episodes of the sample corpus or of the uploaded ``.srt`` files."""
    from stnlp.runtime.data import load_subtitles

    if choice == SAMPLE:
        folder = (sample_dir or SAMPLE_DIR) / "subtitles"
        return episodes_from_captions(load_subtitles(folder).records, str(folder))
    paths = [Path(f if isinstance(f, str) else f.name) for f in (files or [])]
    if not paths:
        raise UserError("no .srt files uploaded")
    captions = [c for path in paths for c in load_subtitles(path).records]
    return episodes_from_captions(captions, ", ".join(p.name for p in paths))


def pick_themes(chosen: list[str] | None, custom: str | None) -> list[str]:
    """The checked themes followed by the comma-separated custom ones, validated."""
    extra = [t for t in (custom or "").split(",") if t.strip()]
    return parse_themes([*(chosen or []), *extra])


def _published(settings, episodes, themes, window) -> tuple[ThemeResult, str] | None:
    """The job's published scores if they answer exactly this question."""
    from stnlp.runtime.registry import fetch_latest

    model = fetch_latest(settings, MODEL)
    if model is None or not (model.path / RESULT_FILE).exists():
        return None
    data = json.loads((model.path / RESULT_FILE).read_text(encoding="utf-8"))
    question = (data.get("corpus_hash"), data.get("themes"), data.get("window"))
    if question != (corpus_hash(episodes), list(themes), window):
        return None
    result = ThemeResult.from_json(json.dumps(data))
    return result, f"registry: {MODEL} {model.version} (published scores)"


def live_scorer(settings):
    """The configured NLI model if cached locally, else the embedding scorer; and its name."""
    return _live_scorer(settings.models.get(COMPONENT))


@lru_cache(maxsize=2)
def _live_scorer(model_id: str | None):
    """Loaded once per process and model id, not on every click."""
    if model_id:
        try:
            return NliThemeScorer.from_hub(model_id), f"hub model {model_id} (NLI zero-shot)"
        except UserError as exc:
            logs.event(log, "NLI model unavailable", logging.INFO, reason=str(exc))
    return EmbeddingThemeScorer(theme_encoder()), EMBEDDING


def theme_scores(settings, episodes, themes, window=20, cache: ThemeCache | None = None):
    """``(result, source text)``: published scores, else a cached or fresh live result."""
    published = _published(settings, episodes, themes, window)
    if published is not None:
        return published
    scorer, name = live_scorer(settings)
    result, hit = (cache or ThemeCache(cache_dir())).score(episodes, themes, scorer, window)
    return result, f"{name} ({'cached' if hit else 'computed now'})"


def views(result: ThemeResult) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The bar chart frame (theme, score), the per-episode table of absolute scores with each
    episode's top and most distinctive theme, and the table of scores minus the series'."""
    overall = result.overall
    bars = pd.DataFrame({"theme": list(overall.index), "score": overall.to_numpy()})
    scores = result.per_episode[result.themes]
    lift = result.distinctive
    table = result.per_episode[["sentences", "relevant"]].copy()
    table["top"] = scores.idxmax(axis=1)
    table["most distinctive"] = [
        f"{theme} ({lift.loc[episode, theme]:+.3f})"
        for episode, theme in lift.idxmax(axis=1).items()
    ]
    table = table.join(scores.round(3)).reset_index()
    return bars, table, lift.round(3).reset_index()


def model_source(app) -> str:
    """Which source the tab uses for the sample corpus."""
    from stnlp.runtime.registry import fetch_latest

    model = fetch_latest(app.settings, MODEL)
    configured = app.settings.models.get(COMPONENT)
    live = f"hub model {configured} if cached locally, else {EMBEDDING}" if configured else None
    live = live or EMBEDDING
    if model is not None:
        return f"registry: {MODEL} {model.version} for its theme list, else {live}"
    return live


def build_tab(app) -> None:
    """Create the tab's components inside the open ``gr.Tab``."""
    gr.Markdown(f"**Model source:** {model_source(app)}")
    with gr.Row():
        with gr.Column(scale=1):
            corpus = gr.Radio([SAMPLE, UPLOAD], value=SAMPLE, label="Corpus")
            files = gr.File(label="Subtitle files", file_count="multiple", file_types=[".srt"])
            themes = gr.CheckboxGroup(
                list(DEFAULT_THEMES), value=list(DEFAULT_THEMES), label="Themes"
            )
            custom = gr.Textbox(label="Custom themes (comma-separated)")
            window = gr.Slider(5, 100, value=20, step=5, label="Sentences per window")
            button = gr.Button("Score themes", variant="primary")
        with gr.Column(scale=2):
            status = gr.Markdown()
            chart = gr.BarPlot(x="theme", y="score", title="Theme scores", y_lim=[0, None])
            table = gr.Dataframe(
                label="Scores per episode (share of sentences about each theme)",
                interactive=False,
            )
            distinct = gr.Dataframe(
                label="What is distinctive: each episode's scores minus the series'",
                interactive=False,
            )

    def run(choice, uploaded, chosen, extra, size):
        try:
            episodes = load_corpus(choice, uploaded)
            themes = pick_themes(chosen, extra)
            result, source = theme_scores(app.settings, episodes, themes, int(size))
        except UserError as exc:
            raise gr.Error(str(exc)) from exc
        bars, per_episode, lift = views(result)
        relevant = int(result.per_episode["relevant"].sum())
        total = int(result.per_episode["sentences"].sum())
        note = f"{relevant} of {total} sentences relate to a theme; the others do not vote."
        return f"**Source:** {source}. {note}", bars, per_episode, lift

    button.click(run, [corpus, files, themes, custom, window], [status, chart, table, distinct])
