"""The rendered user data of a launch, run end to end in bash as on an instance.

The script is the one RunInstances carried (read back from moto), with its absolute paths moved
under a sandbox folder. PATH holds shims for `shutdown` (terminates the moto instance, as the
template's shutdown behaviour does) and `aws` (real boto3 calls against moto); the metadata stub
answers for the instance; pip sees no index but a local folder holding only the files the
launch uploaded. The "AMI" is a venv over this environment (its torch included), as the
deep-learning AMI's /opt/pytorch. Every AWS call of the instance is recorded and judged
against the training role's declared policy.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from stnlp.runtime.backends.ec2 import train_ec2
from tests.aws_rules import denials, read_calls
from tests.cloud_stack import REPO, SHIMS
from tests.imds_stub import ImdsStub
from tests.test_aws_rules import facts, policies_of

JOB = "example-linefit"
RECORDER = REPO / "tests" / "recorder"


def _ami(root: Path) -> Path:
    """A venv standing for the AMI's /opt/pytorch: it sees this environment's packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    site = next(root.glob("lib/python*/site-packages"))
    dirs = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    # plain path lines: this environment's packages, not its editable install of the checkout
    (site / "ami.pth").write_text("".join(f"{d}\n" for d in dirs))
    return root


def _run(cloud, tmp_path, run_id: str, **env_extra: str) -> tuple[int, str, Path]:
    instance_id = cloud.record(run_id)["instance_id"]
    raw = cloud.ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    script = base64.b64decode(raw["UserData"]["Value"]).decode()
    box = tmp_path / "instance"
    ami = _ami(box / "opt" / "pytorch")
    index = box / "index"
    index.mkdir(parents=True)
    for key in cloud.stores.models.list("packages/sha256/"):
        cloud.stores.models.download_file(key, index / key.rsplit("/", 1)[1])
    script = (script.replace("/opt/pytorch", str(ami)).replace("/opt/stnlp", str(box / "stnlp"))
              .replace("/var/log/", f"{box}/log/").replace("/tmp/stnlp-", f"{box}/tmp/stnlp-"))
    for folder in ("log", "tmp"):
        (box / folder).mkdir()
    imds = ImdsStub(instance_id).start()
    record = tmp_path / "calls.jsonl"
    env = cloud.instance_env(box / "work", imds.url, STNLP_PREFLIGHT_GPUS="0")
    env.update(
        PATH=os.pathsep.join([str(RECORDER), str(SHIMS), os.path.dirname(sys.executable),
                              "/usr/bin", "/bin"]),
        PYTHONPATH=str(RECORDER), STNLP_AWS_RECORD=str(record), STNLP_AWS_PRINCIPAL="training",
        PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL=index.as_uri(), PIP_NO_CACHE_DIR="1",
        **env_extra,
    )  # fmt: skip
    env.pop("PIP_FIND_LINKS", None)
    env.pop("PIP_EXTRA_INDEX_URL", None)
    out = (box / "tmp" / "console.log").open("wb")
    proc = subprocess.Popen(["bash", "-c", script], env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=box)
    try:
        proc.wait(240)
    finally:  # what the instance's shutdown ends: the metric loop and anything left
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out.close()
        imds.stop()
    log = (box / "log" / "stnlp-bootstrap.log").read_text(errors="replace")
    return proc.returncode, log, record


def _launch(cloud, **overrides) -> str:
    return train_ec2(cloud.registry.job(JOB), cloud.settings, stores=cloud.stores,
                     ec2=cloud.ec2, overrides=overrides)


def _ended(cloud, run_id: str, result: str) -> dict:
    record = cloud.record(run_id)
    assert (record["state"], record["result"]) == ("cleanup", result), record
    assert cloud.lock_holder(JOB) is None
    assert cloud.instance_state(record["instance_id"]) in ("shutting-down", "terminated")
    return record


def test_boot_to_self_termination_trains_from_the_launched_wheels(cloud, tmp_path):
    """Items 2 and 5: the instance installs only what the launch uploaded (pip has no other
    index), keeps the AMI's torch, trains, publishes, and shuts itself down."""
    run_id = _launch(cloud, steps=3)
    status, log, record = _run(cloud, tmp_path, run_id)
    assert status == 0, log[-3000:]
    _ended(cloud, run_id, "succeeded")
    venv = tmp_path / "instance" / "stnlp" / ".venv"
    check = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import stnlp, torch; print(stnlp.__file__); print(torch.__file__)"],
                           capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    stnlp_file, torch_file = check.stdout.split()
    assert stnlp_file.startswith(str(venv)), "the launched wheel, not the checkout"
    assert not torch_file.startswith(str(venv)), "the AMI's torch, not a reinstalled one"
    assert denials(read_calls(record), policies_of(cloud), facts(cloud)) == []


def test_pip_failure_records_the_run_failed_and_releases_the_lock(cloud, tmp_path):
    """Item 7: a failure before the bootstrap (here pip, its index unreachable for a locked
    dependency) still ends the run failed, frees the lock and terminates the instance."""
    run_id = _launch(cloud)
    lock = next(k for k in cloud.stores.models.list("packages/sha256/") if k.endswith(".txt"))
    broken = cloud.stores.models.get(lock) + b"no-such-dist==1.0 --hash=sha256:" + b"0" * 64
    cloud.stores.models.put(lock, broken)  # the digest check in the user data catches it
    status, log, record = _run(cloud, tmp_path, run_id)
    assert status != 0
    ended = _ended(cloud, run_id, "failed")
    assert ended["error"].startswith("instance user data failed (exit 1) at: download")
    assert denials(read_calls(record), policies_of(cloud), facts(cloud)) == []


@pytest.mark.parametrize("scenario", ["preflight", "crash"])
def test_bootstrap_failures_end_the_run_from_the_user_data(cloud, tmp_path, scenario):
    run_id = _launch(cloud, **({"fail_at_step": 1, "steps": 2} if scenario == "crash" else {}))
    extra = {"STNLP_PREFLIGHT_GPUS": "1"} if scenario == "preflight" else {}
    status, log, _ = _run(cloud, tmp_path, run_id, **extra)
    assert status == 1, log[-3000:]
    ended = _ended(cloud, run_id, "failed")
    expected = "preflight failed" if scenario == "preflight" else "injected failure at step 1"
    assert expected in ended["error"]
