"""The object store, against the local directory and S3 on moto's server."""

from __future__ import annotations

import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from stnlp.common.errors import ConflictError, UserError
from stnlp.common.names import manifest_parameter
from stnlp.common.settings import Settings
from stnlp.runtime.manifest import load_manifest, write_local_manifest
from stnlp.runtime.store import LocalStore, NotFoundError, S3Store, StoreError, open_stores
from tests.s3_faults import FailingS3


def test_put_get_etag_list_delete(store):
    etag = store.put("a/b/one.txt", b"one")
    assert store.get_with_etag("a/b/one.txt") == (b"one", etag)
    assert store.etag("a/b/one.txt") == etag
    store.put("a/two.txt", b"two")
    store.put("ab.txt", b"x")
    assert store.list("a/") == ["a/b/one.txt", "a/two.txt"]
    assert store.list("a") == ["a/b/one.txt", "a/two.txt", "ab.txt"]
    assert store.list("a/b/") == ["a/b/one.txt"]
    assert store.list("zzz/") == []
    store.delete("a/b/one.txt")
    store.delete("a/b/one.txt")  # idempotent
    assert not store.exists("a/b/one.txt")
    assert store.etag("a/b/one.txt") is None
    assert store.list("") == ["a/two.txt", "ab.txt"]


def test_missing_key_raises_not_found(store):
    with pytest.raises(NotFoundError, match="missing.json"):
        store.get("missing.json")


def test_if_none_match_creates_only_once(store):
    store.put("lock.json", b"first", if_none_match=True)
    with pytest.raises(ConflictError):
        store.put("lock.json", b"second", if_none_match=True)
    assert store.get("lock.json") == b"first"


def test_if_match_replaces_only_unchanged(store):
    first = store.put("state.json", b"1")
    second = store.put("state.json", b"2", if_match=first)
    with pytest.raises(ConflictError):
        store.put("state.json", b"3", if_match=first)
    assert store.get_with_etag("state.json") == (b"2", second)
    with pytest.raises(ConflictError):
        store.put("absent.json", b"x", if_match=second)
    assert not store.exists("absent.json")


def test_invalid_keys_are_refused(store):
    for key in ("", "/abs", "a/../b", "a//b", ".tmp/x"):
        with pytest.raises(StoreError, match="invalid store key"):
            store.put(key, b"x")


def test_files_and_sync_skip_unchanged(store, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)) * 10)
    assert store.sync_up(src, "raw/x") == ["raw/x/a.txt", "raw/x/sub/b.bin"]
    assert store.sync_up(src, "raw/x") == []
    (src / "a.txt").write_text("alpha changed")
    assert store.sync_up(src, "raw/x/") == ["raw/x/a.txt"]

    dest = tmp_path / "dest"
    assert store.sync_down("raw/x", dest) == ["raw/x/a.txt", "raw/x/sub/b.bin"]
    assert (dest / "sub" / "b.bin").read_bytes() == (src / "sub" / "b.bin").read_bytes()
    assert store.sync_down("raw/x/", dest) == []
    store.download_file("raw/x/a.txt", tmp_path / "one" / "a.txt")
    assert (tmp_path / "one" / "a.txt").read_text() == "alpha changed"
    with pytest.raises(ConflictError):
        store.upload_file("raw/x/a.txt", src / "a.txt", if_none_match=True)


def test_sixteen_threads_one_creator(store):
    wins, losses = [], []
    barrier = threading.Barrier(16)

    def create(i: int) -> None:
        barrier.wait()
        try:
            store.put("race.json", str(i).encode(), if_none_match=True)
            wins.append(i)
        except ConflictError:
            losses.append(i)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(losses) == 15
    assert store.get("race.json") == str(wins[0]).encode()


def test_concurrent_increments_lose_nothing(store):
    store.put("counter", b"0")

    threads = [threading.Thread(target=_bump, args=(store, 10)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get("counter") == b"60"


def _bump(store, times: int) -> None:
    """Add 1 to ``counter`` ``times`` times, each a read then a write conditional on its etag."""
    for _ in range(times):
        while True:
            data, etag = store.get_with_etag("counter")
            try:
                store.put("counter", str(int(data) + 1).encode(), if_match=etag)
                break
            except ConflictError:
                continue


def _bump_local(root: str, times: int) -> None:
    _bump(LocalStore(Path(root)), times)


def test_local_conditional_writes_are_atomic_across_processes(tmp_path):
    store = LocalStore(tmp_path / "s")
    store.put("counter", b"0")
    with ProcessPoolExecutor(max_workers=4) as pool:
        list(pool.map(_bump_local, [str(tmp_path / "s")] * 4, [25] * 4))
    assert store.get("counter") == b"100"
    assert store.list("") == ["counter"]


def test_s3_transient_errors_are_retried(s3_client):
    from tests.conftest import new_bucket

    store = S3Store(new_bucket(s3_client, "retry"), s3_client, backoff=0.001)
    with FailingS3(s3_client, count=3, status=503) as faults:
        etag = store.put("k.json", b"v")
        assert faults.answered == 3
    assert store.get_with_etag("k.json") == (b"v", etag)
    with FailingS3(s3_client, count=2, status=500) as faults:
        assert store.get("k.json") == b"v"
        assert faults.answered == 2


def test_s3_errors_that_persist_name_bucket_and_key(s3_client):
    from tests.conftest import new_bucket

    bucket = new_bucket(s3_client, "fail")
    store = S3Store(bucket, s3_client, attempts=3, backoff=0.001)
    with FailingS3(s3_client, count=10, status=503) as faults, pytest.raises(StoreError) as err:
        store.put("models/x/latest.json", b"v")
    assert faults.answered == 3
    assert f"s3://{bucket}/models/x/latest.json" in str(err.value)
    with FailingS3(s3_client, count=10, status=403) as faults, pytest.raises(StoreError) as err:
        store.get("some/key")
    assert faults.answered == 1  # not transient: no retry
    assert "AccessDenied" in str(err.value) and f"s3://{bucket}/some/key" in str(err.value)
    missing = S3Store("stnlp-no-such-bucket", s3_client, attempts=2, backoff=0.001)
    with pytest.raises(StoreError, match="stnlp-no-such-bucket/k"):
        missing.put("k", b"v")


def test_open_stores_local_layout(tmp_path):
    stores = open_stores(Settings(store=str(tmp_path / "st")))
    stores.models.put("models/m/latest.json", b"{}")
    assert (tmp_path / "st" / "models" / "models" / "m" / "latest.json").exists()
    assert isinstance(stores.datasets, LocalStore)
    assert stores.results.root == tmp_path / "st" / "results"
    settings = Settings(store=str(tmp_path / "st"), stack="dev")
    assert load_manifest(settings)["buckets"] == {n: n for n in ("datasets", "models", "results")}
    with pytest.raises(UserError, match="buckets.results is missing"):
        write_local_manifest(tmp_path / "st", {"buckets": {"datasets": "d", "models": "m"}})
    manifest = {"stack": "dev", "buckets": {"datasets": "d", "models": "m", "results": "r"}}
    write_local_manifest(tmp_path / "st", manifest)
    assert load_manifest(settings) == manifest
    (tmp_path / "st" / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="manifest.json is not valid JSON"):
        load_manifest(settings)


def test_open_stores_s3_reads_the_ssm_manifest(moto_settings, s3_client):
    import json

    from stnlp.runtime.store import s3_client as make_client
    from tests.conftest import new_bucket

    settings = moto_settings.with_overrides(stack="manifest-test")
    with pytest.raises(UserError, match="/stnlp/manifest-test/manifest"):
        open_stores(settings)
    buckets = {n: new_bucket(s3_client, n) for n in ("datasets", "models", "results")}
    ssm = make_client(settings, "ssm")
    ssm.put_parameter(
        Name=manifest_parameter("manifest-test"),
        Type="String",
        Value=json.dumps({"stack": "manifest-test", "buckets": buckets}),
    )
    stores = open_stores(settings)
    stores.results.put("x", b"y")
    assert s3_client.get_object(Bucket=buckets["results"], Key="x")["Body"].read() == b"y"
    ssm.put_parameter(
        Name=manifest_parameter("manifest-test"),
        Type="String",
        Overwrite=True,
        Value=json.dumps({"buckets": {"datasets": "a"}}),
    )
    with pytest.raises(UserError, match="buckets.models is missing"):
        open_stores(settings)


def test_a_checkpoint_renamed_while_it_syncs_is_skipped_then_found(store, tmp_path, monkeypatch):
    """The worker writes ``step-2.tmp`` and renames it to ``step-2`` while the supervisor's
    checkpoint sync walks the folder: the vanished temporary file is not an error."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "step-1").write_bytes(b"one")
    (folder / "step-2.tmp").write_bytes(b"two")
    upload = store.upload_file

    def renaming_first(key, path, **kwargs):
        for written in folder.glob("*.tmp"):  # the worker finishes its other checkpoints
            if written != path:
                written.replace(written.with_suffix(""))
        return upload(key, path, **kwargs)

    monkeypatch.setattr(store, "upload_file", renaming_first)
    assert store.sync_up(folder, "run/checkpoints", live=True) == ["run/checkpoints/step-1"]
    assert store.sync_up(folder, "run/checkpoints", live=True) == ["run/checkpoints/step-2"]
    assert store.get("run/checkpoints/step-2") == b"two"
    (folder / "step-3.tmp").write_bytes(b"three")
    with pytest.raises(FileNotFoundError):  # a finished folder (a publish) stays strict
        store.sync_up(folder, "run/other", live=False)
