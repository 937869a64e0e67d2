"""The classifier plugin's contributions: components, job specs, and its tabs in a real Blocks."""

from __future__ import annotations

import gradio as gr
import pandas as pd
import pytest
import torch

from stnlp.common.errors import UserError
from stnlp.common.settings import Settings
from stnlp.plugins.classifier import theme_tab
from stnlp.plugins.manager import build_plugin_manager
from stnlp.runtime.ui import AppContext

torch.set_num_threads(1)


def test_jobs_are_valid_specs_with_tiny_presets():
    registry = build_plugin_manager(Settings())
    location = registry.job("classifier-location")
    theme = registry.job("classifier-theme")
    assert (location.instance_type, location.gpu_count) == ("g5.xlarge", 1)
    assert location.input_datasets == ("locations",) and theme.input_datasets == ("subtitles",)
    assert location.output_model == "classifier-location"
    assert theme.output_model == "classifier-theme"
    assert theme.gpu_count == 0
    assert location.resolved_hyperparameters("tiny")["base_model"] == "tiny"
    assert theme.resolved_hyperparameters("tiny")["method"] == "embedding"
    names = [c.name for plugin, c in registry.components if plugin == "classifier"]
    assert names == ["classifier-location", "classifier-theme"]


def test_configured_hub_models_flow_into_the_job_specs():
    settings = Settings(
        models={"classifier-location": "distilbert-base-uncased", "classifier-theme": "my/nli"}
    )
    registry = build_plugin_manager(settings)
    assert registry.job("classifier-location").hyperparameters["base_model"] == (
        "distilbert-base-uncased"
    )
    theme = registry.job("classifier-theme").hyperparameters
    assert (theme["method"], theme["nli_model"]) == ("nli", "my/nli")


def test_tabs_build_inside_blocks_and_name_their_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    settings = Settings(store=str(tmp_path / "store"))
    registry = build_plugin_manager(settings)
    app = AppContext(settings, registry)
    tabs = [tab for plugin, tab in registry.tabs if plugin == "classifier"]
    assert [t.name for t in tabs] == ["locations", "themes"]
    with gr.Blocks() as blocks:
        for tab in tabs:
            with gr.Tab(tab.title):
                tab.build(app)
    kinds = {type(block).__name__ for block in blocks.blocks.values()}
    assert {"Label", "BarPlot", "CheckboxGroup", "File", "Dataframe"} <= kinds
    assert tabs[0].model_source(app).startswith("offline fallback: nearest centroid")
    assert "all-MiniLM-L6-v2" in tabs[1].model_source(app)
    handlers = {f.name: f.fn for f in blocks.fns.values()}
    probs = handlers["predict"]("Hawkins Middle School, classrooms and a gym")
    assert len(probs) == 5 and sum(probs.values()) == pytest.approx(1.0)
    status, bars, table, lift, shown = handlers["run"](
        theme_tab.SAMPLE, None, ["battle", "love"], "hope", 20
    )
    assert shown.visible is True  # the results appear only with the first answer
    assert bars.y_lim[0] == 0 and bars.y_lim[1] > bars.value["data"][0][1]
    bars = pd.DataFrame(bars.value["data"], columns=bars.value["columns"])
    assert "computed now" in status and list(bars["theme"]) == ["battle", "love", "hope"]
    sample = theme_tab.load_corpus(theme_tab.SAMPLE, None)
    assert status.startswith(f"Scored {len(sample)} episode(s), ")
    assert "sentences relate to a theme; the others do not vote" in status
    assert "were not used" not in status
    status = handlers["run"](theme_tab.SAMPLE, ["S01E09.srt"], ["love"], "", 20)[0]
    assert "Scored the sample corpus: your 1 uploaded file(s) were not used" in status
    assert list(table["episode"]) == [e.key for e in sample] and len(sample) >= 2
    assert list(lift["episode"]) == list(table["episode"])
    # the sample's episodes differ: not every one stands out for the same theme
    assert table["most distinctive"].str.split().str[0].nunique() >= 2
    with pytest.raises(UserError, match="given twice"):
        handlers["run"](theme_tab.SAMPLE, None, ["love"], "love", 20)
    with pytest.raises(UserError, match="no .srt files uploaded: upload subtitles"):
        handlers["run"](theme_tab.UPLOAD, None, ["love"], "", 20)
    assert "computed live" in tabs[1].model_source(app)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("episode two.srt", "1\n00:00:01,000 --> 00:00:02,000\nHi.\n",
         "episode two.srt: file name has no season/episode tag like S01E02; name subtitle files "
         "like S01E02.srt"),
        ("S01E02.txt", "hello", "S01E02.txt: not a .srt subtitle file; name subtitle files like"),
        ("S01E03.srt", "just some notes\nno timings", "S01E03.srt: no subtitle captions found"),
        ("S01E04.srt", "", "S01E04.srt: the file is empty; name subtitle files like S01E02.srt"),
    ],
)  # fmt: skip
def test_upload_mistakes_name_the_file_by_its_own_name(tmp_path, name, content, message):
    path = tmp_path / "gradio" / "f00d" / name
    path.parent.mkdir(parents=True)
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError) as caught:
        theme_tab.load_corpus(theme_tab.UPLOAD, [str(path)])
    assert str(caught.value).startswith(message) and str(tmp_path) not in str(caught.value)
