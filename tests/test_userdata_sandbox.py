"""The rendered user data of a launch, run end to end in bash as on an instance, from boot to
self-termination, in each way a run ends.

The script is the one RunInstances carried (read back from moto), with its absolute paths moved
under a sandbox folder. PATH holds shims for `shutdown` (terminates the moto instance, as the
template's shutdown behaviour does) and `aws` (real boto3 calls against moto, made by the test
process for the instance: tests/aws_cli.py); the metadata stub answers for the instance. The
"AMI" is a venv over this environment (its torch included), as the deep-learning AMI's
/opt/pytorch. The example plugin declares one dependency the AMI lacks (:data:`DEP`), so the
launch's lock pins it, hash and all; pip on the instance has no index but a folder standing for
PyPI that holds that one wheel, and the launched wheels come from S3 only. Every AWS call of
the instance is recorded and judged against the training role's declared policy.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from stnlp.common.names import PROJECT, manifest_parameter
from stnlp.common.userdata import render_interface_user_data
from stnlp.runtime.backends.ec2 import train_ec2
from stnlp.runtime.backends.package import write_wheel
from stnlp.runtime.registry import ModelRegistry
from stnlp.runtime.store import s3_client
from stnlp.runtime.training import METRICS_FILE
from tests.aws_cli import AwsCli
from tests.aws_rules import read_calls
from tests.cloud_stack import REPO, SHIMS, Cloud, judged_cloud
from tests.imds_stub import ImdsStub

JOB = "example-linefit"
RECORDER = REPO / "tests" / "recorder"
DEP, DEP_MODULE = "stnlp-sandbox-dep", "stnlp_sandbox_dep"
DEP_WHEEL = f"{DEP_MODULE}-1.0-py3-none-any.whl"


def _ami_dirs() -> list[str]:
    """This environment's site-packages folders: what the sandbox's "AMI" provides."""
    return [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]


@pytest.fixture(scope="module")
def pypi(tmp_path_factory) -> Path:
    """A folder standing for PyPI: the one wheel of :data:`DEP` (pure Python, made here)."""
    folder = tmp_path_factory.mktemp("pypi")
    info = f"{DEP_MODULE}-1.0.dist-info"
    write_wheel(folder / DEP_WHEEL, {
        f"{DEP_MODULE}.py": b"ANSWER = 42\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {DEP}\nVersion: 1.0\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
                         b"Tag: py3-none-any\n",
    }, info)  # fmt: skip
    return folder


@pytest.fixture
def cloud(moto_endpoint, release_cache, pypi, tmp_path, monkeypatch) -> Iterator[Cloud]:
    """A stack whose example plugin needs :data:`DEP`, installed on the launching machine (as
    after `pip install`); the AMI provides every other distribution of this environment."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # the lock resolves against `pypi` only
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(pypi))
    provided = sorted({d.metadata["Name"] for d in metadata.distributions(path=_ami_dirs())}
                      - {PROJECT, DEP})  # fmt: skip
    with judged_cloud(moto_endpoint, tmp_path, monkeypatch, requires=(DEP,),
                      ami_packages=provided, interface_packages=provided) as made:
        with zipfile.ZipFile(pypi / DEP_WHEEL) as wheel:
            wheel.extractall(made.site)
        yield made


def _ami(root: Path) -> Path:
    """A venv standing for the AMI's /opt/pytorch: it sees this environment's packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    site = next(root.glob("lib/python*/site-packages"))
    # plain path lines: this environment's packages, not its editable install of the checkout
    (site / "ami.pth").write_text("".join(f"{d}\n" for d in _ami_dirs()))
    return root


class Instance:
    """One launched instance: its user data running in bash in a sandbox folder."""

    def __init__(self, cloud: Cloud, run_id: str, root: Path, index: Path, **env: str):
        self.cloud, self.run_id, self.box = cloud, run_id, root
        self.instance_id = cloud.record(run_id)["instance_id"]
        raw = cloud.ec2.describe_instance_attribute(InstanceId=self.instance_id,
                                                    Attribute="userData")
        script = base64.b64decode(raw["UserData"]["Value"]).decode()
        ami = _ami(root / "opt" / "pytorch")
        self.script = (script.replace("/opt/pytorch", str(ami))
                       .replace("/opt/stnlp", str(root / "stnlp"))
                       .replace("/var/log/", f"{root}/log/")
                       .replace("/tmp/stnlp-", f"{root}/tmp/stnlp-"))  # fmt: skip
        for folder in ("log", "tmp"):
            (root / folder).mkdir()
        self.imds = ImdsStub(self.instance_id).start()
        self.calls, self.shutdowns = root / "calls.jsonl", root / "shutdown.log"
        socket_path = Path(tempfile.mkdtemp(prefix="stnlp-aws-")) / "cli.sock"  # < 108 bytes
        self.cli = AwsCli(cloud.settings.endpoint_url, cloud.settings.region, socket_path,
                          self.calls, principal="training")
        self.env = cloud.instance_env(root / "work", self.imds.url, STNLP_PREFLIGHT_GPUS="0")
        self.env.update(
            PATH=os.pathsep.join([str(SHIMS), os.path.dirname(sys.executable),
                                  "/usr/bin", "/bin"]),
            PYTHONPATH=str(RECORDER), STNLP_AWS_RECORD=str(self.calls),
            STNLP_AWS_PRINCIPAL="training", STNLP_SHIM_LOG=str(self.shutdowns),
            STNLP_AWS_CLI_SOCKET=str(socket_path),
            PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(index),
            PIP_NO_CACHE_DIR="1", **env,
        )  # fmt: skip
        self.proc: subprocess.Popen | None = None

    def boot(self) -> Instance:
        """Start the user data, as cloud-init does."""
        self.streams_before = self._log_streams()
        self.cli.__enter__()
        self.console = (self.box / "tmp" / "console.log").open("wb")
        self.proc = subprocess.Popen(["bash", "-c", self.script], env=self.env,
                                     stdout=self.console, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=self.box)
        return self

    def wait(self, timeout: float = 180) -> int:
        """Wait for the user data to end; stop what the instance's shutdown ends; the status."""
        try:
            self.proc.wait(timeout)
        finally:
            self.stop()
        return self.proc.returncode

    def stop(self) -> None:
        """What the instance's shutdown ends: the metric loop and anything else left."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if not self.console.closed:
            self.console.close()
            self.cli.__exit__()

    def _log_streams(self) -> int:
        group = self.cloud.manifest["log_groups"][JOB]
        return len(s3_client(self.cloud.settings, "logs").describe_log_streams(
            logGroupName=group)["logStreams"])

    @property
    def log(self) -> str:
        """The boot log (what the instance ships to CloudWatch)."""
        return (self.box / "log" / "stnlp-bootstrap.log").read_text(errors="replace")

    def steps_done(self) -> int:
        """Training steps the job has logged on this instance."""
        path = self.box / "work" / "job" / METRICS_FILE
        return path.read_text().count("\n") if path.is_file() else 0

    def assert_self_terminated(self) -> None:
        """The instance shut itself down (the shim was called) and EC2 terminated it; its AWS
        calls were all allowed by the training role's declared policy."""
        deadline = time.monotonic() + 60  # the watchdog's own shutdown may come last
        while (self.cloud.instance_state(self.instance_id) == "running"
               and time.monotonic() < deadline):  # fmt: skip
            time.sleep(0.2)
        assert "shutdown -h now" in self.shutdowns.read_text().splitlines()
        assert self.cloud.instance_state(self.instance_id) in ("shutting-down", "terminated")
        assert self._log_streams() > self.streams_before, "the boot log reached CloudWatch"
        calls = read_calls(self.calls)
        assert calls, "the recorder saw the instance's calls"
        assert self.cloud.denials(calls) == []

    def imports(self, *modules: str) -> dict[str, str]:
        """Where the instance's venv imports each of ``modules`` from (outside any checkout)."""
        venv_python = self.box / "stnlp" / ".venv" / "bin" / "python"
        code = "import importlib, sys\nfor m in sys.argv[1:]: print(importlib.import_module(m)" \
               ".__file__)"
        done = subprocess.run([str(venv_python), "-I", "-c", code, *modules], cwd=self.box,
                              capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
        assert done.returncode == 0, done.stderr
        return dict(zip(modules, done.stdout.split(), strict=True))


@pytest.fixture
def instance(cloud, pypi, tmp_path):
    """Make sandboxed instances for runs of the stack (``index``: pip's stand-in for PyPI)."""
    made: list[Instance] = []

    def make(run_id: str, name: str = "instance", index: Path = pypi, **env: str) -> Instance:
        made.append(Instance(cloud, run_id, tmp_path / name, index, **env))
        return made[-1]

    yield make
    for box in made:
        if box.proc is not None:
            box.stop()
        box.imds.stop()


def _launch(cloud: Cloud, run_id: str | None = None, **overrides) -> str:
    return train_ec2(cloud.registry.job(JOB), cloud.settings, stores=cloud.stores,
                     ec2=cloud.ec2, overrides=overrides, run_id=run_id)


def _ended(cloud: Cloud, run_id: str, result: str) -> dict:
    record = cloud.record(run_id)
    assert (record["state"], record["result"]) == ("cleanup", result), record
    assert cloud.lock_holder(JOB) is None, "the lock is released"
    return record


def _log_names(cloud: Cloud, run_id: str) -> set[str]:
    prefix = f"{cloud.settings.stack}/runs/{run_id}/logs/"
    return {key.removeprefix(prefix) for key in cloud.stores.results.list(prefix)}


def test_spot_notice_keeps_the_run_then_the_relaunch_resumes_and_succeeds(cloud, instance):
    """Spot notice, then success (items 2, 5): each instance installs only what the launch
    shipped (the locked dependency from the index, hash-checked; the launched wheels from S3)
    and keeps the AMI's torch; the interrupted one keeps the run and its lock and terminates;
    the relaunch resumes from the checkpoint, publishes, releases the lock, terminates."""
    run_id = _launch(cloud, steps=6, step_seconds=1.0)  # slow enough for the notice to land
    first = instance(run_id, "first").boot()
    deadline = time.monotonic() + 150
    while first.steps_done() < 2 and first.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    first.imds.send_spot_notice()
    assert first.wait() == 3, first.log[-3000:]
    first.assert_self_terminated()
    record = cloud.record(run_id)
    assert (record["state"], record["result"]) == ("training", None)
    assert record["spot_interruptions"][0]["instance_id"] == first.instance_id
    assert cloud.lock_holder(JOB) == run_id, "an interrupted run keeps its lock to resume"
    prefix = f"{cloud.settings.stack}/runs/{run_id}"
    interrupted_at = json.loads(cloud.stores.results.get(f"{prefix}/checkpoints/state.json"))
    assert 2 <= interrupted_at["step"] < 6

    assert _launch(cloud, run_id=run_id) == run_id
    second = instance(run_id, "second").boot()
    assert second.instance_id != first.instance_id
    assert second.wait() == 0, second.log[-3000:]
    second.assert_self_terminated()
    record = _ended(cloud, run_id, "succeeded")
    assert [e["state"] for e in record["history"]] == [
        "initialization", "data_sync", "training", "results_sync", "cleanup"]
    assert record["attempts"] == 2
    assert record["launches"] == [first.instance_id, second.instance_id]
    steps = [m["step"] for m in json.loads(cloud.stores.results.get(f"{prefix}/training.json"))]
    assert steps == list(range(1, 7)), "the resumed run continues the step count"
    registry = ModelRegistry(cloud.stores.models)
    version = registry.latest("line-length")
    assert version == record["model_version"]
    assert registry.manifest("line-length", version)["run_id"] == run_id
    assert {"bootstrap.log", "worker.log"} <= _log_names(cloud, run_id)
    assert ("PUT", "/latest/api/token") in second.imds.requests, "IMDSv2: a token first"
    venv = str(second.box / "stnlp" / ".venv")
    found = second.imports("stnlp", "stnlp_example", DEP_MODULE, "torch")
    assert found["stnlp"].startswith(venv), "the launched wheel, not the checkout"
    assert found["stnlp_example"].startswith(venv), "the launched plugin wheel"
    assert found[DEP_MODULE].startswith(venv), "the locked dependency, from the index"
    assert not found["torch"].startswith(venv), "the AMI's torch, not a reinstalled one"


def test_pip_failure_records_the_run_failed_and_releases_the_lock(cloud, instance, tmp_path):
    """Item 7: a failure before the bootstrap (pip: the index is unreachable, as from a private
    subnet without NAT, so the locked dependency cannot come) still ends the run failed, frees
    the lock and terminates the instance."""
    run_id = _launch(cloud)
    unreachable = tmp_path / "no-index"
    unreachable.mkdir()
    box = instance(run_id, index=unreachable).boot()
    assert box.wait() == 1, box.log[-3000:]
    box.assert_self_terminated()
    record = _ended(cloud, run_id, "failed")
    assert record["error"] == "instance user data failed (exit 1) at: install the release"
    assert DEP in box.log, "pip says which distribution it could not find"


def test_a_tampered_release_file_fails_its_digest_check(cloud, instance):
    """What S3 serves is checked against the digest the launch put in the user data."""
    run_id = _launch(cloud)
    lock = next(k for k in cloud.stores.models.list("packages/sha256/") if k.endswith(".txt"))
    cloud.stores.models.put(lock, cloud.stores.models.get(lock) + b"evil==6.6.6\n")
    box = instance(run_id).boot()
    assert box.wait() == 1, box.log[-3000:]
    box.assert_self_terminated()
    record = _ended(cloud, run_id, "failed")
    assert record["error"].startswith("instance user data failed (exit 1) at: download")


@pytest.mark.parametrize("scenario", ["preflight", "crash", "manifest"])
def test_bootstrap_failures_end_the_run_and_terminate(cloud, instance, scenario):
    """A failing preflight (no GPU) and a crash in training: the bootstrap records the failure
    with its reason and uploads its logs; the user data's trap finds the run ended. A bootstrap
    that cannot even find its stack (the manifest gone) records nothing: the trap does (item 7).
    """
    overrides = {"fail_at_step": 1, "steps": 2} if scenario == "crash" else {}
    run_id = _launch(cloud, **overrides)
    env = {"STNLP_PREFLIGHT_GPUS": "1"} if scenario == "preflight" else {}
    if scenario == "manifest":
        s3_client(cloud.settings, "ssm").delete_parameter(
            Name=manifest_parameter(cloud.settings.stack))
    box = instance(run_id, **env).boot()
    assert box.wait() == 1, box.log[-3000:]
    box.assert_self_terminated()
    record = _ended(cloud, run_id, "failed")
    if scenario == "preflight":
        assert "preflight failed: gpu: torch sees 0 GPU(s), the job needs 1" in record["error"]
        assert [e["state"] for e in record["history"]] == ["initialization", "failed", "cleanup"]
        assert b"preflight failed" in cloud.stores.results.get(
            f"{cloud.settings.stack}/runs/{run_id}/logs/bootstrap.log")
    elif scenario == "crash":
        assert record["error"] == "RuntimeError: injected failure at step 1"
        assert b"injected failure at step 1" in cloud.stores.results.get(
            f"{cloud.settings.stack}/runs/{run_id}/logs/worker.log")
    else:
        assert record["error"] == "instance user data failed (exit 1) at: bootstrap"
        assert f"stack {cloud.settings.stack!r} has no manifest" in box.log  # in CloudWatch
    assert ModelRegistry(cloud.stores.models).latest("line-length") is None


def test_a_hung_run_is_ended_by_the_watchdog(cloud, instance):
    """The watchdog kills the hung bootstrap at the maximum runtime, records the run failed,
    releases the lock and shuts the instance down; the user data's trap ends as well."""
    run_id = _launch(cloud, steps=3, step_seconds=120)
    box = instance(run_id, STNLP_MAX_RUNTIME_SECONDS="5").boot()
    assert box.wait() == 137, box.log[-3000:]  # the bootstrap was killed (SIGKILL)
    deadline = time.monotonic() + 60
    while cloud.record(run_id)["state"] != "cleanup" and time.monotonic() < deadline:
        time.sleep(0.2)
    box.assert_self_terminated()
    record = _ended(cloud, run_id, "failed")
    # whichever writes first: the watchdog, or the trap that sees the bootstrap killed
    assert record["error"] in ("exceeded the job's maximum runtime; stopped by the watchdog",
                               "instance user data failed (exit 137) at: bootstrap")


def test_the_interface_host_installs_the_published_release_and_starts_its_service(
    cloud, pypi, tmp_path, monkeypatch
):
    """Item 10: Ubuntu 24.04 has no AWS CLI, venv or pip; the host's user data installs them,
    finds the release `stnlp release` published, installs it hash-checked and enables the
    service (apt-get, snap and systemctl are shims; pip and the downloads are real)."""
    from click.testing import CliRunner

    from stnlp.runtime.cli import cli

    for name, value in (("STNLP_ENDPOINT_URL", cloud.settings.endpoint_url),
                        ("STNLP_REGION", cloud.settings.region),
                        ("STNLP_DISABLED_PLUGINS", ",".join(cloud.settings.disabled_plugins))):
        monkeypatch.setenv(name, value)
    released = CliRunner().invoke(cli, ["release", "--stack", cloud.settings.stack])
    assert released.exit_code == 0, released.output
    assert "and 1 locked dependencies for Python 3.12" in released.output
    box = tmp_path / "host"
    bin_dir, calls = box / "bin", box / "calls.txt"
    bin_dir.mkdir(parents=True)
    for name, extra in (("apt-get", ""), ("systemctl", ""), (  # snap "installs" the AWS CLI
            "snap", f'mkdir -p {box}/snap/bin; ln -sf {SHIMS / "aws"} {box}/snap/bin/aws')):
        (bin_dir / name).write_text(f'#!/bin/bash\necho "{name} $*" >> {calls}\n{extra}\n')
        (bin_dir / name).chmod(0o755)
    (box / "etc" / "systemd" / "system").mkdir(parents=True)
    (box / "log").mkdir()
    script = render_interface_user_data(cloud.settings.stack, "us-east-1", 7860,
                                        cloud.manifest["buckets"]["models"])
    for path in ("/opt/stnlp", "/var/log", "/etc/systemd/system", "/snap/bin"):
        script = script.replace(path, f"{box}{path}")
    record = box / "calls.jsonl"
    socket_path = Path(tempfile.mkdtemp(prefix="stnlp-aws-")) / "cli.sock"
    env = {"PATH": os.pathsep.join([str(bin_dir), os.path.dirname(sys.executable), "/usr/bin",
                                    "/bin"]),
           "HOME": str(box), "STNLP_AWS_CLI_SOCKET": str(socket_path),
           "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(pypi),
           "PIP_NO_CACHE_DIR": "1"}  # fmt: skip
    with AwsCli(cloud.settings.endpoint_url, "us-east-1", socket_path, record, "interface"):
        done = subprocess.run(["bash", "-c", script], env=env, cwd=box, capture_output=True,
                              text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    made = calls.read_text().splitlines()
    assert "apt-get install -y -q python3-venv python3-pip" in made
    assert "snap install aws-cli --classic" in made, "Ubuntu has no aws: the snap brings it"
    assert made[-2:] == ["systemctl daemon-reload", "systemctl enable --now stnlp-serve.service"]
    unit = (box / "etc" / "systemd" / "system" / "stnlp-serve.service").read_text()
    venv = box / "opt" / "stnlp" / ".venv"
    assert f"ExecStart={venv}/bin/stnlp serve --host 0.0.0.0 --port 7860" in unit
    assert (venv / "bin" / "stnlp").is_file(), "the service's command was installed"
    found = subprocess.run([str(venv / "bin" / "python"), "-I", "-c",
                            f"import stnlp, {DEP_MODULE}; print(stnlp.__file__)"],
                           cwd=box, capture_output=True, text=True, env={"PATH": "/usr/bin"})
    assert found.stdout.startswith(str(venv)), found.stderr
    assert cloud.denials(read_calls(record)) == []
