"""The systemd unit that runs `stnlp serve` on the hosted-interface instance.

The interface host's user data installs the package into ``<prefix>/.venv``, writes this unit to
``/etc/systemd/system/stnlp-serve.service`` and enables it. The service reads everything else at
start from AWS: the stack manifest (buckets, so models come from the stack's registry) from SSM
by stack name, and the login from the SSM SecureString named by ``STNLP_AUTH_SSM_PARAMETER``.
It restarts on failure and runs as a dynamic, unprivileged user with a private state directory.
"""

from __future__ import annotations

from dataclasses import dataclass

UNIT_NAME = "stnlp-serve.service"


@dataclass(frozen=True)
class ServiceConfig:
    """What the unit needs to know about the stack and the install."""

    stack: str
    region: str
    auth_parameter: str
    prefix: str = "/opt/stnlp"
    port: int = 7860
    max_file_size: str = "10mb"


def _quote(value: str) -> str:
    if any(c in value for c in "\"\\\n") or not value:
        raise ValueError(f"unit value {value!r} must be non-empty, without quotes or newlines")
    return f'"{value}"'


def render_unit(config: ServiceConfig) -> str:
    """The text of ``stnlp-serve.service`` for ``config``."""
    env = {
        "STNLP_STORE": "s3",
        "STNLP_STACK": config.stack,
        "STNLP_REGION": config.region,
        "STNLP_AUTH_SSM_PARAMETER": config.auth_parameter,
        "GRADIO_TEMP_DIR": "/var/lib/stnlp/gradio",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HOME": "/var/lib/stnlp",
    }
    environment = "\n".join(f"Environment={_quote(f'{k}={v}')}" for k, v in env.items())
    return f"""\
[Unit]
Description=Stranger Things NLP interface (stnlp serve, stack {config.stack})
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
DynamicUser=yes
StateDirectory=stnlp
WorkingDirectory=/var/lib/stnlp
{environment}
ExecStart={config.prefix}/.venv/bin/stnlp serve --host 0.0.0.0 --port {config.port} \
--max-file-size {config.max_file_size}
Restart=on-failure
RestartSec=5
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
"""
