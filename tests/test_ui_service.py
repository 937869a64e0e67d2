"""The hosted interface's systemd unit: restarts on failure, reads its stack and login from SSM."""

from __future__ import annotations

import pytest

from stnlp.common.service import ServiceConfig, render_unit


def _parse(text: str) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
        elif line.strip():
            key, _, value = line.partition("=")
            current.append((key, value))
    return sections


def test_unit_runs_stnlp_serve_from_the_stack_registry_with_a_login():
    config = ServiceConfig(stack="dev", region="eu-west-1", auth_parameter="/stnlp/dev/auth")
    unit = _parse(render_unit(config))
    service = dict(unit["Service"])
    environment = [v.strip('"') for k, v in unit["Service"] if k == "Environment"]
    assert service["Restart"] == "on-failure"
    assert service["ExecStart"].startswith("/opt/stnlp/.venv/bin/stnlp serve --host 0.0.0.0")
    assert "--max-file-size 10mb" in service["ExecStart"]
    assert {"STNLP_STORE=s3", "STNLP_STACK=dev", "STNLP_REGION=eu-west-1"} <= set(environment)
    assert "STNLP_AUTH_SSM_PARAMETER=/stnlp/dev/auth" in environment
    assert not any(e.startswith("STNLP_AUTH_USERNAME") for e in environment)
    assert service["DynamicUser"] == "yes" and service["NoNewPrivileges"] == "yes"
    assert dict(unit["Install"])["WantedBy"] == "multi-user.target"


def test_unit_values_with_quotes_are_refused():
    with pytest.raises(ValueError, match="quotes"):
        render_unit(ServiceConfig(stack='de"v', region="eu-west-1", auth_parameter="/p"))
