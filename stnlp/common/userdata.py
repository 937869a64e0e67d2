"""User data scripts: the bootstrap of a training instance and of the interface host.

Both install this package the same way: the newest wheel under ``packages/`` in the stack's
models bucket (found through the SSM manifest) if there is one, else ``stranger-things-nlp``
from PyPI. The training script then runs ``python -m stnlp.runtime.bootstrap --stack S --job J``;
whatever happens, an ``EXIT`` trap shuts the instance down, and the launch template makes
shutdown terminate it. A scheduled ``shutdown`` at the job's maximum runtime (plus a grace
period) is the last line of defence against a hung run, and a background loop emits the
``STNLP/ElapsedMinutes`` metric the overrun alarm watches. On exit the bootstrap's output is
copied to a new stream in the job's CloudWatch log group (the run's own logs go to the results
bucket, see stnlp.runtime.bootstrap).
"""

from __future__ import annotations

import re
from shlex import quote

from stnlp.common.errors import UserError
from stnlp.common.names import (
    METRIC_ELAPSED,
    METRIC_NAMESPACE,
    PACKAGES_PREFIX,
    PROJECT,
    interface_auth_parameter,
    log_group_name,
    manifest_parameter,
)
from stnlp.common.service import UNIT_NAME, ServiceConfig, render_unit

GRACE_MINUTES = 15
VENV = "/opt/stnlp/.venv"
BOOT_LOG = "/var/log/stnlp-bootstrap.log"
# One PutLogEvents batch: at most 10,000 events and 1 MiB counting 26 bytes per event.
LOG_TAIL_BYTES, LOG_TAIL_EVENTS = 700_000, 9_000
_SAFE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def _check(what: str, value: str) -> str:
    if not _SAFE.match(value):
        raise UserError(f"user data: {what} {value!r} must be lowercase letters, digits, dashes")
    return value


def _install_package(stack: str, region: str) -> str:
    """Shell lines that read the manifest and install the package into ``VENV``."""
    return f"""\
export STNLP_STACK={stack} STNLP_STORE=s3 STNLP_REGION={region} AWS_DEFAULT_REGION={region}
PY=/opt/pytorch/bin/python3
[ -x "$PY" ] || PY=python3
command -v aws >/dev/null || "$PY" -m pip install --quiet awscli
MANIFEST=$(aws ssm get-parameter --name {quote(manifest_parameter(stack))} \\
  --query Parameter.Value --output text)
MODELS_BUCKET=$("$PY" -c 'import json,sys; print(json.load(sys.stdin)["buckets"]["models"])' \\
  <<<"$MANIFEST")
"$PY" -m venv --system-site-packages {VENV}
mkdir -p /opt/stnlp/dist
aws s3 cp "s3://$MODELS_BUCKET/{PACKAGES_PREFIX}" /opt/stnlp/dist/ --recursive \\
  --exclude '*' --include '*.whl' || true
WHEEL=$(ls -t /opt/stnlp/dist/*.whl 2>/dev/null | head -n 1 || true)
{VENV}/bin/pip install --quiet "${{WHEEL:-{PROJECT}}}"
"""


def render_user_data(
    stack: str, job_name: str, region: str, *, max_runtime_minutes: int | None = None
) -> str:
    """The bash user data that bootstraps one training job on a fresh instance.

    With ``max_runtime_minutes``, the instance also schedules its own shutdown at that runtime
    plus :data:`GRACE_MINUTES`.
    """
    stack, job = _check("stack", stack), _check("job", job_name)
    _check("region", region)
    deadline = ""
    if max_runtime_minutes is not None:
        deadline = f"shutdown -h +{max_runtime_minutes + GRACE_MINUTES}\n"
    group = quote(log_group_name(stack, job))
    return f"""\
#!/bin/bash
# stnlp training bootstrap: stack {stack}, job {job} (rendered by stnlp/common/userdata.py)
set -euo pipefail
ship_log() {{
  local stream
  stream="$(date -u +%Y%m%dT%H%M%SZ)-$(cat /var/lib/cloud/data/instance-id 2>/dev/null || hostname)"
  aws logs create-log-stream --log-group-name {group} --log-stream-name "$stream"
  tail -c {LOG_TAIL_BYTES} {BOOT_LOG} | "${{PY:-python3}}" -c 'import json, sys, time
now = int(time.time() * 1000)
lines = [line.rstrip("\\n") or " " for line in sys.stdin][-{LOG_TAIL_EVENTS}:]
print(json.dumps([{{"timestamp": now, "message": line}} for line in lines]))' \\
    > /tmp/stnlp-log-events.json
  aws logs put-log-events --log-group-name {group} --log-stream-name "$stream" \\
    --log-events file:///tmp/stnlp-log-events.json >/dev/null
}}
finish() {{
  ship_log || true
  shutdown -h now
}}
trap finish EXIT
exec > >(tee -a {BOOT_LOG}) 2>&1
{deadline}{_install_package(stack, region)}\
START=$(date +%s)
( while true; do
    aws cloudwatch put-metric-data --namespace {METRIC_NAMESPACE} \\
      --metric-name {METRIC_ELAPSED} --dimensions Stack={stack},Job={job} \\
      --value $(( ($(date +%s) - START) / 60 )) || true
    sleep 60
  done ) &
{VENV}/bin/python -m stnlp.runtime.bootstrap --stack {stack} --job {job}
"""


def render_interface_user_data(stack: str, region: str, port: int) -> str:
    """The bash user data of the interface host: `stnlp serve` as a systemd service.

    The service restarts on failure; `stnlp serve` reads its login from the SSM SecureString
    ``/stnlp/<stack>/interface-auth`` (``STNLP_AUTH_SSM_PARAMETER``, see :mod:`stnlp.runtime.auth`),
    so no secret is written to the instance's disk.
    """
    stack = _check("stack", stack)
    _check("region", region)
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
exec > >(tee -a /var/log/stnlp-bootstrap.log) 2>&1
{_install_package(stack, region)}\
cat > /etc/systemd/system/{UNIT_NAME} <<'UNIT'
{render_unit(config)}UNIT
systemctl daemon-reload
systemctl enable --now {UNIT_NAME}
"""
