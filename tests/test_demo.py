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
    """A registry of the given jobs, in order."""

    def __init__(self, *specs):
        self.specs = list(specs)

    def job_specs(self):
        """The jobs."""
        return self.specs


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


def _files(manifest):
    return sorted((entry["path"], entry["sha256"]) for entry in manifest["files"])


def test_two_jobs_of_the_same_training_train_once(demo, tmp_path):
    """The second job gets the first's version; training it on its own gives the same files."""
    from stnlp.runtime.registry import ModelRegistry
    from stnlp.runtime.store import open_stores

    settings, registry, data = demo
    first = registry.job("example-linefit")
    twin = dataclasses.replace(first, name="example-twin", output_model="line-twin",
                               description="the same training under another name")  # fmt: skip
    other = dataclasses.replace(first, name="example-other", output_model="line-other",
                                presets={"tiny": {"steps": 4}})  # fmt: skip
    done = {job.job: job for job in train_all(settings, _Jobs(first, twin, other), data)}
    assert [done[j].action for j in ("example-linefit", "example-twin", "example-other")] == [
        "trained", "copied", "trained"
    ]  # fmt: skip
    assert done["example-twin"].source == "example-linefit"
    models = ModelRegistry(open_stores(settings).models)
    source = models.manifest("line-length", done["example-linefit"].version)
    copy = models.manifest("line-twin", done["example-twin"].version)
    assert models.latest("line-twin") == done["example-twin"].version
    assert _files(copy) == _files(source) and copy["metrics"] == source["metrics"]
    assert copy["run_id"] == source["run_id"] and copy["same_training_as"] == {
        "job": "example-linefit", "model": "line-length", "version": source["version"]
    }  # fmt: skip
    alone = Settings(store=str(tmp_path / "alone"), disabled_plugins=BUILTINS)
    [trained] = train_all(alone, _Jobs(twin), data)
    assert trained.action == "trained"
    alone_models = ModelRegistry(open_stores(alone).models)
    assert _files(alone_models.manifest("line-twin", trained.version)) == _files(copy)
    again = {job.job: job.action for job in train_all(settings, _Jobs(first, twin, other), data)}
    assert set(again.values()) == {"reused"}
    retrained = train_all(settings, _Jobs(first, twin), data, retrain=True)
    assert [job.action for job in retrained] == ["trained", "copied"]
    assert models.manifest("line-twin", retrained[1].version)["same_training_as"]["version"] == (
        retrained[0].version
    )


def test_the_chatbots_local_presets_are_one_training_and_their_tiny_ones_two(demo):
    """Both chatbots' `local` preset fine-tune SmolLM2 alike (the demo trains it once); their
    `tiny` presets keep their own architectures (the tests train both)."""
    from stnlp.runtime.demo import training_fingerprint

    settings, _, data = demo
    chatbots = build_plugin_manager(Settings(store=settings.store))
    llama, qwen = (chatbots.job(job) for job in ("chatbot-llama", "chatbot-qwen"))
    assert training_fingerprint(llama, data, "local") == training_fingerprint(qwen, data, "local")
    assert training_fingerprint(llama, data, "tiny") != training_fingerprint(qwen, data, "tiny")
    assert job_fingerprint(llama, data, "local") != job_fingerprint(qwen, data, "local")


def test_a_damaged_model_is_trained_or_copied_again_not_reused(demo):
    """A rerun recovers a model whose file was damaged in the store; an intact copy of it stays."""
    from stnlp.runtime.registry import ModelRegistry
    from stnlp.runtime.store import open_stores

    settings, registry, data = demo
    first = registry.job("example-linefit")
    twin = dataclasses.replace(first, name="example-twin", output_model="line-twin")
    jobs = _Jobs(first, twin)
    before = train_all(settings, jobs, data)
    models = ModelRegistry(open_stores(settings).models)

    def damage(model):
        path = models.fetch(model).path / "model.json"
        path.write_text(path.read_text().replace("{", "{ ", 1))

    damage("line-length")
    after = train_all(settings, jobs, data)
    changed = [job.version != old.version for job, old in zip(after, before, strict=True)]
    assert [job.action for job in after] == ["trained", "reused"] and changed == [True, False]
    damage("line-twin")
    again = train_all(settings, jobs, data)
    assert [job.action for job in again] == ["reused", "copied"]
    assert models.manifest("line-twin", again[1].version)["same_training_as"]["version"] == (
        after[0].version
    )
    for model in ("line-length", "line-twin"):
        models.verify(model, models.latest(model))
