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
import time
from functools import lru_cache
from pathlib import Path

import gradio as gr
import pandas as pd

from stnlp.common.cache import cache_root
from stnlp.common.errors import DataError, UserError
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
DEFAULT_WINDOW = 20
EMBEDDING = "all-MiniLM-L6-v2 (packaged) by embedding similarity"


def cache_dir() -> Path:
    """Where live theme results are cached: ``$XDG_CACHE_HOME/stnlp/themes``."""
    return cache_root("themes")


NAMING = "name subtitle files like S01E02.srt (season and episode in the name)"


def _uploaded(path: Path) -> list:
    """The captions of one uploaded file; a mistake names the file by its own name only."""
    from stnlp.runtime.data import load_subtitles

    if path.suffix.lower() != ".srt":
        raise UserError(f"{path.name}: not a .srt subtitle file; {NAMING}")
    try:
        captions = load_subtitles(path).records
    except DataError as exc:
        raise UserError(f"{str(exc).replace(str(path), path.name)}; {NAMING}") from None
    if not captions:
        raise UserError(f"{path.name}: no subtitle captions found (is it a SubRip .srt file?)")
    return captions


def load_corpus(choice: str, files, sample_dir: Path | None = None) -> list[Episode]:
    """Episodes of the sample corpus or of the uploaded ``.srt`` files."""
    from stnlp.runtime.data import load_subtitles

    if choice == SAMPLE:
        folder = (sample_dir or SAMPLE_DIR) / "subtitles"
        return episodes_from_captions(load_subtitles(folder).records, str(folder))
    paths = [Path(f if isinstance(f, str) else f.name) for f in (files or [])]
    if not paths:
        raise UserError(f"no .srt files uploaded: upload subtitles ({NAMING}) or pick {SAMPLE!r}")
    captions = [c for path in paths for c in _uploaded(path)]
    return episodes_from_captions(captions, ", ".join(p.name for p in paths))


def pick_themes(chosen: list[str] | None, custom: str | None) -> list[str]:
    """The checked themes followed by the comma-separated custom ones, validated."""
    extra = [t for t in (custom or "").split(",") if t.strip()]
    return parse_themes([*(chosen or []), *extra])


def _published_data(settings) -> tuple[str, dict | None] | None:
    """The published version and its scores file's data (``None`` without a version)."""
    from stnlp.runtime.registry import fetch_latest

    model = fetch_latest(settings, MODEL)
    if model is None:
        return None
    if not (model.path / RESULT_FILE).exists():
        return model.version, None
    return model.version, json.loads((model.path / RESULT_FILE).read_text(encoding="utf-8"))


def _question(data: dict | None) -> tuple | None:
    """What published scores answer: the corpus hash, the themes and the window."""
    return (data.get("corpus_hash"), data.get("themes"), data.get("window")) if data else None


def _published(settings, episodes, themes, window) -> tuple[ThemeResult, str] | None:
    """The job's published scores if they answer exactly this question."""
    published = _published_data(settings)
    if published is None or published[1] is None:
        return None
    version, data = published
    if _question(data) != (corpus_hash(episodes), list(themes), window):
        return None
    result = ThemeResult.from_json(json.dumps(data))
    return result, f"registry: {MODEL} {version} (published scores)"


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


def theme_scores(
    settings, episodes, themes, window=DEFAULT_WINDOW, cache: ThemeCache | None = None
):
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
    """Which source the tab's default question (the sample corpus, the default themes and
    window) is answered from, and why."""
    configured = app.settings.models.get(COMPONENT)
    live = f"hub model {configured} if cached locally, else {EMBEDDING}" if configured else None
    live = live or EMBEDDING
    published = _published_data(app.settings)
    if published is None:
        return f"computed live; {live}; no published {MODEL}"
    version, data = published
    default = (corpus_hash(load_corpus(SAMPLE, None)), list(DEFAULT_THEMES), DEFAULT_WINDOW)
    if _question(data) == default:
        return (f"trained scores for the default settings; registry: {MODEL} {version}; other "
                f"corpora, themes or windows are computed live with {live}")  # fmt: skip
    return (f"computed live; {live}; the published {MODEL} {version} scored another corpus, "
            "theme list or window, so its scores do not answer this tab's questions")  # fmt: skip


def _corpus_note(choice: str, files) -> str:
    """A warning when files are uploaded but the sample corpus is chosen."""
    if choice == SAMPLE and files:
        return (f" Scored the sample corpus: your {len(files)} uploaded file(s) were not used; "
                f"pick {UPLOAD!r} to score them.")  # fmt: skip
    return ""


def score(settings, choice, uploaded, chosen, extra, size):
    """The tab's answer: a summary line, the chart frame and the two tables."""
    started = time.perf_counter()
    episodes = load_corpus(choice, uploaded)
    themes = pick_themes(chosen, extra)
    result, source = theme_scores(settings, episodes, themes, int(size))
    bars, per_episode, lift = views(result)
    relevant = int(result.per_episode["relevant"].sum())
    total = int(result.per_episode["sentences"].sum())
    took = time.perf_counter() - started
    note = (f"Scored {len(episodes)} episode(s), {total} sentences in windows of {int(size)}, "
            f"in {took:.1f} s: {relevant} of {total} sentences relate to a theme; the others do "
            f"not vote. Source: {source}.{_corpus_note(choice, uploaded)}")  # fmt: skip
    return note, bars, per_episode, lift


def build_tab(app) -> None:
    """Create the tab's components inside the open ``gr.Tab``."""
    gr.Markdown(
        "How much each episode is about each theme: every window of subtitle sentences is "
        f"matched against the themes. Use the sample corpus or upload .srt subtitles: {NAMING}.",
        elem_classes="stnlp-hint",
    )
    with gr.Row(equal_height=False):
        with gr.Column(min_width=280):
            corpus = gr.Radio([SAMPLE, UPLOAD], value=SAMPLE, label="Corpus")
            files = gr.File(
                label="Subtitle files (S01E02.srt, ...)", file_count="multiple",
                file_types=[".srt"], height=140,
            )  # fmt: skip
        with gr.Column(min_width=280):
            themes = gr.CheckboxGroup(
                list(DEFAULT_THEMES), value=list(DEFAULT_THEMES), label="Themes"
            )
            custom = gr.Textbox(label="Custom themes (comma-separated)", placeholder="hope, fear")
            window = gr.Slider(5, 100, value=DEFAULT_WINDOW, step=5, label="Sentences per window")
    button = gr.Button("Score themes", variant="primary")
    gr.Examples(
        [[["friendship", "fear"], "", DEFAULT_WINDOW], [["battle", "love"], "science, family", 10]],
        [themes, custom, window], label="Examples (then press Score themes)",
    )  # fmt: skip
    status = gr.Markdown(
        "Press **Score themes** to score the chosen corpus; the chart and tables appear here.",
        elem_classes="stnlp-done",
    )
    with gr.Column(visible=False) as results:
        chart = gr.BarPlot(
            x="theme", y="score", title="Theme scores (share of sentences)",
            x_label_angle=-30, elem_id="stnlp-theme-chart",
        )  # fmt: skip
        table = gr.Dataframe(
            label="Scores per episode (share of sentences about each theme)",
            interactive=False, elem_id="stnlp-theme-episodes",
        )  # fmt: skip
        distinct = gr.Dataframe(
            label="What is distinctive: each episode's scores minus the series'",
            interactive=False,
        )  # fmt: skip

    def run(choice, uploaded, chosen, extra, size):
        note, bars, per_episode, lift = score(app.settings, choice, uploaded, chosen, extra, size)
        top = max(float(bars["score"].max()), 0.01) * 1.1  # bars from 0, none cut at the top
        return note, gr.BarPlot(bars, y_lim=[0, top]), per_episode, lift, gr.Column(visible=True)

    def uploaded(new_files, choice):
        return gr.Radio(value=UPLOAD) if new_files else gr.Radio(value=choice)

    files.upload(uploaded, [files, corpus], corpus)
    outputs = [status, chart, table, distinct, results]
    button.click(run, [corpus, files, themes, custom, window], outputs)
