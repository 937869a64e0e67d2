"""`stnlp data upload`: validation first, sha256 checksums, unchanged files skipped."""

from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner

from stnlp.common.errors import DataError
from stnlp.runtime.cli.base import cli
from stnlp.runtime.store import S3Store
from stnlp.runtime.upload import plan_upload, stored_sha256, upload
from tests.cloud_stack import TRANSCRIPT, make_cloud

LOCATIONS = [
    {"location_name": "Hawkins Lab", "location_description": "A government lab.",
     "location_type": "lab"},
    {"location_name": "Castle Byers", "location_description": "Will's fort in the woods.",
     "location_type": "fort"},
]  # fmt: skip


@pytest.fixture
def dataset_root(tmp_path):
    """A dataset root with transcripts and locations."""
    root = tmp_path / "data"
    (root / "transcripts").mkdir(parents=True)
    (root / "transcripts" / "S01E01.csv").write_text(TRANSCRIPT)
    (root / "transcripts" / "S01E02.csv").write_text(TRANSCRIPT.replace("Twelve", "Three"))
    (root / "locations").mkdir()
    (root / "locations" / "locations.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in LOCATIONS)
    )
    return root


def test_upload_records_sha256_and_skips_unchanged_files(stores, dataset_root):
    items = plan_upload(dataset_root)
    keys = [item.key for item in items]
    assert keys == ["raw/locations/locations.jsonl", "raw/transcripts/S01E01.csv",
                    "raw/transcripts/S01E02.csv"]
    report = upload(items, stores.datasets, progress=False)
    assert report.uploaded == keys and report.skipped == []
    assert report.bytes_sent == sum(item.size for item in items)
    for item in items:
        expected = hashlib.sha256(item.path.read_bytes()).hexdigest()
        assert stored_sha256(stores.datasets, item.key) == expected
        assert stores.datasets.get(item.key) == item.path.read_bytes()
    if isinstance(stores.datasets, S3Store):
        head = stores.datasets.client.head_object(Bucket=stores.datasets.bucket, Key=keys[1])
        assert head["Metadata"] == {"sha256": items[1].sha256}

    again = upload(plan_upload(dataset_root), stores.datasets, progress=False)
    assert again.uploaded == [] and again.skipped == keys and again.bytes_sent == 0

    changed = dataset_root / "transcripts" / "S01E02.csv"
    changed.write_text(changed.read_text() + "Eleven,Friends don't lie.\n")
    third = upload(plan_upload(dataset_root), stores.datasets, progress=False)
    assert third.uploaded == ["raw/transcripts/S01E02.csv"]
    assert stores.datasets.get("raw/transcripts/S01E02.csv") == changed.read_bytes()


def test_invalid_data_is_refused_before_any_upload(stores, dataset_root):
    bad = dataset_root / "locations" / "locations.jsonl"
    bad.write_text(bad.read_text() + "{not json\n")
    with pytest.raises(DataError, match="locations.jsonl:3"):
        plan_upload(dataset_root)
    assert stores.datasets.list("raw/") == []


def test_cli_uploads_to_a_deployed_stacks_bucket(moto_endpoint, tmp_path, monkeypatch,
                                                 dataset_root):
    cloud = make_cloud(moto_endpoint, tmp_path, monkeypatch)
    monkeypatch.setenv("STNLP_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("STNLP_REGION", "us-east-1")
    monkeypatch.delenv("STNLP_SETTINGS", raising=False)
    monkeypatch.chdir(tmp_path)
    args = ["data", "upload", str(dataset_root / "transcripts"), "--stack",
            cloud.settings.stack, "--quiet"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    bucket = cloud.manifest["buckets"]["datasets"]
    # S01E01.csv, put there by the stack fixture without a recorded sha256, is sent again
    assert first.output.startswith("2 file(s) uploaded (411 bytes), 0 unchanged")
    assert first.output.strip().endswith(f"to s3://{bucket}")
    second = CliRunner().invoke(cli, args)
    assert "0 file(s) uploaded (0 bytes), 2 unchanged" in second.output
