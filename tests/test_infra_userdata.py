"""User data scripts: valid bash that bootstraps the job and always shuts the instance down."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from stnlp.common.errors import UserError
from stnlp.common.userdata import (
    BOOT_LOG,
    GRACE_MINUTES,
    MAX_BYTES,
    ShippedFile,
    render_interface_user_data,
    render_user_data,
)

WHEEL = ShippedFile(f"packages/sha256/{'a' * 64}/stranger_things_nlp-0.1.0-py3-none-any.whl",
                    "stranger_things_nlp-0.1.0-py3-none-any.whl", "a" * 64)
LOCK = ShippedFile(f"packages/sha256/{'b' * 64}/instance-lock.txt", "instance-lock.txt", "b" * 64)
BUCKETS = {"models": "stnlp-dev-models-123456789012", "results": "stnlp-dev-results-123456789012"}


def render(stack="dev", job="job-a", region="us-east-1", **kwargs):
    """A training run's user data with a one-wheel release."""
    kwargs = {"run_id": "job-a-20260101T000000-abcdef", "buckets": BUCKETS, "wheels": [WHEEL],
              "lock": LOCK, **kwargs}
    return render_user_data(stack, job, region, **kwargs)


def _bash_syntax_ok(script: str) -> None:
    bash = shutil.which("bash")
    assert bash, "bash is needed to check the scripts"
    result = subprocess.run([bash, "-n"], input=script, text=True, capture_output=True)
    assert result.returncode == 0, result.stderr


def test_training_user_data_bootstraps_the_job_and_shuts_down():
    script = render(job="chatbot-llama", region="eu-west-1", max_runtime_minutes=90)
    _bash_syntax_ok(script)
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    trap = lines.index("trap finish EXIT")
    run = lines.index("/opt/stnlp/.venv/bin/python -m stnlp.runtime.bootstrap --stack dev "
                      "--job chatbot-llama --run-id job-a-20260101T000000-abcdef")
    assert trap < run
    assert f"shutdown -h +{90 + GRACE_MINUTES}" in lines
    assert "--dimensions Stack=dev,Job=chatbot-llama" in script
    assert "STNLP_REGION=eu-west-1" in script
    # nothing is installed by name from an index: the shipped files, hash-checked
    assert "stranger-things-nlp" not in script.replace("stranger_things_nlp-0.1.0", "")
    assert f'echo "{"a" * 64}  /opt/stnlp/dist/{WHEEL.filename}" | sha256sum -c --quiet' in lines
    assert "--require-hashes --only-binary=:all: -r /opt/stnlp/dist/instance-lock.txt " \
           "-r /opt/stnlp/dist/wheels.txt" in script
    assert f"/opt/stnlp/dist/{WHEEL.filename} --hash=sha256:{'a' * 64}" in lines
    assert "-m venv --without-pip /opt/stnlp/.venv" in script  # the AMI's pip installs
    assert len(script.encode()) < MAX_BYTES


def test_training_user_data_without_a_deadline_schedules_none():
    assert "shutdown -h +" not in render()


def test_user_data_over_ec2s_16_kb_is_refused():
    wheels = [WHEEL] * 120
    with pytest.raises(UserError, match="EC2 accepts at most 16384"):
        render(wheels=wheels)


def test_interface_user_data_is_a_restarting_service_with_auth():
    script = render_interface_user_data("prod", "us-east-1", 7860, BUCKETS["models"])
    _bash_syntax_ok(script)
    # Ubuntu 24.04 ships no AWS CLI, venv or pip: the script installs them first
    assert "apt-get install -y -q python3-venv python3-pip" in script
    assert "snap install aws-cli --classic" in script
    assert script.index("snap install aws-cli") < script.index("aws s3api get-object")
    assert "STNLP_AUTH_SSM_PARAMETER=/stnlp/prod/interface-auth" in script
    assert "get-parameter --with-decryption" not in script  # serve reads it, not the disk
    assert "ExecStart=/opt/stnlp/.venv/bin/stnlp serve --host 0.0.0.0 --port 7860" in script
    assert "Restart=on-failure" in script
    assert "systemctl enable --now stnlp-serve.service" in script
    # nothing by name: the published release, hash-checked, torch's CPU build in its lock
    assert "pip install --quiet" not in script and "torch==" not in script
    assert "--require-hashes --only-binary=:all: --extra-index-url " \
           "https://download.pytorch.org/whl/cpu" in script


@pytest.mark.parametrize(
    "stack, job, region",
    [
        ("dev; rm -rf /", "job", "us-east-1"),
        ("dev", "job$(id)", "us-east-1"),
        ("dev", "job", "us east"),
    ],
)
def test_names_that_could_inject_shell_are_refused(stack, job, region):
    with pytest.raises(UserError, match="user data"):
        render(stack, job, region)


def test_exit_trap_ships_the_log_to_the_job_log_group_then_shuts_down(tmp_path):
    """Run the script's exit handling for real, with `aws` and `shutdown` stubbed on PATH."""
    boot_log = tmp_path / "boot.log"
    boot_log.write_text("installing\n\nbootstrap failed: no GPU\n")
    calls, events = tmp_path / "calls.txt", tmp_path / "events.json"
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, extra in (
        ("aws", f'case "$*" in *put-log-events*) cp /tmp/stnlp-log-events.json {events};; esac'),
        ("shutdown", ""),
    ):
        stub = stubs / name
        stub.write_text(f'#!/bin/bash\necho "{name} $*" >> {calls}\n{extra}\n')
        stub.chmod(0o755)
    script = render(max_runtime_minutes=5)
    head = script.split("exec > >(tee")[0].replace(BOOT_LOG, str(boot_log))
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "PY": sys.executable}
    result = subprocess.run(  # 3: a spot interruption, the run stays open for its relaunch
        ["bash", "-c", head + "exit 3\n"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 3, result.stderr
    made = calls.read_text().splitlines()
    assert [line.split(" ")[:3] for line in made] == [
        ["aws", "logs", "create-log-stream"],
        ["aws", "logs", "put-log-events"],
        ["shutdown", "-h", "now"],
    ]
    assert "--log-group-name /stnlp/dev/job-a" in made[1]
    messages = [event["message"] for event in json.loads(events.read_text())]
    assert messages == ["installing", " ", "bootstrap failed: no GPU"]


def test_exit_trap_shuts_down_even_when_shipping_the_log_fails(tmp_path):
    calls = tmp_path / "calls.txt"
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, status in (("aws", 255), ("shutdown", 0)):
        stub = stubs / name
        stub.write_text(f'#!/bin/bash\necho "{name} $*" >> {calls}\nexit {status}\n')
        stub.chmod(0o755)
    head = render().split("exec > >(tee")[0]
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "PY": sys.executable}
    subprocess.run(["bash", "-c", head + "exit 0\n"], env=env, capture_output=True)
    assert calls.read_text().splitlines()[-1] == "shutdown -h now"
