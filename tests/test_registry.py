"""The model registry, against the local store and S3 on moto's server."""

from __future__ import annotations

import json
import threading

import pytest

from stnlp.common.errors import UserError
from stnlp.runtime.registry import CorruptModelError, ModelRegistry, fetch_latest
from stnlp.runtime.store import LocalStore, open_stores
from tests.s3_faults import FailingS3


def _model_dir(root, text: str):
    root.mkdir(parents=True, exist_ok=True)
    (root / "weights.bin").write_bytes(text.encode() * 100)
    (root / "config").mkdir(exist_ok=True)
    (root / "config" / "model.json").write_text(json.dumps({"text": text}))
    return root


def test_publish_fetch_and_manifest(stores, tmp_path):
    registry = ModelRegistry(stores.models)
    assert registry.latest("demo") is None and registry.versions("demo") == []
    source = _model_dir(tmp_path / "m1", "one")
    version = registry.publish(
        "demo", source, base_model="base/x", run_id="run-1", metrics={"loss": 0.5}
    )
    assert registry.latest("demo") == version
    assert registry.versions("demo") == [version]
    assert registry.models() == ["demo"]
    manifest = registry.manifest("demo", version)
    assert manifest["base_model"] == "base/x" and manifest["run_id"] == "run-1"
    assert manifest["metrics"] == {"loss": 0.5}
    assert {f["path"] for f in manifest["files"]} == {"weights.bin", "config/model.json"}
    assert {f["size"] for f in manifest["files"]} == {300, len('{"text": "one"}')}
    fetched = registry.fetch("demo", dest=tmp_path / "out")
    assert fetched.version == version
    assert (fetched.path / "config" / "model.json").read_text() == '{"text": "one"}'
    assert (fetched.path / "weights.bin").read_bytes() == b"one" * 100


def test_new_version_moves_latest_and_rollback_moves_it_back(stores, tmp_path):
    registry = ModelRegistry(stores.models)
    first = registry.publish("demo", _model_dir(tmp_path / "a", "one"))
    second = registry.publish("demo", _model_dir(tmp_path / "b", "two"))
    assert first < second
    assert registry.latest("demo") == second
    assert registry.rollback("demo", first) == second
    assert registry.latest("demo") == first
    assert registry.versions("demo") == [first, second]
    fetched = registry.fetch("demo", dest=tmp_path / "out")
    assert fetched.version == first and (fetched.path / "weights.bin").read_bytes()[:3] == b"one"
    with pytest.raises(UserError, match="has no version"):
        registry.rollback("demo", "v20200101T000000000000-abcdef")
    with pytest.raises(UserError, match="invalid version"):
        registry.rollback("demo", "../other")


def test_corrupted_file_is_refused(stores, stores_settings, tmp_path):
    registry = ModelRegistry(stores.models)
    good = registry.publish("demo", _model_dir(tmp_path / "a", "good"))
    bad = registry.publish("demo", _model_dir(tmp_path / "b", "bad"))
    stores.models.put(f"models/demo/{bad}/weights.bin", b"tampered")
    with pytest.raises(CorruptModelError) as err:
        registry.fetch("demo", bad, dest=tmp_path / "out")
    message = str(err.value)
    assert "'demo'" in message and bad in message and "weights.bin" in message
    assert fetch_latest(stores_settings, "demo") is None
    registry.rollback("demo", good)
    loaded = fetch_latest(stores_settings, "demo")
    assert loaded is not None and loaded.version == good
    assert (loaded.path / "weights.bin").read_bytes() == b"good" * 100


def test_incomplete_version_is_refused(stores, tmp_path):
    registry = ModelRegistry(stores.models)
    version = registry.publish("demo", _model_dir(tmp_path / "a", "x"))
    stores.models.delete(f"models/demo/{version}/config/model.json")
    with pytest.raises(CorruptModelError, match="incomplete: config/model.json is missing"):
        registry.fetch("demo", dest=tmp_path / "out")


def test_local_store_verifies_in_place(tmp_path):
    registry = ModelRegistry(LocalStore(tmp_path / "models"))
    version = registry.publish("demo", _model_dir(tmp_path / "a", "x"))
    fetched = registry.fetch("demo")
    assert fetched.path == tmp_path / "models" / "models" / "demo" / version
    (fetched.path / "weights.bin").write_bytes(b"flipped")
    with pytest.raises(CorruptModelError, match="weights.bin fails its checksum"):
        registry.fetch("demo")


def test_a_verified_version_is_hashed_once_until_a_file_changes(tmp_path, monkeypatch):
    import stnlp.runtime.versions as registry_module

    registry = ModelRegistry(LocalStore(tmp_path / "models"))
    registry.publish("demo", _model_dir(tmp_path / "a", "x"))
    hashed = []
    real = registry_module.sha256_file
    monkeypatch.setattr(registry_module, "sha256_file", lambda p: hashed.append(p) or real(p))
    fetched = registry.fetch("demo")
    assert len(hashed) == 2
    registry.fetch("demo")
    assert len(hashed) == 2  # unchanged files: a stat each, no second read
    weights = fetched.path / "weights.bin"
    weights.write_bytes(b"y" * weights.stat().st_size)  # same size, new contents and mtime
    with pytest.raises(CorruptModelError, match="weights.bin fails its checksum"):
        registry.fetch("demo")


def test_a_tamper_that_keeps_size_and_mtime_is_caught_by_a_long_running_process(tmp_path):
    """Issue #13.13: the digest cache keyed on (size, mtime) let this pass."""
    import os

    registry = ModelRegistry(LocalStore(tmp_path / "models"))
    registry.publish("demo", _model_dir(tmp_path / "a", "x"))
    weights = registry.fetch("demo").path / "weights.bin"
    before = weights.stat()
    weights.write_bytes(b"y" * before.st_size)
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))  # put the mtime back
    assert weights.stat().st_mtime_ns == before.st_mtime_ns
    with pytest.raises(CorruptModelError, match="weights.bin fails its checksum"):
        registry.fetch("demo")


def test_rollback_refuses_a_corrupted_version(stores, tmp_path):
    """Issue #13.13: rollback accepted a version whose files fail their checksums."""
    registry = ModelRegistry(stores.models)
    old = registry.publish("demo", _model_dir(tmp_path / "a", "x"))
    new = registry.publish("demo", _model_dir(tmp_path / "b", "y"))
    stores.models.delete(f"models/demo/{old}/weights.bin")
    stores.models.put(f"models/demo/{old}/weights.bin", b"tampered")
    with pytest.raises(CorruptModelError, match="weights.bin fails its checksum"):
        registry.rollback("demo", old)
    assert registry.latest("demo") == new


def test_bad_input(stores, tmp_path):
    registry = ModelRegistry(stores.models)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="nothing to publish"):
        registry.publish("demo", tmp_path / "empty")
    with pytest.raises(UserError, match="invalid model name"):
        registry.publish("Bad Name", _model_dir(tmp_path / "a", "x"))
    with pytest.raises(UserError, match="no published version"):
        registry.fetch("demo")


def test_concurrent_publishers_keep_every_version(stores, tmp_path):
    registry = ModelRegistry(stores.models)
    sources = [_model_dir(tmp_path / f"m{i}", f"model{i}") for i in range(4)]
    published: list[str] = []
    barrier = threading.Barrier(4)

    def publish(i: int) -> None:
        barrier.wait()
        published.append(registry.publish("demo", sources[i]))

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(published) == registry.versions("demo") and len(set(published)) == 4
    assert registry.latest("demo") in published
    for version in published:
        registry.fetch("demo", version, dest=tmp_path / "out" / version)


def test_fetch_latest_none_when_nothing_published(stores_settings):
    assert fetch_latest(stores_settings, "never-trained") is None


@pytest.mark.parametrize("stores", ["s3"], indirect=True)
def test_publish_survives_s3_errors_for_a_while(stores_settings, tmp_path):
    stores = open_stores(stores_settings)
    stores.models.backoff = 0.001
    registry = ModelRegistry(stores.models)
    with FailingS3(stores.models.client, count=5, status=503) as faults:
        version = registry.publish("demo", _model_dir(tmp_path / "a", "x"))
    assert faults.answered == 5
    assert registry.latest("demo") == version
    registry.fetch("demo", dest=tmp_path / "out")
