"""Compute: the training security group, one launch template / log group / alarm per job, and
the optional interface host.

The training AMI is the one the stack config pins (``gpuAmiId``) or the current id of the
deep-learning AMI's public SSM parameter (``gpuAmiParameter``); root volumes are sized from the
AMI's root snapshot (EC2 refuses a volume smaller than its snapshot), with work space on top.

The overrun alarm watches ``STNLP/ElapsedMinutes`` (dimensions ``Stack``, ``Job``), which the
training user data emits every minute; it fires when a run passes the job's maximum runtime and
notifies the stack's SNS topic (and ``alarmEmail``). EC2's own metrics cannot say how long an
instance has run, and an alarm's terminate action only works on per-instance metrics, so the
user data also schedules a hard shutdown.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import pulumi
import pulumi_aws as aws

from stnlp.common.names import (
    METRIC_ELAPSED,
    METRIC_NAMESPACE,
    TAG_JOB,
    TAG_ROLE,
    ec2_instance_type,
    launch_template_name,
    log_group_name,
)
from stnlp.common.stackconfig import INTERFACE_ROOT_GB, StackConfig, root_volume_gb, uses_spot
from stnlp.common.userdata import render_interface_user_data, render_template_user_data
from stnlp.infra.identity import Identity
from stnlp.infra.network import Network
from stnlp.plugins.spec import JobSpec

EGRESS_PORTS = (80, 443)  # package mirrors and AWS APIs; DNS and NTP use the VPC resolver
INTERFACE_AMI_PARAMETER = (
    "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
)
IMDS = {"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 1}



class Compute(pulumi.ComponentResource):
    """Security groups, per-job launch templates, log groups and alarms, the interface host."""

    def __init__(
        self,
        name: str,
        config: StackConfig,
        network: Network,
        identity: Identity,
        jobs: Sequence[JobSpec],
        models_bucket: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("stnlp:infra:Compute", name, None, opts)
        self.config = config
        self.training_sg = self._security_group("training", network)
        self.ami = self._ami(config.gpu_ami_id, config.gpu_ami_parameter)
        self.alarm_topic = aws.sns.Topic(
            "alarms", name=f"stnlp-{config.stack}-alarms", opts=pulumi.ResourceOptions(parent=self)
        )
        if config.alarm_email:
            aws.sns.TopicSubscription(
                "alarms-email", topic=self.alarm_topic.arn, protocol="email",
                endpoint=config.alarm_email, opts=pulumi.ResourceOptions(parent=self),
            )  # fmt: skip
        self.launch_templates: dict[str, dict[str, pulumi.Output[str]]] = {}
        self.log_groups: dict[str, pulumi.Output[str]] = {}
        for job in jobs:
            self._job(job, self.ami, identity)
        self.interface_url: pulumi.Output[str] | None = None
        if config.interface_host:
            self._interface_host(network, identity, models_bucket)
        self.register_outputs(
            {
                "security_group_id": self.training_sg.id,
                "launch_templates": self.launch_templates,
                "log_groups": self.log_groups,
            }
        )

    def _ami(self, pinned: str, parameter: str):
        """The AMI (id, root device, snapshot size): pinned, or from its public SSM parameter."""
        image_id = pinned or aws.ssm.get_parameter_output(
            name=parameter, opts=pulumi.InvokeOutputOptions(parent=self)
        ).value
        return aws.ec2.get_ami_output(
            most_recent=True,
            filters=[{"name": "image-id", "values": [image_id]}],
            opts=pulumi.InvokeOutputOptions(parent=self),
        )

    def _root_volume(self, ami, wanted_gb: int, headroom_gb: int | None = None):
        """The root volume size for ``ami``: at least its root snapshot plus work space."""

        def size(facts) -> int:
            device, mappings = facts
            snapshot = max([int((m.get("ebs") or {}).get("volume_size") or 0) for m in mappings
                            if m.get("device_name") == device] or [0])  # fmt: skip
            if headroom_gb is None:
                return root_volume_gb(wanted_gb, snapshot)
            return root_volume_gb(wanted_gb, snapshot, headroom_gb)

        mappings = ami.block_device_mappings.apply(
            lambda items: [dict(m) if isinstance(m, dict) else
                           {"device_name": m.device_name, "ebs": m.ebs} for m in items or []]
        )  # fmt: skip
        return pulumi.Output.all(ami.root_device_name, mappings).apply(size)

    def _security_group(self, role: str, network: Network) -> aws.ec2.SecurityGroup:
        child = pulumi.ResourceOptions(parent=self)
        group = aws.ec2.SecurityGroup(
            f"{role}-sg",
            vpc_id=network.vpc.id,
            tags={TAG_ROLE: role},
            description=f"stnlp {self.config.stack} {role}: egress to HTTP(S) only",
            opts=child,
        )
        for port in EGRESS_PORTS:
            aws.vpc.SecurityGroupEgressRule(
                f"{role}-egress-{port}",
                security_group_id=group.id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                cidr_ipv4="0.0.0.0/0",
                opts=child,
            )
        return group

    def _job(self, job: JobSpec, ami, identity: Identity) -> None:
        config, child = self.config, pulumi.ResourceOptions(parent=self)
        group_name = log_group_name(config.stack, job.name)
        group = aws.cloudwatch.LogGroup(
            f"{job.name}-logs",
            name=group_name,
            retention_in_days=config.log_retention_days,
            opts=child,
        )
        job_tags = {**config.tags, TAG_JOB: job.name}
        user_data = render_template_user_data(config.stack, job.name)
        market = None
        if uses_spot(config, job):
            market = {
                "market_type": "spot",
                "spot_options": {
                    "spot_instance_type": "one-time",
                    "instance_interruption_behavior": "terminate",
                },
            }
        template = aws.ec2.LaunchTemplate(
            f"{job.name}-template",
            name=launch_template_name(config.stack, job.name),
            description=f"stnlp training job {job.name} ({job.description or job.component})",
            image_id=ami.id,
            instance_type=ec2_instance_type(job.instance_type),
            iam_instance_profile={"arn": identity.training_profile.arn},
            vpc_security_group_ids=[self.training_sg.id],
            block_device_mappings=[
                {
                    "device_name": ami.root_device_name,
                    "ebs": {
                        "volume_size": self._root_volume(ami, job.root_volume_gb),
                        "volume_type": "gp3",
                        "encrypted": "true",
                        "delete_on_termination": "true",
                    },
                }
            ],
            metadata_options=IMDS,
            instance_initiated_shutdown_behavior="terminate",
            instance_market_options=market,
            tag_specifications=[
                {"resource_type": kind, "tags": job_tags} for kind in ("instance", "volume")
            ],
            tags={TAG_JOB: job.name},
            user_data=base64.b64encode(user_data.encode()).decode(),
            update_default_version=True,
            opts=child,
        )
        aws.cloudwatch.MetricAlarm(
            f"{job.name}-overrun",
            name=f"stnlp-{config.stack}-{job.name}-overrun",
            alarm_description=(
                f"A {job.name} run has been going longer than its maximum runtime of "
                f"{job.max_runtime_minutes} minutes"
            ),
            namespace=METRIC_NAMESPACE,
            metric_name=METRIC_ELAPSED,
            dimensions={"Stack": config.stack, "Job": job.name},
            statistic="Maximum",
            period=60,
            evaluation_periods=1,
            threshold=job.max_runtime_minutes,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
            alarm_actions=[self.alarm_topic.arn],
            opts=child,
        )
        self.launch_templates[job.name] = {"id": template.id, "name": template.name}
        self.log_groups[job.name] = group.name

    def _interface_host(
        self, network: Network, identity: Identity, models_bucket: pulumi.Input[str]
    ) -> None:
        config, child = self.config, pulumi.ResourceOptions(parent=self)
        group = self._security_group("interface", network)
        for i, cidr in enumerate(config.interface_cidrs):
            aws.vpc.SecurityGroupIngressRule(
                f"interface-ingress-{i}",
                security_group_id=group.id,
                ip_protocol="tcp",
                from_port=config.interface_port,
                to_port=config.interface_port,
                **({"cidr_ipv6": cidr} if ":" in cidr else {"cidr_ipv4": cidr}),
                opts=child,
            )
        ami = self._ami("", INTERFACE_AMI_PARAMETER)
        host = aws.ec2.Instance(
            "interface-host",
            ami=ami.id,
            instance_type=config.interface_instance_type,
            subnet_id=network.public_subnets[0].id,
            vpc_security_group_ids=[group.id],
            iam_instance_profile=identity.interface_profile.name,
            metadata_options=IMDS,
            root_block_device={
                "volume_size": self._root_volume(ami, INTERFACE_ROOT_GB, headroom_gb=4),
                "volume_type": "gp3",
                "encrypted": True,
            },
            user_data=pulumi.Output.from_input(models_bucket).apply(
                lambda bucket: render_interface_user_data(
                    config.stack, config.region, config.interface_port, bucket
                )
            ),
            user_data_replace_on_change=True,
            tags={TAG_ROLE: "interface"},
            opts=child,
        )
        self.interface_url = host.public_dns.apply(
            lambda dns: f"http://{dns}:{config.interface_port}"
        )
