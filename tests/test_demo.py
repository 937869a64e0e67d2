"""`stnlp demo`'s training half: sample data in, tiny models out, reused until something changes."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from stnlp.common.errors import UserError
from stnlp.common.settings import Settings
from stnlp.plugins.manager import build_plugin_manager
from stnlp.runtime.data import SAMPLE_DIR
from stnlp.runtime.demo import job_fingerprint, train_all
from stnlp.runtime.ui import AppContext, status_markdown
from tests.extension import install_example_plugin

# Only the example plugin's job (seconds on a CPU); the built-in jobs have their own tests.
BUILTINS = ("chatbot", "classifier", "network")


@pytest.fixture
def demo(tmp_path, monkeypatch):
    """Settings on a fresh local store, the example plugin installed, a copy of the sample."""
    monkeypatch.syspath_prepend(str(install_example_plugin(tmp_path / "site")))
    data = tmp_path / "sample"
    shutil.copytree(SAMPLE_DIR, data)
    settings = Settings(store=str(tmp_path / "store"), disabled_plugins=BUILTINS)
    return settings, build_plugin_manager(settings), data


def _actions(jobs):
    return {job.job: (job.action, job.version) for job in jobs}


def test_first_run_trains_and_a_rerun_reuses(demo):
    settings, registry, data = demo
    first = _actions(train_all(settings, registry, data))
    action, version = first["example-linefit"]
    assert action == "trained" and version
    second = _actions(train_all(settings, registry, data))
    assert second["example-linefit"] == ("reused", version)
    assert f"| line-length | example | line-length | {version} |" in status_markdown(
        AppContext(settings, registry)
    )


def test_changed_data_retrains(demo):
    settings, registry, data = demo
    _, version = _actions(train_all(settings, registry, data))["example-linefit"]
    with (data / "transcripts" / "S01E01.csv").open("a", encoding="utf-8") as handle:
        handle.write("Eleven,Friends don't lie.\n")
    action, new_version = _actions(train_all(settings, registry, data))["example-linefit"]
    assert action == "trained" and new_version != version


def test_retrain_flag_and_a_moved_pointer_retrain(demo):
    settings, registry, data = demo
    train_all(settings, registry, data)
    assert _actions(train_all(settings, registry, data, retrain=True))["example-linefit"][0] == (
        "trained"
    )
    from stnlp.runtime.registry import ModelRegistry
    from stnlp.runtime.store import open_stores

    models = ModelRegistry(open_stores(settings).models)
    versions = models.versions("line-length")
    models.rollback("line-length", versions[0])
    assert _actions(train_all(settings, registry, data))["example-linefit"][0] == "trained"


def test_fingerprint_follows_data_spec_and_preset(demo):
    settings, registry, data = demo
    spec = registry.job("example-linefit")
    base = job_fingerprint(spec, data)
    assert job_fingerprint(spec, data) == base
    assert job_fingerprint(dataclasses.replace(spec, presets={"tiny": {"steps": 6}}), data) != base
    assert job_fingerprint(dataclasses.replace(spec, max_runtime_minutes=11), data) != base
    (data / "characters" / "characters.jsonl").write_text("")  # not an input of this job
    assert job_fingerprint(spec, data) == base


def test_bad_inputs_are_one_line_errors(demo, tmp_path):
    settings, registry, data = demo
    with pytest.raises(UserError, match="does not exist"):
        train_all(settings, registry, tmp_path / "nowhere")
    with pytest.raises(UserError, match="STNLP_STORE=s3"):
        train_all(settings.with_overrides(store="s3"), registry, data)
    (data / "locations" / "locations.jsonl").write_text('{"location_name": 3}\n')
    with pytest.raises(UserError, match="locations.jsonl"):
        train_all(settings, registry, data)


class _Jobs:
    """A registry whose only job is ``spec``."""

    def __init__(self, spec):
        self.spec = spec

    def job_specs(self):
        """The one job."""
        return [self.spec]


def test_a_job_trains_on_its_local_preset_where_it_has_one(demo):
    """The chatbots' `local` preset (the packaged SmolLM2) is what the demo trains."""
    from stnlp.runtime.demo import demo_preset
    from stnlp.runtime.registry import fetch_latest

    settings, registry, data = demo
    spec = registry.job("example-linefit")
    both = dataclasses.replace(spec, presets={"tiny": {"steps": 2}, "local": {"steps": 3}})
    assert demo_preset(spec) == "tiny" and demo_preset(both) == "local"
    assert demo_preset(both, ("tiny",)) == "tiny"
    assert demo_preset(dataclasses.replace(spec, presets={})) is None
    [done] = train_all(settings, _Jobs(both), data)
    assert done.fingerprint == job_fingerprint(both, data, "local")
    assert fetch_latest(settings, "line-length").manifest["metrics"]["steps"] == 3
    chatbots = build_plugin_manager(Settings(store=settings.store))
    assert {demo_preset(chatbots.job(job)) for job in ("chatbot-llama", "chatbot-qwen")} == {
        "local"
    }
