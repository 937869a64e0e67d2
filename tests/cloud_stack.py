"""A deployed stack on moto's server, for the cloud backend tests.

:func:`make_cloud` creates what the Pulumi program would: three buckets, a VPC with a subnet and
the training security group, a launch template and a log group per job (the template as
infra/compute.py builds it: IMDSv2 required, terminate on shutdown, spot market options), the
stack manifest in SSM, and the transcripts dataset under ``raw/transcripts/``. The example
plugin is made discoverable through its entry point, as after ``pip install``.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stnlp.common.names import (
    BUCKET_KINDS,
    bucket_name,
    ec2_instance_type,
    iam_name,
    launch_template_name,
    log_group_name,
    manifest_parameter,
)
from stnlp.common.settings import Settings
from stnlp.common.stackconfig import config_from_values, root_volume_gb
from stnlp.plugins.manager import Registry, build_plugin_manager
from stnlp.runtime.runs import JobLock, run_prefix
from stnlp.runtime.store import S3Store, Stores, s3_client
from tests.aws_rules import MotoFacts, denials, read_calls
from tests.extension import install_example_plugin
from tests.recorder.sitecustomize import install, made_by_the_project

REPO = Path(__file__).resolve().parents[1]
SHIMS = Path(__file__).resolve().parent / "shims"
RECORDER = Path(__file__).resolve().parent / "recorder"
BUILTINS = "chatbot,classifier,network"
IMAGE_NAME = "amzn2-ami-hvm-*-x86_64-gp2"  # one of moto's Amazon images, standing for the DLAMI
ACCOUNT = "123456789012"  # moto's account id
TRANSCRIPT = (
    "name,line\n"
    "Mike,\"Okay, party, the dragon is asleep on a pile of gold.\"\n"
    "Dustin,I check the gold for traps.\n"
    "Lucas,We should just leave.\n"
    "Will,I cast a protection spell.\n"
    "Mike,\"Roll for it, Will.\"\n"
    "Dustin,Twelve!\n"
)


@dataclass
class Cloud:
    """One stack on moto: settings, stores, clients, manifest and the plugin registry."""

    settings: Settings
    stores: Stores
    ec2: Any
    manifest: dict[str, Any]
    registry: Registry
    site: Path
    calls: Path  # where the instances' recorded AWS calls go (see instance_env)

    def instance_state(self, instance_id: str) -> str:
        """The moto instance's state name (``running``, ``terminated``...)."""
        reservations = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        return reservations[0]["Instances"][0]["State"]["Name"]

    def record(self, run_id: str) -> dict[str, Any]:
        """The stored run record."""
        key = f"{run_prefix(self.settings.stack, run_id)}/state.json"
        return json.loads(self.stores.results.get(key))

    def lock_holder(self, job: str) -> str | None:
        """The run id holding ``job``'s lock, or None."""
        key = JobLock(self.stores.results, self.settings.stack, job).key
        if not self.stores.results.exists(key):
            return None
        return json.loads(self.stores.results.get(key))["run_id"]

    def instance_env(
        self, workdir: Path, imds_url: str, principal: str = "training", **extra: str
    ) -> dict[str, str]:
        """The environment of a sandboxed instance's bootstrap, its AWS calls recorded as
        ``principal``'s (judged when the test ends, see :func:`judged_cloud`)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("STNLP_")}
        env.update(
            PYTHONPATH=os.pathsep.join([str(RECORDER), str(REPO), str(self.site)]),
            STNLP_AWS_RECORD=str(self.calls), STNLP_AWS_PRINCIPAL=principal,
            PATH=os.pathsep.join([str(SHIMS), env.get("PATH", "")]),
            AWS_REGION=self.settings.region,
            STNLP_REGION=self.settings.region, STNLP_ENDPOINT_URL=self.settings.endpoint_url,
            STNLP_WORKDIR=str(workdir), STNLP_IMDS_URL=imds_url, STNLP_SPOT_POLL_SECONDS="0.2",
            STNLP_HEARTBEAT_SECONDS="0.5", STNLP_PREFLIGHT_MIN_FREE_GB="0.01",
            STNLP_DISABLED_PLUGINS=BUILTINS, STNLP_LOG_LEVEL="WARNING",
        )  # fmt: skip
        env.update(extra)
        return env


    def policies(self) -> dict[str, list[dict[str, Any]]]:
        """Principal -> the IAM statements the Pulumi program declares for it on this stack."""
        from stnlp.infra.identity import (
            interface_statements,
            launcher_statements,
            sagemaker_statements,
            training_statements,
        )

        token = self.manifest.get("hub_token_parameter") or ""
        config = config_from_values(self.settings.stack, self.settings.region,
                                    {"hubTokenParameter": token})
        buckets, jobs = self.manifest["buckets"], list(self.manifest["launch_templates"])
        return {"training": training_statements(config, ACCOUNT, buckets, jobs),
                "launcher": launcher_statements(config, ACCOUNT, buckets),
                "sagemaker": sagemaker_statements(config, ACCOUNT, buckets),
                "interface": interface_statements(config, ACCOUNT, buckets)}

    def facts(self) -> MotoFacts:
        """What the rules look up in this account: templates, tags, VPCs, snapshots."""
        role = iam_arn("role", self.settings.stack, "training")
        return MotoFacts(self.ec2, {self.manifest["instance_profile_arn"]: role},
                         s3_client(self.settings))

    def denials(self, calls: list[dict[str, Any]]) -> list[str]:
        """What AWS would refuse of ``calls`` under the declared policies (one line each)."""
        return denials(calls, self.policies(), self.facts())


@contextlib.contextmanager
def judged_cloud(endpoint: str, tmp_path: Path, monkeypatch, **kwargs: Any) -> Iterator[Cloud]:
    """:func:`make_cloud`, with every AWS call the project's code makes judged at the end: in
    this process as the launcher's (the CLI's), in the instances started with
    :meth:`Cloud.instance_env` as their role's."""
    record = tmp_path / "launcher-calls.jsonl"
    uninstall = install(record, "launcher", keep=made_by_the_project)
    try:
        cloud = make_cloud(endpoint, tmp_path, monkeypatch, **kwargs)
        yield cloud
    finally:
        uninstall()
    refused = cloud.denials(read_calls(record) + read_calls(cloud.calls))
    assert refused == [], "AWS would refuse:\n" + "\n".join(refused)


def iam_arn(kind: str, stack: str, role: str) -> str:
    """The ARN of a role or instance profile the Pulumi program names (stnlp.infra.identity)."""
    return f"arn:aws:iam::{ACCOUNT}:{kind}/{iam_name(stack, 'us-east-1', role)}"


def recording_client(settings: Settings, service: str, operation: str) -> Any:
    """A ``service`` client on moto whose ``sent`` list records every ``operation`` request."""
    client = s3_client(settings, service)
    client.sent = []
    client.meta.events.register(
        f"provide-client-params.{service}.{operation}",
        lambda params, **_: client.sent.append(copy.deepcopy(params)),
    )
    return client


def make_cloud(
    endpoint: str, tmp_path: Path, monkeypatch, disabled: str = BUILTINS,
    requires: tuple[str, ...] = (), **manifest_values: Any,
) -> Cloud:  # fmt: skip
    """Create the stack's AWS side on moto and return it (the example plugin installed, with
    the ``Requires-Dist`` lines ``requires``); ``manifest_values`` replace manifest entries."""
    site = install_example_plugin(tmp_path / "site", requires)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    stack = f"t{uuid.uuid4().hex[:10]}"
    settings = Settings(
        store="s3", stack=stack, region="us-east-1", endpoint_url=endpoint,
        disabled_plugins=tuple(n for n in disabled.split(",") if n),
    )  # fmt: skip
    s3 = s3_client(settings)
    ec2 = s3_client(settings, "ec2")
    buckets = {kind: bucket_name(stack, kind, ACCOUNT) for kind in BUCKET_KINDS}
    for name in buckets.values():
        s3.create_bucket(Bucket=name)
    stores = Stores(*(S3Store(buckets[kind], s3) for kind in BUCKET_KINDS))
    stores.datasets.put("raw/transcripts/S01E01.csv", TRANSCRIPT.encode())
    registry = build_plugin_manager(settings)
    image = ec2.describe_images(Owners=["amazon"], Filters=[  # listing all 1,300 AMIs takes secs
        {"Name": "name", "Values": [IMAGE_NAME]}])["Images"][0]
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.0.0/18",
                               AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"{stack}-training", VpcId=vpc,
                                      Description="training")["GroupId"]
    snapshot_gb = image["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"]
    profile_arn = iam_arn("instance-profile", stack, "training")
    templates, log_groups = {}, {}
    logs = s3_client(settings, "logs")
    for spec in registry.job_specs():
        log_groups[spec.name] = log_group_name(stack, spec.name)
        logs.create_log_group(logGroupName=log_groups[spec.name])
        name = launch_template_name(stack, spec.name)
        data = {
            "ImageId": image["ImageId"],
            "SecurityGroupIds": [group],
            "BlockDeviceMappings": [{"DeviceName": image["RootDeviceName"], "Ebs": {
                "VolumeSize": root_volume_gb(spec.root_volume_gb, snapshot_gb),
                "VolumeType": "gp3", "Encrypted": True}}],
            "InstanceType": ec2_instance_type(spec.instance_type),
            "IamInstanceProfile": {"Arn": profile_arn},
            "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 1},
            "InstanceInitiatedShutdownBehavior": "terminate",
        }
        if spec.spot:
            data["InstanceMarketOptions"] = {"MarketType": "spot"}
        created = ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData=data)
        templates[spec.name] = {
            "id": created["LaunchTemplate"]["LaunchTemplateId"], "name": name,
        }
    manifest = {
        "stack": stack, "region": settings.region, "buckets": buckets,
        "subnet_ids": [subnet], "security_group_id": group, "spot": True,
        "ami_id": image["ImageId"], "ami_python": "3.11", "ami_packages": ["*"],
        "nat_gateway": False, "hub_token_parameter": None,
        "instance_profile_arn": profile_arn,
        "sagemaker_role_arn": iam_arn("role", stack, "sagemaker"),
        "launch_templates": templates, "log_groups": log_groups, "plugins": {}, **manifest_values,
    }  # fmt: skip
    s3_client(settings, "ssm").put_parameter(
        Name=manifest_parameter(stack), Value=json.dumps(manifest), Type="String"
    )
    return Cloud(settings, stores, ec2, manifest, registry, site, tmp_path / "instance-calls.jsonl")
