"""Checks before a cloud launch, so a run that AWS would refuse or that could not train fails
with one line before anything is created.

- every input dataset has objects under ``raw/<dataset>/`` in the stack's datasets bucket;
- the instance type is offered in the zone of one of the stack's subnets (that subnet is used);
- the account's vCPU quota for the type's family and market covers one instance (new accounts
  start at 0 for G and P instances);
- after the request is built, a ``DryRun`` launch: EC2 checks the caller may run the template's
  instances and pass the training role (``iam:PassRole``), without starting anything.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from stnlp.common.errors import UserError
from stnlp.common.names import ec2_instance_type, iam_name
from stnlp.common.settings import Settings
from stnlp.plugins.spec import JobSpec
from stnlp.runtime import logs
from stnlp.runtime.store import Stores, s3_client

log = logging.getLogger(__name__)

# Service Quotas codes of the EC2 vCPU limits: (family letters, on-demand code, spot code).
VCPU_QUOTAS = (
    ("g vt", "L-DB2E81BA", "L-3819A6DF"),
    ("p", "L-417A185B", "L-7212CCBC"),
    ("a c d h i m r t z", "L-1216C47A", "L-34B43A08"),
)


class LaunchCheckError(UserError):
    """The launch would be refused or could not train; the message says what to fix."""


def stack_spot(spec: JobSpec, manifest: dict[str, Any], spot: bool | None) -> bool:
    """Whether this launch is spot: the job's choice (or ``spot``), never on a stack whose config
    says ``spot: false`` (the manifest's ``spot``)."""
    allowed = bool(manifest.get("spot", True))
    wanted = spec.spot if spot is None else spot
    if spot and not allowed:
        raise LaunchCheckError(f"stack {manifest.get('stack')!r} launches on-demand only "
                               "(config spot: false); drop --spot")
    return wanted and allowed


def check_datasets(spec: JobSpec, stores: Stores) -> None:
    """Every input dataset of ``spec`` has objects under ``raw/<dataset>/``."""
    missing = [name for name in spec.input_datasets if not stores.datasets.list(f"raw/{name}/")]
    if missing:
        raise LaunchCheckError(
            f"job {spec.name!r} needs dataset(s) {', '.join(missing)} and "
            f"{stores.datasets.description} has none under raw/; upload them first with "
            "`stnlp data upload PATH --stack STACK`"
        )


def pick_subnet(spec: JobSpec, manifest: dict[str, Any], ec2: Any) -> str:
    """The first of the stack's subnets whose zone offers the job's instance type."""
    subnets = list(manifest.get("subnet_ids") or [])
    if not subnets:
        raise LaunchCheckError(f"stack {manifest.get('stack')!r} manifest has no subnet_ids; "
                               "run `pulumi up`")
    instance_type = ec2_instance_type(spec.instance_type)
    offered = {
        offer["Location"]
        for offer in ec2.describe_instance_type_offerings(
            LocationType="availability-zone",
            Filters=[{"Name": "instance-type", "Values": [instance_type]}],
        )["InstanceTypeOfferings"]
    }
    zones = {s["SubnetId"]: s["AvailabilityZone"]
             for s in ec2.describe_subnets(SubnetIds=subnets)["Subnets"]}  # fmt: skip
    for subnet in subnets:
        if zones.get(subnet) in offered:
            return subnet
    raise LaunchCheckError(
        f"instance type {instance_type} is not offered in the stack's zones "
        f"({', '.join(sorted(set(zones.values())))}) of {manifest.get('region')}; pick another "
        "instance type for the job or another region"
    )


def quota_code(instance_type: str, spot: bool) -> str | None:
    """The Service Quotas code limiting ``instance_type``'s vCPUs, or None if not known here."""
    family = re.match(r"[a-z]*", instance_type).group(0)
    for letters, on_demand, spot_code in VCPU_QUOTAS:
        if family in letters.split():
            return spot_code if spot else on_demand
    return None


def quota_problem(quota: float, vcpus: int, instance_type: str, code: str) -> str | None:
    """The one-line problem when ``quota`` vCPUs cannot hold one ``instance_type``."""
    if quota >= vcpus:
        return None
    return (f"the account's vCPU quota {code} is {quota:g} and one {instance_type} needs "
            f"{vcpus}; ask for an increase in Service Quotas (new accounts start at 0)")


def check_quota(settings: Settings, spec: JobSpec, ec2: Any, spot: bool) -> None:
    """The vCPU quota covers one instance; an unreadable quota is logged, not fatal."""
    from botocore.exceptions import BotoCoreError, ClientError

    instance_type = ec2_instance_type(spec.instance_type)
    code = quota_code(instance_type, spot)
    if code is None:
        return
    try:
        info = ec2.describe_instance_types(InstanceTypes=[instance_type])["InstanceTypes"][0]
        quotas = s3_client(settings, "service-quotas")
        quota = quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"]
    except (BotoCoreError, ClientError) as exc:
        logs.event(log, "vcpu quota not checked", logging.WARNING, code=code, error=str(exc))
        return
    problem = quota_problem(float(quota), int(info["VCpuInfo"]["DefaultVCpus"]), instance_type,
                            code)
    if problem:
        raise LaunchCheckError(problem)


def check_launch(
    spec: JobSpec, settings: Settings, manifest: dict[str, Any], stores: Stores, ec2: Any,
    *, spot: bool,
) -> str:  # fmt: skip
    """Run the checks that need no request; return the subnet to launch into."""
    check_datasets(spec, stores)
    subnet = pick_subnet(spec, manifest, ec2)
    check_quota(settings, spec, ec2, spot)
    return subnet


def check_dry_run(request: dict[str, Any], manifest: dict[str, Any], ec2: Any) -> None:
    """EC2's own permission check of ``request`` (``DryRun``): RunInstances and PassRole."""
    from botocore.exceptions import ClientError

    try:
        ec2.run_instances(**request, DryRun=True)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "DryRunOperation":
            return
        launcher = iam_name(str(manifest.get("stack")), str(manifest.get("region")), "launcher")
        raise LaunchCheckError(
            f"EC2 would refuse the launch: {error.get('Code')}: {error.get('Message', '')[:200]} "
            f"(attach the stack's policy {launcher} to your user: it allows the launch and "
            "iam:PassRole on the training role)"
        ) from exc
    raise LaunchCheckError("EC2 accepted a DryRun launch without saying so; not launching")
