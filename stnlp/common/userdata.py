"""User data scripts: the bootstrap of a training instance and of the interface host.

A training instance installs exactly what its launch shipped (stnlp.runtime.backends.package):
the wheels and the dependency lock under ``packages/sha256/<digest>/`` in the models bucket,
each download checked against its sha256, installed with ``pip --require-hashes`` into a venv
that also sees the AMI's own environment (its CUDA build of torch is reused, never
reinstalled). Nothing is installed by name from an index. It then runs
``python -m stnlp.runtime.bootstrap --stack S --job J --run-id R``.

Whatever happens, an ``EXIT`` trap ships the boot log to the job's CloudWatch log group and
shuts the instance down (the launch template makes shutdown terminate it); when the script
fails before or outside the bootstrap (a download, pip, the venv, a bootstrap that died), the
trap first records the run ``failed`` and releases its lock (:mod:`stnlp.common.lastword`,
standard library and AWS CLI only). Exit status 3 is the bootstrap's spot interruption: the
run stays open, holding its lock, for a relaunch to resume. A scheduled ``shutdown`` at the
job's maximum runtime (plus a grace period) backs up the watchdog, and a background loop emits
the ``STNLP/ElapsedMinutes`` metric the overrun alarm watches.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from shlex import quote

from stnlp.common.errors import UserError
from stnlp.common.names import (
    METRIC_ELAPSED,
    METRIC_NAMESPACE,
    PACKAGES_PREFIX,
    interface_auth_parameter,
    log_group_name,
)
from stnlp.common.service import UNIT_NAME, ServiceConfig, render_unit

GRACE_MINUTES = 15
VENV = "/opt/stnlp/.venv"
DIST = "/opt/stnlp/dist"
MAX_BYTES = 16384  # EC2's limit on user data, before base64
RELEASE_POINTER = f"{PACKAGES_PREFIX}current.json"  # what `stnlp release` last published
INTERFACE_PYTHON = "3.12"  # the interface host's Ubuntu 24.04; its release is locked for it
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"  # torch's CPU build, for the host's lock
EXIT_INTERRUPTED = 3  # the bootstrap's exit status after a spot notice (stnlp.runtime.bootstrap)
BOOT_LOG = "/var/log/stnlp-bootstrap.log"
# One PutLogEvents batch: at most 10,000 events and 1 MiB counting 26 bytes per event.
LOG_TAIL_BYTES, LOG_TAIL_EVENTS = 700_000, 9_000
_SAFE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,127}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_FILENAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


def _check(what: str, value: str) -> str:
    if not _SAFE.match(value):
        raise UserError(f"user data: {what} {value!r} must be lowercase letters, digits, dashes")
    return value


@dataclass(frozen=True)
class ShippedFile:
    """A file of the launch's release, as the user data downloads and checks it."""

    key: str
    filename: str
    digest: str


def _fetch(files: Sequence[ShippedFile]) -> str:
    """Shell lines downloading each file from the models bucket and checking its sha256."""
    lines = [f"mkdir -p {DIST}"]
    for shipped in files:
        target = _target(shipped)
        lines.append(f'aws s3api get-object --bucket "$MODELS_BUCKET" --key {quote(shipped.key)} '
                     f"{target} >/dev/null")
        lines.append(_verify(shipped))
    return "\n".join(lines) + "\n"


def _target(shipped: ShippedFile) -> str:
    """Where a release file goes on the machine (its name checked first)."""
    if not _DIGEST.match(shipped.digest) or not _FILENAME.match(shipped.filename):
        raise UserError(f"shipped file {shipped.filename!r} has a bad name or digest")
    return f"{DIST}/{shipped.filename}"


def _verify(shipped: ShippedFile) -> str:
    """The shell line checking a release file against the sha256 the launch recorded."""
    return f'echo "{shipped.digest}  {_target(shipped)}" | sha256sum -c --quiet'


def _install(wheels: Sequence[ShippedFile], lock: ShippedFile) -> str:
    """Shell lines making the venv (seeing the AMI's packages) and installing the release.

    The venv is made without pip of its own: the AMI's pip, seen through ``ami.pth``, installs
    into it. One pip run takes the lock (from the index, hash-checked) and the launched wheels
    (local files, hash-checked); what the AMI already has at a pinned version is kept.
    """
    pins = "\n".join(f"{DIST}/{w.filename} --hash=sha256:{w.digest}" for w in wheels)
    return f"""\
STEP="create the venv"
PY=/opt/pytorch/bin/python3
[ -x "$PY" ] || PY=python3
"$PY" -m venv --without-pip {VENV}
SITE=$({VENV}/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$PY" -c 'import site
for d in site.getsitepackages(): print(f"import site; site.addsitedir({{d!r}})")' > "$SITE/ami.pth"
STEP="install the release"
cat > {DIST}/wheels.txt <<'WHEELS'
{pins}
WHEELS
{VENV}/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \\
  --require-hashes --only-binary=:all: -r {DIST}/{lock.filename} -r {DIST}/wheels.txt
"""


def release_channels(
    wheels: Sequence[ShippedFile], lock: ShippedFile
) -> list[tuple[str, ShippedFile]]:
    """The SageMaker input channel of each release file:
    ``wheel0``, ``wheel1``... then ``lock``."""
    return [*((f"wheel{i}", wheel) for i, wheel in enumerate(wheels)), ("lock", lock)]


def render_container_entry(wheels: Sequence[ShippedFile], lock: ShippedFile) -> str:
    """The entry script of a SageMaker container (a training run or a tuning trial).

    SageMaker has already downloaded each release file into its channel's folder under
    ``$STNLP_RELEASE_DIR`` (default ``/opt/ml/input/data``); the script checks each file's
    sha256, installs the release exactly as a training instance does (:func:`_install`: a
    venv seeing the image's Python environment, ``pip --require-hashes``) and runs
    :mod:`stnlp.runtime.backends.container`, which reads what to do from the environment.
    Arguments (SageMaker's hyperparameters) are ignored.
    """
    lines = [f"mkdir -p {DIST}"]
    for channel, shipped in release_channels(wheels, lock):
        lines.append(f'cp "$D/{channel}/{shipped.filename}" {_target(shipped)}')
        lines.append(_verify(shipped))
    checks = "\n".join(lines)
    return f"""\
#!/bin/bash
# stnlp SageMaker container entry (rendered by stnlp/common/userdata.py)
set -euo pipefail
D="${{STNLP_RELEASE_DIR:-/opt/ml/input/data}}"
STEP="check the launched packages"
{checks}
{_install(wheels, lock)}\
STEP="run"
exec {VENV}/bin/python -m stnlp.runtime.backends.container
"""


def _trap(stack: str, job: str, group: str) -> str:
    """The ``EXIT`` trap: record a failure outside the bootstrap, ship the log, shut down."""
    return f"""\
ship_log() {{
  local stream
  stream="$(date -u +%Y%m%dT%H%M%SZ)-$(cat /var/lib/cloud/data/instance-id 2>/dev/null || hostname)"
  aws logs create-log-stream --log-group-name {group} --log-stream-name "$stream"
  tail -c {LOG_TAIL_BYTES} {BOOT_LOG} | python3 -c 'import json, sys, time
now = int(time.time() * 1000)
lines = [line.rstrip("\\n") or " " for line in sys.stdin][-{LOG_TAIL_EVENTS}:]
print(json.dumps([{{"timestamp": now, "message": line}} for line in lines]))' \\
    > /tmp/stnlp-log-events.json
  aws logs put-log-events --log-group-name {group} --log-stream-name "$stream" \\
    --log-events file:///tmp/stnlp-log-events.json >/dev/null
}}
record_failure() {{
  python3 - "$RESULTS_BUCKET" {stack} {job} "$RUN_ID" "$1" <<'LASTWORD'
{_lastword_source()}LASTWORD
}}
finish() {{
  local status=$?
  if [ "$status" -ne 0 ] && [ "$status" -ne {EXIT_INTERRUPTED} ]; then
    record_failure "instance user data failed (exit $status) at: $STEP" || true
  fi
  ship_log || true
  shutdown -h now
}}
"""


def _lastword_source() -> str:
    return (Path(__file__).with_name("lastword.py")).read_text(encoding="utf-8")


def render_user_data(
    stack: str, job_name: str, region: str, *, run_id: str, buckets: dict[str, str],
    wheels: Sequence[ShippedFile], lock: ShippedFile, max_runtime_minutes: int | None = None,
) -> str:  # fmt: skip
    """The bash user data that installs the launch's release and runs one training run.

    With ``max_runtime_minutes``, the instance also schedules its own shutdown at that runtime
    plus :data:`GRACE_MINUTES`. The result must stay under EC2's 16 KB (:data:`MAX_BYTES`).
    """
    stack, job = _check("stack", stack), _check("job", job_name)
    _check("region", region)
    if not _RUN_ID.match(run_id):
        raise UserError(f"user data: run id {run_id!r} must be letters, digits, dots, dashes")
    for kind in ("models", "results"):
        if not _BUCKET.match(buckets.get(kind, "")):
            raise UserError(f"user data: {kind} bucket {buckets.get(kind)!r} is not a bucket name")
    deadline = ""
    if max_runtime_minutes is not None:
        deadline = f"shutdown -h +{int(max_runtime_minutes) + GRACE_MINUTES}\n"
    group = quote(log_group_name(stack, job))
    script = f"""\
#!/bin/bash
# stnlp training run {run_id}: stack {stack}, job {job} (rendered by stnlp/common/userdata.py)
set -euo pipefail
export STNLP_STACK={stack} STNLP_STORE=s3 STNLP_REGION={region} AWS_DEFAULT_REGION={region}
RUN_ID={run_id}
MODELS_BUCKET={buckets["models"]}
RESULTS_BUCKET={buckets["results"]}
STEP="start"
{_trap(stack, job, group)}\
trap finish EXIT
exec > >(tee -a {BOOT_LOG}) 2>&1
{deadline}STEP="download the launched packages"
{_fetch([*wheels, lock])}{_install(wheels, lock)}\
START=$(date +%s)
( while true; do
    aws cloudwatch put-metric-data --namespace {METRIC_NAMESPACE} \\
      --metric-name {METRIC_ELAPSED} --dimensions Stack={stack},Job={job} \\
      --value $(( ($(date +%s) - START) / 60 )) || true
    sleep 60
  done ) &
STEP="bootstrap"
{VENV}/bin/python -m stnlp.runtime.bootstrap --stack {stack} --job {job} --run-id {run_id}
"""
    if len(script.encode()) > MAX_BYTES:
        raise UserError(f"user data of run {run_id} is {len(script.encode())} bytes; EC2 "
                        f"accepts at most {MAX_BYTES}")
    return script


def render_template_user_data(stack: str, job_name: str) -> str:
    """The launch template's own user data: a run's user data replaces it at every launch, so
    an instance started from the template alone only says so and shuts down."""
    stack, job = _check("stack", stack), _check("job", job_name)
    return f"""\
#!/bin/bash
# stnlp training template: stack {stack}, job {job}. `stnlp train {job} --backend ec2` gives each
# instance the user data of its run; started without one, the instance stops at once.
echo "stnlp: no run for this instance; start runs with: stnlp train {job} --backend ec2"
shutdown -h now
"""


def render_interface_user_data(stack: str, region: str, port: int, models_bucket: str) -> str:
    """The bash user data of the interface host (Ubuntu 24.04): `stnlp serve` as a service.

    Ubuntu ships neither the AWS CLI nor venv/pip, so the script installs them (apt, snap), then
    waits for the release that `stnlp release --stack S` publishes (``packages/current.json``:
    the wheels and the lock, torch's CPU build included, each with its sha256), checks every
    download, installs them with ``pip --require-hashes`` (the lock's files from the index and
    the PyTorch CPU index, the wheels from disk; nothing by name) and starts the service. The
    service restarts on failure; `stnlp serve` reads its login from the SSM SecureString
    ``/stnlp/<stack>/interface-auth`` (``STNLP_AUTH_SSM_PARAMETER``, see
    :mod:`stnlp.runtime.auth`), so no secret is written to the instance's disk.
    """
    stack = _check("stack", stack)
    _check("region", region)
    if not _BUCKET.match(models_bucket):
        raise UserError(f"user data: models bucket {models_bucket!r} is not a bucket name")
    config = ServiceConfig(
        stack=stack,
        region=region,
        auth_parameter=interface_auth_parameter(stack),
        prefix=VENV.removesuffix("/.venv"),
        port=int(port),
    )
    return f"""\
#!/bin/bash
# stnlp interface host: stack {stack} (rendered by stnlp/common/userdata.py)
set -euo pipefail
exec > >(tee -a {BOOT_LOG}) 2>&1
export AWS_DEFAULT_REGION={region}
MODELS_BUCKET={models_bucket}
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q python3-venv python3-pip
command -v aws >/dev/null || snap install aws-cli --classic
export PATH="$PATH:/snap/bin"
mkdir -p {DIST}
until aws s3api get-object --bucket "$MODELS_BUCKET" --key {RELEASE_POINTER} \\
    {DIST}/current.json >/dev/null 2>&1; do
  echo "waiting for a release: run 'stnlp release --stack {stack}'"; sleep 30
done
python3 -c 'import json, sys
release = json.load(open(sys.argv[1]))
for item in [*release["wheels"], release["lock"]]:
    print(item["key"], item["filename"], item["digest"])' {DIST}/current.json > {DIST}/files.txt
: > {DIST}/wheels.txt
while read -r key name digest; do
  aws s3api get-object --bucket "$MODELS_BUCKET" --key "$key" "{DIST}/$name" >/dev/null
  echo "$digest  {DIST}/$name" | sha256sum -c --quiet
  case "$name" in *.whl) echo "{DIST}/$name --hash=sha256:$digest" >> {DIST}/wheels.txt;; esac
done < {DIST}/files.txt
LOCK=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["lock"]["filename"])' \\
  {DIST}/current.json)
python3 -m venv --without-pip {VENV}
python3 -m pip --python {VENV}/bin/python install --quiet --disable-pip-version-check \\
  --no-deps --require-hashes --only-binary=:all: --extra-index-url {TORCH_CPU_INDEX} \\
  -r "{DIST}/$LOCK" -r {DIST}/wheels.txt
cat > /etc/systemd/system/{UNIT_NAME} <<'UNIT'
{render_unit(config)}UNIT
systemctl daemon-reload
systemctl enable --now {UNIT_NAME}
"""
