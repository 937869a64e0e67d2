"""The theme classifier: theme lists, real MiniLM scoring, aggregation, cache, job, NLI, tab."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from pandas.testing import assert_frame_equal
from transformers import AutoTokenizer, BartConfig, BartForSequenceClassification

from stnlp.common.errors import UserError
from stnlp.common.settings import Settings
from stnlp.plugins.classifier import theme_tab
from stnlp.plugins.classifier.plugin import stnlp_training_jobs
from stnlp.plugins.classifier.theme_job import RESULT_FILE, run
from stnlp.plugins.classifier.theme_scorers import EmbeddingThemeScorer, NliThemeScorer
from stnlp.plugins.classifier.theme_scores import ThemeCache, score_corpus
from stnlp.plugins.classifier.themes import (
    DEFAULT_THEMES,
    Episode,
    episodes_from_captions,
    parse_themes,
    split_sentences,
)
from stnlp.runtime.data import load_subtitles
from stnlp.runtime.encoder import minilm_path, shared_encoder
from stnlp.runtime.registry import ModelRegistry
from stnlp.runtime.store import open_stores
from stnlp.runtime.training import TrainingContext

torch.set_num_threads(1)

THEMES = list(DEFAULT_THEMES)
FIGHT = "Grab the bat, we have to fight the monster and kill it before it attacks us!"
LOVE = "I love you. Will you go to the Snow Ball dance with me? You can kiss me."
LIE = "You lied to us! You betrayed us, you traitor, we trusted you."


class CountingScorer:
    """The real embedding scorer, counting how often the model is asked."""

    def __init__(self):
        self.inner = EmbeddingThemeScorer(shared_encoder())
        self.method = self.inner.method
        self.calls = 0

    def score(self, sentences, themes, progress=None):
        self.calls += 1
        return self.inner.score(sentences, themes, progress)


def write_srt(folder: Path, name: str, lines: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    blocks = [
        f"{i}\n00:00:{i:02d},000 --> 00:00:{i:02d},900\n{line}\n"
        for i, line in enumerate(lines, start=1)
    ]
    path = folder / name
    path.write_text("\n".join(blocks), encoding="utf-8")
    return path


@pytest.fixture
def corpus_dir(tmp_path) -> Path:
    folder = tmp_path / "data" / "subtitles"
    write_srt(folder, "S01E01.srt", [FIGHT, "Friends don't lie.", LOVE, "[door slams]"] * 3)
    write_srt(folder, "S01E02.srt", [LIE, "We will find Will. I know he is alive.", FIGHT])
    return folder


def test_parse_themes_trims_and_keeps_order():
    assert parse_themes([" battle ", "self   development", "love"]) == [
        "battle",
        "self development",
        "love",
    ]


@pytest.mark.parametrize(
    ("themes", "message"),
    [
        ([], "theme list is empty"),
        (["love", "  "], "contains an empty theme"),
        (["love", "battle", "Love"], "theme 'Love' is given twice"),
    ],
)
def test_bad_theme_lists_are_errors(themes, message):
    with pytest.raises(UserError, match=message):
        parse_themes(themes)


def test_sentences_are_split_and_cue_only_fragments_dropped():
    assert split_sentences("Hi. Where is Will? ... !") == ["Hi.", "Where is Will?"]


def test_corpus_without_dialogue_is_an_error(tmp_path):
    path = write_srt(tmp_path / "subs", "S01E01.srt", ["[thunder]", "(GROWLS)", "♪ ♪"])
    captions = load_subtitles(path).records
    with pytest.raises(UserError, match=r"S01E01.srt: no dialogue to score"):
        episodes_from_captions(captions, str(path))


def test_minilm_scores_order_themes_sensibly():
    scores = EmbeddingThemeScorer(shared_encoder()).score([FIGHT, LOVE, LIE], THEMES)
    assert scores.shape == (3, len(THEMES))
    assert torch.allclose(scores.sum(dim=1), torch.ones(3), atol=1e-5)
    col = {t: i for i, t in enumerate(THEMES)}
    assert scores[0, col["battle"]] > scores[0, col["love"]]
    assert scores[1, col["love"]] > scores[1, col["battle"]]
    assert scores[2, col["betrayal"]] > scores[2, col["friendship"]]
    assert int(scores[0].argmax()) == col["battle"]


def test_repeated_sentences_get_identical_scores():
    scores = EmbeddingThemeScorer(shared_encoder()).score([FIGHT, LOVE, FIGHT], THEMES)
    assert torch.equal(scores[0], scores[2])


def test_scores_per_episode_and_window_are_means_of_sentence_scores():
    scorer = EmbeddingThemeScorer(shared_encoder())
    themes = ["battle", "love", "betrayal"]
    episodes = [Episode("S01E01", (FIGHT, LOVE, LIE, FIGHT, LOVE)), Episode("S01E02", (LIE,))]
    result = score_corpus(episodes, themes, scorer, window=2)
    sentence = scorer.score([*episodes[0].sentences, LIE], themes).numpy()
    assert list(result.per_episode.index) == ["S01E01", "S01E02"]
    assert list(result.per_episode["sentences"]) == [5, 1]
    assert result.per_episode.loc["S01E01", themes].to_numpy() == pytest.approx(
        sentence[:5].mean(axis=0), abs=1e-5
    )
    windows = result.per_window
    assert len(windows) == math.ceil(5 / 2) + 1
    assert list(windows["first"]) == [0, 2, 4, 0] and list(windows["last"]) == [1, 3, 4, 0]
    assert windows.loc[1, themes].to_numpy() == pytest.approx(sentence[2:4].mean(axis=0), abs=1e-5)
    overall = result.overall
    assert overall.to_numpy() == pytest.approx(sentence.mean(axis=0), abs=1e-5)
    assert overall.idxmax() in {"battle", "love"}


def test_cache_hits_on_the_same_question_and_misses_when_themes_change(tmp_path):
    cache = ThemeCache(tmp_path / "cache")
    scorer = CountingScorer()
    episodes = [Episode("S01E01", (FIGHT, LOVE, LIE))]
    first, hit = cache.score(episodes, ["battle", "love"], scorer)
    assert not hit and scorer.calls == 1
    again, hit = cache.score(episodes, ["battle", "love"], scorer)
    assert hit and scorer.calls == 1
    assert_frame_equal(again.per_episode, first.per_episode, check_dtype=False, atol=1e-12)
    assert_frame_equal(again.per_window, first.per_window, check_dtype=False, atol=1e-12)
    _, hit = cache.score(episodes, ["battle", "betrayal"], scorer)
    assert not hit and scorer.calls == 2
    _, hit = cache.score([Episode("S01E01", (FIGHT, LOVE))], ["battle", "love"], scorer)
    assert not hit and scorer.calls == 3


def test_theme_job_writes_scores_and_metrics(corpus_dir, tmp_path):
    (spec,) = [j for j in stnlp_training_jobs(Settings()) if j.name == "classifier-theme"]
    params = spec.resolved_hyperparameters("tiny", {"themes": ["battle", "love", "betrayal"]})
    ctx = TrainingContext.in_directory(
        tmp_path / "run", "run-1", spec.name, params, corpus_dir.parent
    )
    outcome = run(ctx)
    assert outcome.metrics["episodes"] == 2
    # S01E01: 3 x (fight 1, friends 1, love 3, a cue 0); S01E02: lie 2, find Will 2, fight 1
    assert outcome.metrics["sentences"] == 3 * 5 + 5
    assert set(outcome.metrics["overall"]) == {"battle", "love", "betrayal"}
    payload = json.loads((ctx.output_dir / RESULT_FILE).read_text())
    assert payload["themes"] == ["battle", "love", "betrayal"] and payload["window"] == 20
    assert (ctx.output_dir / "per_episode.csv").read_text().startswith("episode,sentences,")
    assert ctx.read_metrics()[-1]["top_theme"] == outcome.metrics["top_theme"]


def tiny_nli(tmp_path: Path) -> NliThemeScorer:
    """A real zero-shot pipeline over a tiny random BART NLI model (hub weights unreachable)."""
    tokenizer = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
    config = BartConfig(
        vocab_size=tokenizer.vocab_size,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.sep_token_id,
        id2label={0: "contradiction", 1: "neutral", 2: "entailment"},
        label2id={"contradiction": 0, "neutral": 1, "entailment": 2},
    )
    torch.manual_seed(0)
    return NliThemeScorer(BartForSequenceClassification(config).eval(), tokenizer, "tiny-bart")


def test_nli_scorer_runs_the_zero_shot_pipeline_per_sentence_and_theme(tmp_path):
    scorer = tiny_nli(tmp_path)
    seen = []
    scores = scorer.score([FIGHT, LOVE, LIE], ["battle", "love"], seen.append)
    assert scores.shape == (3, 2)
    assert ((scores > 0) & (scores < 1)).all()
    assert sum(seen) == 3
    assert scorer.method == "nli:tiny-bart"


def test_nli_hub_model_offline_is_a_clear_error():
    with pytest.raises(
        UserError, match=r"'valhalla/distilbart-mnli-12-3' is not available offline"
    ):
        NliThemeScorer.from_hub()


def test_tab_scores_an_upload_then_answers_from_cache(corpus_dir, tmp_path):
    settings = Settings(store=str(tmp_path / "store"))
    cache = ThemeCache(tmp_path / "cache")
    files = [str(p) for p in sorted(corpus_dir.glob("*.srt"))]
    episodes = theme_tab.load_corpus(theme_tab.UPLOAD, files)
    themes = theme_tab.pick_themes(["battle", "love"], " betrayal , ")
    assert themes == ["battle", "love", "betrayal"]
    result, source = theme_tab.theme_scores(settings, episodes, themes, 20, cache)
    assert source == f"{theme_tab.EMBEDDING} (computed now)"
    _, source = theme_tab.theme_scores(settings, episodes, themes, 20, cache)
    assert source == f"{theme_tab.EMBEDDING} (cached)"
    bars, table, lift = theme_tab.views(result)
    assert list(bars["theme"]) == themes and list(table["episode"]) == ["S01E01", "S01E02"]
    # S01E01 is the love episode, S01E02 the betrayal one: each stands out against the series
    assert list(table["most distinctive"].str.split().str[0]) == ["love", "betrayal"]
    assert list(lift.columns) == ["episode", *themes]
    scorer, _ = theme_tab.live_scorer(settings)
    assert theme_tab.live_scorer(settings)[0] is scorer  # loaded once per process, not per click
    with pytest.raises(UserError, match="no .srt files uploaded"):
        theme_tab.load_corpus(theme_tab.UPLOAD, [])
    with pytest.raises(UserError, match="given twice"):
        theme_tab.pick_themes(["love"], "LOVE")


def test_tab_shows_published_scores_when_they_answer_the_question(corpus_dir, tmp_path):
    settings = Settings(store=str(tmp_path / "store"))
    themes = ["battle", "love"]
    params = {"themes": themes, "window": 20}
    ctx = TrainingContext.in_directory(
        tmp_path / "run", "run-1", "classifier-theme", params, corpus_dir.parent
    )
    run(ctx)
    version = ModelRegistry(open_stores(settings).models).publish(
        "classifier-theme", ctx.output_dir
    )
    episodes = theme_tab.load_corpus(theme_tab.SAMPLE, None, corpus_dir.parent)
    result, source = theme_tab.theme_scores(settings, episodes, themes, 20, ThemeCache(tmp_path))
    assert source == f"registry: classifier-theme {version} (published scores)"
    assert list(result.per_episode.index) == ["S01E01", "S01E02"]
    _, source = theme_tab.theme_scores(settings, episodes, ["love"], 20, ThemeCache(tmp_path))
    assert source.endswith("(computed now)")
    header = theme_tab.model_source(type("App", (), {"settings": settings})())
    assert header.startswith("computed live")  # the tab's own question is the sample corpus
    assert f"classifier-theme {version} scored another corpus" in header


def test_sentences_about_no_theme_do_not_vote():
    scorer = EmbeddingThemeScorer(shared_encoder())
    scores = scorer.score(["Yeah.", "I know.", FIGHT], THEMES)
    assert scores[0].sum() == 0 and scores[1].sum() == 0  # on main: a full vote each
    assert float(scores[2].sum()) == pytest.approx(1.0)
    result = score_corpus([Episode("S01E01", ("Yeah.", "I know.", FIGHT, LOVE))], THEMES, scorer)
    assert int(result.per_episode.loc["S01E01", "relevant"]) == 2
    assert float(result.per_episode.loc["S01E01", THEMES].sum()) == pytest.approx(0.5)


def test_the_onnx_encoder_gives_the_torch_encoders_embeddings():
    from stnlp.plugins.classifier.onnx_encoder import theme_encoder

    texts = [FIGHT, LOVE, LIE, "Okay."]
    fast = theme_encoder("onnx").encode(texts)
    exact = shared_encoder().encode(texts)
    assert (fast * exact).sum(dim=1).min() > 0.9999
    with pytest.raises(UserError, match="theme encoder must be one of"):
        theme_encoder("int4")


def test_the_demo_preset_answers_the_tabs_default_question(tmp_path):
    """`stnlp demo` trains the theme job on its `local` preset over the sample: the Themes tab
    then serves those published scores for its default settings, and says so."""
    from stnlp.runtime.data import SAMPLE_DIR

    settings = Settings(store=str(tmp_path / "store"))
    spec = next(j for j in stnlp_training_jobs(settings) if j.name == "classifier-theme")
    params = spec.resolved_hyperparameters("local")
    ctx = TrainingContext.in_directory(tmp_path / "run", "run-1", spec.name, params, SAMPLE_DIR)
    run(ctx)
    version = ModelRegistry(open_stores(settings).models).publish(spec.output_model, ctx.output_dir)
    header = theme_tab.model_source(type("App", (), {"settings": settings})())
    assert header.startswith(f"trained scores for the default settings; registry: "
                             f"classifier-theme {version}")  # fmt: skip
