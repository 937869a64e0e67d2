"""A real built-in job (classifier-location, tiny preset, on CPU) through the EC2 bootstrap."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stnlp.runtime.backends.ec2 import train_ec2
from stnlp.runtime.registry import ModelRegistry
from stnlp.runtime.upload import upload_path
from tests.cloud_stack import judged_cloud
from tests.imds_stub import ImdsStub

pytestmark = pytest.mark.slow
JOB = "classifier-location"
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


@pytest.fixture
def cloud(moto_endpoint, release_cache, tmp_path, monkeypatch):
    """A stack with the built-in plugins; its AWS calls are judged at the end."""
    with judged_cloud(moto_endpoint, tmp_path, monkeypatch, disabled="") as made:
        yield made


def test_builtin_job_tiny_preset_runs_through_the_bootstrap(cloud, tmp_path):
    upload_path(SAMPLE, cloud.stores.datasets, progress=False)
    spec = cloud.registry.job(JOB)
    run_id = train_ec2(spec, cloud.settings, stores=cloud.stores, preset="tiny", ec2=cloud.ec2)
    instance_id = cloud.record(run_id)["instance_id"]
    imds = ImdsStub(instance_id).start()
    try:
        env = cloud.instance_env(tmp_path / "instance", imds.url, STNLP_PREFLIGHT_GPUS="0",
                                 STNLP_DISABLED_PLUGINS="")
        (tmp_path / "instance").mkdir()
        done = subprocess.run(
            [sys.executable, "-m", "stnlp.runtime.bootstrap", "--stack", cloud.settings.stack,
             "--job", JOB, "--run-id", run_id],
            env=env, cwd=tmp_path / "instance", capture_output=True, text=True, timeout=300,
        )
    finally:
        imds.stop()
    record = cloud.record(run_id)
    logs = cloud.stores.results.list(f"{cloud.settings.stack}/runs/{run_id}/logs/")
    assert done.returncode == 0, (record.get("error"), done.stderr[-2000:])
    assert (record["state"], record["result"]) == ("cleanup", "succeeded")
    assert any(key.endswith("worker.log") for key in logs)
    registry = ModelRegistry(cloud.stores.models)
    version = registry.latest(spec.output_model)
    assert version == record["model_version"]
    assert registry.manifest(spec.output_model, version)["run_id"] == run_id
    assert cloud.lock_holder(JOB) is None
    assert cloud.instance_state(instance_id) in ("shutting-down", "terminated")
