"""The instance bootstrap in a sandbox: a temp folder for the instance, the metadata stub with
the spot notice, S3/EC2/SSM on moto's server. Each run is launched by the EC2 backend from the
job's launch template, and its "instance" is a `python -m stnlp.runtime.bootstrap` process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stnlp.runtime.backends.ec2 import train_ec2
from stnlp.runtime.registry import ModelRegistry
from stnlp.runtime.training import METRICS_FILE
from tests.cloud_stack import Cloud
from tests.imds_stub import ImdsStub

JOB = "example-linefit"


@pytest.fixture
def sandbox(cloud):
    """Make sandboxes; their metadata stubs stop (and processes die) at teardown."""
    made: list[Sandbox] = []

    def make(run_id: str, root: Path, **env: str) -> Sandbox:
        made.append(Sandbox(cloud, run_id, root, **env))
        return made[-1]

    yield make
    for box in made:
        if box.proc is not None and box.proc.poll() is None:
            box.proc.kill()
            box.proc.wait()
        box.imds.stop()


class Sandbox:
    """One launched instance: its moto id, metadata stub and bootstrap process."""

    def __init__(self, cloud: Cloud, run_id: str, root: Path, **env: str):
        self.cloud = cloud
        self.run_id = run_id
        self.instance_id = cloud.record(run_id)["instance_id"]
        self.imds = ImdsStub(self.instance_id).start()
        self.workdir = root
        self.env = cloud.instance_env(root, self.imds.url, **env)
        self.proc: subprocess.Popen | None = None

    def start(self) -> Sandbox:
        """Start the bootstrap as the instance's user data would."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "stnlp.runtime.bootstrap", "--stack",
                   self.cloud.settings.stack, "--job", JOB, "--run-id", self.run_id]
        self.proc = subprocess.Popen(command, env=self.env, cwd=self.workdir,
                                     start_new_session=True, stderr=subprocess.PIPE, text=True)
        return self

    def wait(self, timeout: float = 90) -> int:
        """Wait for the bootstrap to exit; return its status."""
        self.proc.wait(timeout)
        return self.proc.returncode

    def steps_done(self) -> int:
        """Steps the job has logged on this instance."""
        path = self.workdir / "job" / METRICS_FILE
        try:
            return path.read_text().count("\n")
        except FileNotFoundError:
            return 0


def _launch(cloud: Cloud, **overrides) -> str:
    spec = cloud.registry.job(JOB)
    return train_ec2(spec, cloud.settings, stores=cloud.stores, overrides=overrides, ec2=cloud.ec2)


def _log_keys(cloud: Cloud, run_id: str) -> set[str]:
    prefix = f"{cloud.settings.stack}/runs/{run_id}/logs/"
    return {key.removeprefix(prefix) for key in cloud.stores.results.list(prefix)}


def _assert_ended(
    cloud: Cloud, run_id: str, result: str, instance_id: str, trained: bool = True
) -> dict:
    record = cloud.record(run_id)
    assert record["state"] == "cleanup", record
    assert record["result"] == result, record
    expected_logs = {"bootstrap.log", "worker.log"} if trained else {"bootstrap.log"}
    assert expected_logs <= _log_keys(cloud, run_id)
    assert cloud.lock_holder(JOB) is None
    assert cloud.instance_state(instance_id) in ("shutting-down", "terminated")
    return record


def test_success_trains_publishes_and_terminates(cloud, sandbox, tmp_path):
    run_id = _launch(cloud, steps=4)
    box = sandbox(run_id, tmp_path / "instance", STNLP_PREFLIGHT_GPUS="0").start()
    assert box.wait() == 0, box.proc.stderr.read()
    record = _assert_ended(cloud, run_id, "succeeded", box.instance_id)
    states = [entry["state"] for entry in record["history"]]
    assert states == ["initialization", "data_sync", "training", "results_sync", "cleanup"]
    registry = ModelRegistry(cloud.stores.models)
    version = registry.latest("line-length")
    assert version == record["model_version"]
    manifest = registry.manifest("line-length", version)
    assert manifest["run_id"] == run_id and manifest["metrics"]["steps"] == 4
    metrics = json.loads(cloud.stores.results.get(f"{cloud.settings.stack}/runs/{run_id}/"
                                                  "training.json"))
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    assert ("PUT", "/latest/api/token") in box.imds.requests


def test_failing_preflight_records_failed(cloud, sandbox, tmp_path):
    run_id = _launch(cloud)
    box = sandbox(run_id, tmp_path / "instance").start()  # the job needs 1 GPU; none here
    assert box.wait() == 1
    record = _assert_ended(cloud, run_id, "failed", box.instance_id, trained=False)
    assert b"preflight failed" in cloud.stores.results.get(
        f"{cloud.settings.stack}/runs/{run_id}/logs/bootstrap.log")
    assert "preflight failed: gpu: torch sees 0 GPU(s), the job needs 1" in record["error"]
    assert [e["state"] for e in record["history"]] == ["initialization", "failed", "cleanup"]
    assert ModelRegistry(cloud.stores.models).latest("line-length") is None


def test_crash_in_training_records_failed_with_the_error(cloud, sandbox, tmp_path):
    run_id = _launch(cloud, steps=5, fail_at_step=2)
    box = sandbox(run_id, tmp_path / "instance", STNLP_PREFLIGHT_GPUS="0").start()
    assert box.wait() == 1
    record = _assert_ended(cloud, run_id, "failed", box.instance_id)
    assert record["error"] == "RuntimeError: injected failure at step 2"
    worker_log = cloud.stores.results.get(f"{cloud.settings.stack}/runs/{run_id}/logs/worker.log")
    assert b"injected failure at step 2" in worker_log


def test_spot_notice_checkpoints_then_relaunch_resumes(cloud, sandbox, tmp_path):
    run_id = _launch(cloud, steps=8, step_seconds=0.4)
    first = sandbox(run_id, tmp_path / "first", STNLP_PREFLIGHT_GPUS="0").start()
    deadline = time.monotonic() + 60
    while first.steps_done() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.imds.send_spot_notice()
    assert first.wait() == 3, first.proc.stderr.read()
    record = cloud.record(run_id)
    assert record["state"] == "training" and record["result"] is None
    assert record["spot_interruptions"][0]["instance_id"] == first.instance_id
    assert cloud.lock_holder(JOB) == run_id, "the interrupted run keeps its lock"
    assert cloud.instance_state(first.instance_id) in ("shutting-down", "terminated")
    prefix = f"{cloud.settings.stack}/runs/{run_id}"
    checkpoint = json.loads(cloud.stores.results.get(f"{prefix}/checkpoints/state.json"))
    interrupted_at = checkpoint["step"]
    assert 2 <= interrupted_at < 8

    assert _launch_again(cloud, run_id) == run_id
    second = sandbox(run_id, tmp_path / "second", STNLP_PREFLIGHT_GPUS="0")
    assert second.instance_id != first.instance_id
    assert second.start().wait() == 0, second.proc.stderr.read()
    record = _assert_ended(cloud, run_id, "succeeded", second.instance_id)
    assert record["attempts"] == 2 and record["launches"] == [first.instance_id,
                                                              second.instance_id]
    steps = [m["step"] for m in json.loads(cloud.stores.results.get(f"{prefix}/training.json"))]
    assert steps == list(range(1, 9)), "the resumed run continues the step count"
    version = ModelRegistry(cloud.stores.models).latest("line-length")
    assert ModelRegistry(cloud.stores.models).manifest("line-length", version)["metrics"][
        "steps"] == 8


def _launch_again(cloud: Cloud, run_id: str) -> str:
    spec = cloud.registry.job(JOB)
    return train_ec2(spec, cloud.settings, stores=cloud.stores, run_id=run_id, ec2=cloud.ec2)


def test_hang_is_caught_by_the_watchdog(cloud, sandbox, tmp_path):
    run_id = _launch(cloud, steps=3, step_seconds=120)
    box = sandbox(run_id, tmp_path / "instance", STNLP_PREFLIGHT_GPUS="0",
                  STNLP_MAX_RUNTIME_SECONDS="6").start()
    assert box.wait() == -9, "the watchdog kills the hung bootstrap"
    deadline = time.monotonic() + 60
    while cloud.record(run_id)["state"] != "cleanup" and time.monotonic() < deadline:
        time.sleep(0.2)
    while cloud.instance_state(box.instance_id) == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    # the deadline may pass before or during training, depending on this machine's load
    record = _assert_ended(cloud, run_id, "failed", box.instance_id, trained=False)
    assert record["error"] == "exceeded the job's maximum runtime; stopped by the watchdog"
