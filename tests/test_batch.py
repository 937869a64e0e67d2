"""`stnlp batch`: the theme and network jobs sharded by episode on the local backend, merged
into one version equal to what an unsharded local run of the same job publishes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from stnlp.common.errors import UserError
from stnlp.common.settings import Settings
from stnlp.plugins.manager import build_plugin_manager
from stnlp.runtime.backends.local import sync_datasets
from stnlp.runtime.batch import plan_shards, run_batch, run_local_shards
from stnlp.runtime.registry import ModelRegistry
from stnlp.runtime.runs import list_runs, load_run
from stnlp.runtime.store import open_stores
from stnlp.runtime.training import TrainingContext, run_entrypoint
from stnlp.runtime.upload import upload_path

SAMPLE = Path(__file__).parents[1] / "data" / "sample"


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """A local store holding data/sample (four episodes), and the built-in jobs."""
    root = tmp_path_factory.mktemp("batch")
    settings = Settings(store=str(root / "store"), stack="test")
    stores = open_stores(settings)
    upload_path(SAMPLE, stores.datasets, progress=False)
    return settings, stores, build_plugin_manager(settings), root


def _unsharded(stores, spec, dest: Path) -> Path:
    """What an unsharded local run of ``spec`` (preset tiny) writes: its entrypoint, in this
    process (the worker's call; the encoder and NER load once for both runs)."""
    data = dest / "data"
    sync_datasets(spec, stores, data)
    ctx = TrainingContext.in_directory(dest / "job", "whole", spec.name,
                                       spec.resolved_hyperparameters("tiny"), data)  # fmt: skip
    run_entrypoint(spec.entrypoint, ctx)
    return ctx.output_dir


def _published(stores, model: str, run_id: str, dest: Path) -> tuple[Path, dict]:
    registry = ModelRegistry(stores.models)
    record = load_run(stores, "test", run_id).record
    assert record["result"] == "succeeded", record
    version = registry.latest(model)
    assert version == record["model_version"]
    fetched = registry.fetch(model, version, dest)
    return fetched.path, registry.manifest(model, version)


def _unsharded_and_sharded(loaded, job: str, shards: int):
    settings, stores, registry, root = loaded
    spec = registry.job(job)
    whole_dir = _unsharded(stores, spec, root / job / "a")
    batch = run_batch(spec, settings, shards=shards, stores=stores, preset="tiny",
                      progress=False)  # fmt: skip
    parts_dir, manifest = _published(stores, spec.output_model, batch, root / job / "b")
    assert manifest["sharding"]["shards"] == shards
    plan = manifest["sharding"]["plan"]
    assert sorted(e for shard in plan for e in shard) == ["S01E01", "S01E02", "S01E03", "S01E04"]
    assert len(plan) == shards and all(plan)
    return whole_dir, parts_dir


def test_sharded_themes_equal_the_unsharded_run(loaded):
    whole, merged = _unsharded_and_sharded(loaded, "classifier-theme", 3)
    a, b = (json.loads((d / "themes.json").read_text()) for d in (whole, merged))
    assert (a["corpus_hash"], a["themes"], a["window"]) == (b["corpus_hash"], b["themes"],
                                                             b["window"])  # fmt: skip
    for name in ("per_episode.csv", "distinctive.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(whole / name, index_col=0),
                                      pd.read_csv(merged / name, index_col=0), rtol=1e-5)
    pd.testing.assert_frame_equal(pd.read_csv(whole / "per_window.csv"),
                                  pd.read_csv(merged / "per_window.csv"), rtol=1e-5)
    # distinctive = episode minus the series: recomputed over all episodes, so it sums to ~0
    distinctive = pd.read_csv(merged / "distinctive.csv", index_col=0)
    weights = pd.read_csv(merged / "per_episode.csv", index_col=0)["sentences"]
    assert distinctive.mul(weights, axis=0).sum().abs().max() < 1e-9


def test_sharded_network_equals_the_unsharded_run(loaded):
    whole, merged = _unsharded_and_sharded(loaded, "network-characters", 2)
    a, b = (json.loads((d / "network.json").read_text()) for d in (whole, merged))
    assert a["nodes"] and a["edges"]
    assert a == b  # nodes with mentions, degrees and communities; edges with weights
    assert (whole / "edges.csv").read_text() == (merged / "edges.csv").read_text()


def test_a_failed_shard_publishes_nothing_and_a_rerun_resumes(loaded):
    settings, stores, registry, root = loaded
    spec = registry.job("classifier-theme")
    models = ModelRegistry(stores.models)
    before = models.latest(spec.output_model)
    local = run_local_shards(spec, progress=False)

    def lost_second_shard(run, todo, data_dir):
        local(run, todo[:1], data_dir)
        raise RuntimeError("shard 1: instance lost")

    with pytest.raises(RuntimeError, match="instance lost"):
        run_batch(spec, settings, shards=2, stores=stores, preset="tiny",
                  runner=lost_second_shard, progress=False)  # fmt: skip
    record = list_runs(stores, "test", spec.name)[0]
    failed = record["run_id"]
    assert (record["state"], record["result"]) == ("cleanup", "failed")
    assert "instance lost" in record["error"]
    assert models.latest(spec.output_model) == before
    assert stores.results.list("test/locks/") == []
    again = run_batch(spec, settings, shards=2, stores=stores, preset="tiny", progress=False)
    record = load_run(stores, "test", again).record
    assert record["result"] == "succeeded"
    assert record["batch"]["reused"] == {"0": failed}  # shard 0 copied, shard 1 run
    manifest = models.manifest(spec.output_model, models.latest(spec.output_model))
    assert manifest["sharding"]["reused"] == {"0": failed}


def test_the_plan_is_disjoint_and_bounded():
    assert plan_shards(["a", "b", "c", "d", "e"], 2) == [["a", "c", "e"], ["b", "d"]]
    with pytest.raises(UserError, match="between 1 and the corpus's 2"):
        plan_shards(["a", "b"], 3)
    with pytest.raises(UserError, match="twice"):
        plan_shards(["a", "a"], 1)
