"""Typed stack configuration, read once.

Every key is declared once in :data:`KEYS` (type, default, description). ``Pulumi.yaml``
declares the same keys for the Pulumi CLI (a test keeps the two equal), the Pulumi program reads
them from ``pulumi.Config`` (:func:`stnlp.infra.config.load_config`), and
``config_from_stack_file`` reads a ``Pulumi.<stack>.yaml`` without Pulumi (for `stnlp cost` and
the launchers).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stnlp.common.errors import UserError
from stnlp.common.names import PROJECT, TAG_MANAGED_BY, TAG_STACK

DEFAULT_REGION = "us-east-1"
# Retention values CloudWatch Logs accepts.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
_STACK_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")


@dataclass(frozen=True)
class ConfigKey:
    """One stack config key: its Pulumi name, type, default and description."""

    name: str
    type: str  # "boolean", "integer", "string" or "array" (of strings), as in Pulumi.yaml
    default: Any
    description: str

    @property
    def field(self) -> str:
        """The :class:`StackConfig` attribute (snake_case of the camelCase key)."""
        return re.sub(r"(?<!^)([A-Z])", r"_\1", self.name).lower()


KEYS: tuple[ConfigKey, ...] = (
    ConfigKey("vpcCidr", "string", "10.42.0.0/16", "CIDR block of the stack's VPC (a /16 to /24)."),
    ConfigKey(
        "natGateway",
        "boolean",
        False,
        "Create a NAT gateway and put training instances in private subnets (costs money "
        "while idle).",
    ),
    ConfigKey("flowLogs", "boolean", False, "Send VPC flow logs to a CloudWatch log group."),
    ConfigKey(
        "spot",
        "boolean",
        True,
        "Launch training instances as spot for jobs that allow it; false means on-demand.",
    ),
    ConfigKey(
        "logRetentionDays",
        "integer",
        14,
        "Retention of the CloudWatch log groups (a value CloudWatch accepts).",
    ),
    ConfigKey(
        "logExpirationDays",
        "integer",
        30,
        "Days after which run logs in the results bucket expire (objects tagged "
        "stnlp-expire=logs).",
    ),
    ConfigKey(
        "checkpointExpirationDays",
        "integer",
        14,
        "Days after which run checkpoints in the results bucket expire (objects tagged "
        "stnlp-expire=checkpoints).",
    ),
    ConfigKey(
        "noncurrentTransitionDays",
        "integer",
        30,
        "Days after which noncurrent object versions move to STANDARD_IA (at least 30).",
    ),
    ConfigKey(
        "gpuAmiParameter",
        "string",
        "/aws/service/deeplearning/ami/x86_64/oss-nvidia-driver-gpu-pytorch-2.9-ubuntu-24.04/"
        "latest/ami-id",
        "Public SSM parameter naming the GPU deep-learning AMI for training (its current id "
        "is used at each `pulumi up`).",
    ),
    ConfigKey(
        "gpuAmiId",
        "string",
        "",
        "A pinned training AMI id (ami-...); when set, gpuAmiParameter is not read.",
    ),
    ConfigKey(
        "amiPython",
        "string",
        "3.12",
        "Python version (major.minor) of the training AMI's PyTorch environment; the "
        "dependency lock is resolved for it.",
    ),
    ConfigKey(
        "amiPackages",
        "array",
        ["torch", "torchvision", "torchaudio", "triton", "nvidia-*"],
        "Distributions the training AMI provides (its CUDA build of torch); they are reused, "
        "never locked or reinstalled.",
    ),
    ConfigKey(
        "hubTokenParameter",
        "string",
        "",
        "SSM SecureString holding a Hugging Face token for gated hub models (e.g. "
        "/stnlp/dev/hf-token); empty: public models only.",
    ),
    ConfigKey(
        "alarmEmail",
        "string",
        "",
        "E-mail address the overrun alarms notify (an SNS subscription to confirm); empty: "
        "the alarms notify the stack's SNS topic only. The topic also carries every SageMaker "
        "job's end and the budget alert.",
    ),
    ConfigKey(
        "monthlyBudget",
        "integer",
        50,
        "Monthly AWS Budgets cost limit in USD for the stack's tagged resources; the topic is "
        "told at 80% (actual) and 100% (forecast).",
    ),
    ConfigKey(
        "interfaceHost",
        "boolean",
        False,
        "Run the Gradio interface (`stnlp serve` with auth) on a small CPU instance.",
    ),
    ConfigKey(
        "interfaceInstanceType", "string", "t3.small", "Instance type of the interface host."
    ),
    ConfigKey("interfacePort", "integer", 7860, "Port the interface listens on."),
    ConfigKey(
        "interfaceCidrs",
        "array",
        [],
        "CIDR blocks allowed to reach the interface port (required with interfaceHost).",
    ),
)


@dataclass(frozen=True)
class StackConfig:
    """All settings of one stack, typed and validated."""

    stack: str
    region: str
    vpc_cidr: str
    nat_gateway: bool
    flow_logs: bool
    spot: bool
    log_retention_days: int
    log_expiration_days: int
    checkpoint_expiration_days: int
    noncurrent_transition_days: int
    gpu_ami_parameter: str
    gpu_ami_id: str
    ami_python: str
    ami_packages: tuple[str, ...]
    hub_token_parameter: str
    alarm_email: str
    monthly_budget: int
    interface_host: bool
    interface_instance_type: str
    interface_port: int
    interface_cidrs: tuple[str, ...]

    @property
    def tags(self) -> dict[str, str]:
        """Tags the provider puts on every resource of the stack."""
        return {TAG_STACK: self.stack, TAG_MANAGED_BY: "pulumi", "project": PROJECT}


def _parse(key: ConfigKey, value: Any, where: str) -> Any:
    def bad(expected: str) -> UserError:
        return UserError(f"{where}: config {key.name} must be {expected}, got {value!r}")

    if key.type == "boolean":
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        raise bad("true or false")
    if key.type == "integer":
        if isinstance(value, bool) or not re.fullmatch(r"-?\d+", str(value)):
            raise bad("an integer")
        return int(value)
    if key.type == "array":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise bad("a list of strings") from exc
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
        return tuple(value)
    if not isinstance(value, str) or (not value and key.default != ""):
        raise bad("a non-empty string")
    return value


def _check_cidr(value: str, what: str, where: str) -> None:
    try:
        ipaddress.ip_network(value)
    except ValueError as exc:
        raise UserError(f"{where}: config {what} has an invalid CIDR {value!r}") from exc


def _validate(config: StackConfig, where: str) -> StackConfig:
    if not _STACK_NAME.match(config.stack):
        raise UserError(
            f"{where}: stack name {config.stack!r} must be lowercase letters, digits and dashes, "
            "1-20 characters, starting with a letter"
        )
    _check_cidr(config.vpc_cidr, "vpcCidr", where)
    prefix = ipaddress.ip_network(config.vpc_cidr).prefixlen
    if not 16 <= prefix <= 24:
        raise UserError(f"{where}: config vpcCidr {config.vpc_cidr!r} must be a /16 to /24")
    for cidr in config.interface_cidrs:
        _check_cidr(cidr, "interfaceCidrs", where)
    if config.interface_host and not config.interface_cidrs:
        raise UserError(f"{where}: config interfaceCidrs is empty but interfaceHost is true")
    if config.log_retention_days not in LOG_RETENTION_DAYS:
        raise UserError(
            f"{where}: config logRetentionDays {config.log_retention_days} is not one of "
            f"{', '.join(map(str, LOG_RETENTION_DAYS))}"
        )
    if config.noncurrent_transition_days < 30:
        raise UserError(f"{where}: config noncurrentTransitionDays must be at least 30")
    for name in ("log_expiration_days", "checkpoint_expiration_days"):
        if getattr(config, name) < 1:
            raise UserError(f"{where}: config {name} must be at least 1 day")
    if config.gpu_ami_id and not re.fullmatch(r"ami-[0-9a-f]{8,17}", config.gpu_ami_id):
        raise UserError(f"{where}: config gpuAmiId {config.gpu_ami_id!r} is not an AMI id")
    if not re.fullmatch(r"3\.\d{1,2}", config.ami_python):
        raise UserError(f"{where}: config amiPython {config.ami_python!r} must look like 3.12")
    for name, value in (("gpuAmiParameter", config.gpu_ami_parameter),
                        ("hubTokenParameter", config.hub_token_parameter)):
        if value and not value.startswith("/"):
            raise UserError(f"{where}: config {name} {value!r} must be an SSM name starting '/'")
    if not 1 <= config.interface_port <= 65535:
        raise UserError(f"{where}: config interfacePort {config.interface_port} is not a port")
    return config


def config_from_values(
    stack: str, region: str | None, values: Mapping[str, Any], where: str = "stack config"
) -> StackConfig:
    """Build a validated :class:`StackConfig` from raw key -> value pairs (defaults filled in).

    Values may be typed (YAML) or strings (Pulumi config); ``where`` names the source in errors.
    """
    known = {key.name for key in KEYS}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"{where}: unknown config key(s) {', '.join(unknown)}")
    fields = {
        key.field: _parse(key, values[key.name], where) if key.name in values else key.default
        for key in KEYS
    }
    for name in ("interface_cidrs", "ami_packages"):
        fields[name] = tuple(fields[name])
    return _validate(StackConfig(stack=stack, region=region or DEFAULT_REGION, **fields), where)


def read_stack_file(path: Path) -> tuple[str | None, dict[str, Any]]:
    """``(aws:region, project values)`` from a ``Pulumi.<stack>.yaml`` file."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise UserError(f"stack file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise UserError(f"stack file {path} is not valid YAML: {exc}") from exc
    raw = data.get("config") or {}
    if not isinstance(raw, dict):
        raise UserError(f"stack file {path}: 'config' must be a mapping")
    values = {
        key.removeprefix(f"{PROJECT}:"): value
        for key, value in raw.items()
        if key.startswith(f"{PROJECT}:")
    }
    return raw.get("aws:region"), values


def config_from_stack_file(path: Path) -> StackConfig:
    """The :class:`StackConfig` of the stack file ``Pulumi.<stack>.yaml`` at ``path``."""
    match = re.fullmatch(r"Pulumi\.(.+)\.yaml", path.name)
    if not match:
        raise UserError(f"stack file {path} must be named Pulumi.<stack>.yaml")
    region, values = read_stack_file(path)
    return config_from_values(match.group(1), region, values, where=str(path))


INTERFACE_ROOT_GB = 20
"""Root volume of the interface host, in GB (at least its AMI's snapshot)."""
WORK_HEADROOM_GB = 30
"""Space a training root volume keeps beyond its AMI's snapshot (models, data, venv)."""


def root_volume_gb(wanted_gb: int, snapshot_gb: int, headroom_gb: int = WORK_HEADROOM_GB) -> int:
    """A root volume size EC2 accepts: ``wanted_gb`` unless the AMI's snapshot (plus
    ``headroom_gb`` of work space) needs more; RunInstances rejects a volume below its snapshot."""
    return max(int(wanted_gb), int(snapshot_gb) + int(headroom_gb))


def uses_spot(config: StackConfig, job: Any) -> bool:
    """True when ``job``'s instances are launched as spot (the job allows it, the stack too)."""
    return config.spot and job.spot
