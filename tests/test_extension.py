"""A third-party plugin package adds a job and a tab with no change to core code."""

from __future__ import annotations

import gradio as gr
import pytest

from stnlp.common.settings import Settings
from stnlp.plugins.manager import build_plugin_manager
from stnlp.runtime.ui import AppContext, build_app
from tests.extension import install_example_plugin
from tests.helpers import run_stnlp


@pytest.fixture
def example_site(tmp_path, monkeypatch):
    """The example plugin installed as a distribution on sys.path."""
    site = install_example_plugin(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    return site


def test_entry_point_plugin_contributes_job_and_tab(example_site):
    registry = build_plugin_manager(Settings())
    info = {p.name: p.origin for p in registry.plugins}
    assert info["example"] == "stnlp-example-plugin"
    assert registry.job("example-linefit").output_model == "line-length"
    assert "Line length" in [tab.title for _, tab in registry.tabs]
    app = build_app(AppContext(Settings(), registry))
    assert isinstance(app, gr.Blocks)


def test_entry_point_plugin_can_be_disabled(example_site):
    registry = build_plugin_manager(Settings(disabled_plugins=("example",)))
    assert "example" not in [p.name for p in registry.plugins]
    assert "example-linefit" not in registry.jobs


def test_stnlp_plugins_lists_the_extension(example_site):
    env = {"PYTHONPATH": str(example_site), "COLUMNS": "200"}
    out = run_stnlp("plugins", env=env, check=True).stdout
    for expected in ("chatbot", "classifier", "network", "example", "example-linefit"):
        assert expected in out
