"""`stnlp data upload`: every file validated, each upload a new immutable version.

Checked against the contract in GUIDE.md: nothing stored is overwritten, the pointer moves
only after the whole upload landed, a bad file refuses the upload whole (issue #13.4), and the
S3 path goes through the store's retries (issue #13.10).
"""

from __future__ import annotations

import hashlib
import json

import pytest
from click.testing import CliRunner

from stnlp.common.errors import DataError
from stnlp.runtime.cli.base import cli
from stnlp.runtime.store import S3Store
from stnlp.runtime.upload import plan_upload, upload, upload_path
from tests.cloud_stack import TRANSCRIPT, make_cloud
from tests.s3_faults import FailingS3

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


def _datasets(stores):
    from stnlp.runtime.datasets import DatasetStore

    return DatasetStore(stores.datasets)


def _fetched(stores, name, tmp_path) -> dict[str, bytes]:
    dest = tmp_path / "fetched" / name
    _datasets(stores).fetch(name, dest)
    return {p.name: p.read_bytes() for p in dest.iterdir()}


def test_each_upload_is_a_version_with_checksums_and_unchanged_files_are_not_sent(
    stores, dataset_root, tmp_path
):
    plan = plan_upload(dataset_root)
    assert sorted(plan.datasets) == ["locations", "transcripts"]
    report = upload(plan, stores.datasets, progress=False)
    datasets = _datasets(stores)
    first = report.versions["transcripts"]
    assert report.uploaded == [f"raw/locations/{report.versions['locations']}/locations.jsonl",
                               f"raw/transcripts/{first}/S01E01.csv",
                               f"raw/transcripts/{first}/S01E02.csv"]  # fmt: skip
    assert report.bytes_sent == sum(item.size for item in plan.items)
    manifest = datasets.manifest("transcripts", first)
    for entry in manifest["files"]:
        local = dataset_root / "transcripts" / entry["path"]
        assert entry["sha256"] == hashlib.sha256(local.read_bytes()).hexdigest()
        assert stores.datasets.get(entry["key"]) == local.read_bytes()

    again = upload_path(dataset_root, stores.datasets, progress=False)
    assert again.uploaded == [] and again.bytes_sent == 0
    assert sorted(again.unchanged) == ["locations", "transcripts"]
    assert datasets.versions("transcripts") == [first]

    changed = dataset_root / "transcripts" / "S01E02.csv"
    old = changed.read_bytes()
    changed.write_text(changed.read_text() + "Eleven,Friends don't lie.\n")
    third = upload_path(dataset_root, stores.datasets, progress=False)
    second = third.versions["transcripts"]
    assert third.uploaded == [f"raw/transcripts/{second}/S01E02.csv"]
    assert f"raw/transcripts/{first}/S01E01.csv" in third.skipped  # reused, not sent again
    assert datasets.latest("transcripts") == second
    assert _fetched(stores, "transcripts", tmp_path)["S01E02.csv"] == changed.read_bytes()
    # nothing stored was overwritten: the first version still holds the old file
    assert stores.datasets.get(f"raw/transcripts/{first}/S01E02.csv") == old
    datasets.rollback("transcripts", first)
    assert _fetched(stores, "transcripts", tmp_path)["S01E02.csv"] == old


def test_one_file_upload_adds_to_the_current_version(stores, dataset_root, tmp_path):
    upload_path(dataset_root / "transcripts", stores.datasets, progress=False)
    extra = tmp_path / "S02E01.csv"
    extra.write_text(TRANSCRIPT)
    upload_path(extra, stores.datasets, progress=False)
    assert sorted(_fetched(stores, "transcripts", tmp_path)) == [
        "S01E01.csv", "S01E02.csv", "S02E01.csv"]  # fmt: skip


def test_a_junk_file_beside_good_ones_refuses_the_upload_whole(stores, dataset_root, tmp_path):
    """Issue #13.4: a junk file was uploaded and silently replaced the good stored copy."""
    upload_path(dataset_root, stores.datasets, progress=False)
    before = stores.datasets.list("raw/")
    good = _fetched(stores, "transcripts", tmp_path)
    (dataset_root / "transcripts" / "S01E01.csv").write_text("garbage\x00\x01 no header\n")
    (dataset_root / "locations" / "locations.jsonl").write_text("{not json\n")
    with pytest.raises(DataError) as err:
        plan_upload(dataset_root)
    message = str(err.value)
    assert "2 file(s) fail to load" in message and "--skip-bad" in message
    assert "S01E01.csv: header is missing column(s) name, line" in message
    assert "locations.jsonl:1: invalid JSON" in message
    assert stores.datasets.list("raw/") == before  # nothing stored
    assert _fetched(stores, "transcripts", tmp_path) == good

    report = upload_path(dataset_root, stores.datasets, progress=False, skip_bad=True)
    assert report.bad_skipped == ["locations/locations.jsonl", "transcripts/S01E01.csv"]
    assert "locations" not in report.versions  # no good file: it keeps its version
    manifest = _datasets(stores).manifest("transcripts", report.versions["transcripts"])
    assert [e["path"] for e in manifest["files"]] == ["S01E02.csv"]
    assert manifest["skipped"][0]["path"] == "S01E01.csv"


def test_a_file_with_no_records_counts_as_bad(stores, tmp_path):
    folder = tmp_path / "subtitles"
    folder.mkdir()
    (folder / "S01E01.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nHello.\n")
    (folder / "S01E02.srt").write_text("this is not a subtitle file at all\n")
    with pytest.raises(DataError, match=r"S01E02.srt: no records loaded \(skipped 1 malformed"):
        plan_upload(folder)


def test_upload_to_s3_survives_a_503_through_the_stores_retries(s3_client, dataset_root):
    """Issue #13.10: `stnlp data upload` to S3 called boto3 directly; one 503 was a traceback."""
    from stnlp.common.names import BUCKET_KINDS
    from stnlp.runtime.store import Stores
    from tests.conftest import new_bucket

    stores = Stores(*(S3Store(new_bucket(s3_client, k), s3_client, backoff=0.01)
                      for k in BUCKET_KINDS))  # fmt: skip
    with FailingS3(s3_client, count=2, status=503, operation="PutObject") as fault:
        report = upload_path(dataset_root, stores.datasets, progress=False)
    assert fault.answered == 2
    assert sorted(report.versions) == ["locations", "transcripts"]


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
    # S01E01.csv, put there by the stack fixture in the unversioned layout, is sent again
    assert "2 file(s) uploaded (411 bytes), 0 unchanged" in first.output
    assert first.output.strip().endswith(f"to s3://{bucket}")
    second = CliRunner().invoke(cli, args)
    assert "0 file(s) uploaded (0 bytes), 2 unchanged" in second.output
    assert "transcripts: unchanged, still v" in second.output
    listed = CliRunner().invoke(cli, ["data", "versions", "transcripts", "--stack",
                                      cloud.settings.stack])  # fmt: skip
    assert listed.exit_code == 0 and listed.output.count("*") == 1
