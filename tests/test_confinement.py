"""Keys read from a store stay inside their target folder (issue #13.2).

A key like ``raw/<dataset>/../../x`` was written outside the work folder by ``sync_down``; on an
instance that overwrites the unpacked source (code execution under the training role for
anyone who can write a bucket). S3 keys are arbitrary strings, so the hostile keys are written
with the plain S3 client, as someone else's process would. Also: an S3 "folder" marker (a key
ending with ``/``, as the console makes) made every training run fail (issue #13.13).
"""

from __future__ import annotations

import json

import pytest

from stnlp.common.errors import UserError
from stnlp.common.names import BUCKET_KINDS
from stnlp.runtime.backends.local import sync_datasets
from stnlp.runtime.store import LocalStore, S3Store, Stores
from stnlp.runtime.upload import upload_path
from tests.conftest import new_bucket
from tests.kill_harness import SPEC

CSV = b"name,line\nMike,Hello there.\n"
HOSTILE = ["raw/transcripts/../../escape.csv", "raw/transcripts/../x/../../escape.csv",
           "raw/transcripts//etc/escape.csv", "raw/transcripts/./../escape.csv"]  # fmt: skip


@pytest.fixture
def s3(s3_client):
    return Stores(*(S3Store(new_bucket(s3_client, kind), s3_client) for kind in BUCKET_KINDS))


@pytest.mark.parametrize("key", HOSTILE)
def test_a_key_leaving_the_work_folder_is_refused_and_named(s3, tmp_path, key):
    client, bucket = s3.datasets.client, s3.datasets.bucket
    client.put_object(Bucket=bucket, Key="raw/transcripts/S01E01.csv", Body=CSV)
    client.put_object(Bucket=bucket, Key=key, Body=b"import os  # evil")
    work = tmp_path / "work" / "data"
    with pytest.raises(UserError) as err:
        sync_datasets(SPEC, s3, work)
    assert key in str(err.value) and "refusing" in str(err.value)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == []  # refused before anything was written


def test_checkpoint_keys_are_confined_too(s3, tmp_path):
    """The bootstrap restores checkpoints with the same sync_down."""
    client, bucket = s3.results.client, s3.results.bucket
    client.put_object(Bucket=bucket, Key="dev/runs/r1/checkpoints/../../../../escape", Body=b"x")
    with pytest.raises(UserError, match="escape"):
        s3.results.sync_down("dev/runs/r1/checkpoints/", tmp_path / "ckpt")
    assert not list(tmp_path.rglob("escape"))


def _hostile_manifest(stores, entry) -> None:
    from stnlp.runtime.datasets import DatasetStore

    datasets = DatasetStore(stores.datasets)
    version = datasets.versions("transcripts")[0]
    key = f"raw/transcripts/{version}/manifest.json"
    manifest = json.loads(stores.datasets.get(key))
    manifest["files"].append(entry)
    stores.datasets.delete(key)
    stores.datasets.put(key, json.dumps(manifest).encode())


@pytest.mark.parametrize("entry", [
    {"path": "../../escape.csv", "sha256": "0" * 64, "size": 1, "key": "raw/transcripts/x"},
    {"path": "ok.csv", "sha256": "0" * 64, "size": 1, "key": "raw/../models/secret"},
    {"path": "ok.csv", "sha256": "0" * 64, "size": 1, "key": "packages/stnlp.whl"},
    {"path": "/etc/escape.csv", "sha256": "0" * 64, "size": 1, "key": "raw/transcripts/x"},
])  # fmt: skip
def test_a_manifest_entry_leaving_its_folders_is_refused(stores, tmp_path, entry):
    folder = tmp_path / "transcripts"
    folder.mkdir()
    (folder / "S01E01.csv").write_bytes(CSV)
    upload_path(folder, stores.datasets, progress=False)
    _hostile_manifest(stores, entry)
    with pytest.raises(UserError):
        sync_datasets(SPEC, stores, tmp_path / "work" / "data")
    assert not list(tmp_path.rglob("escape.csv"))


def test_a_folder_marker_does_not_break_training_data(s3, tmp_path):
    """A key ending with ``/`` (the S3 console's folder) is not a file to download."""
    client, bucket = s3.datasets.client, s3.datasets.bucket
    client.put_object(Bucket=bucket, Key="raw/", Body=b"")
    client.put_object(Bucket=bucket, Key="raw/transcripts/", Body=b"")
    client.put_object(Bucket=bucket, Key="raw/transcripts/S01E01.csv", Body=CSV)
    used = sync_datasets(SPEC, s3, tmp_path / "data")  # the unversioned layout
    assert used == {"transcripts": None}
    assert (tmp_path / "data" / "transcripts" / "S01E01.csv").read_bytes() == CSV
    folder = tmp_path / "upload" / "transcripts"
    folder.mkdir(parents=True)
    (folder / "S01E01.csv").write_bytes(CSV)
    version = upload_path(folder, s3.datasets, progress=False).versions["transcripts"]
    assert sync_datasets(SPEC, s3, tmp_path / "again") == {"transcripts": version}


def test_a_local_store_cannot_be_asked_for_a_key_outside_it(tmp_path):
    store = LocalStore(tmp_path / "bucket")
    for key in ("../x", "a/../../x", "/etc/passwd", ".tmp/x"):
        with pytest.raises(Exception, match="invalid store key"):
            store.get(key)
