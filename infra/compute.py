"""Compute: the training security group, one launch template / log group / alarm per job, and
the optional interface host.

The overrun alarm watches ``STNLP/ElapsedMinutes`` (dimensions ``Stack``, ``Job``), which the
training user data emits every minute; it fires when a run passes the job's maximum runtime.
EC2's own metrics cannot say how long an instance has run, and an alarm's terminate action
only works on per-instance metrics, so the user data also schedules a hard shutdown.
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
from stnlp.common.stackconfig import INTERFACE_ROOT_GB, StackConfig, uses_spot
from stnlp.common.userdata import render_interface_user_data, render_user_data
from stnlp.infra.identity import Identity
from stnlp.infra.network import Network
from stnlp.plugins.spec import JobSpec

EGRESS_PORTS = (80, 443)  # package mirrors and AWS APIs; DNS and NTP use the VPC resolver
INTERFACE_AMI = ("099720109477", "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*")
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
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("stnlp:infra:Compute", name, None, opts)
        self.config = config
        self.training_sg = self._security_group("training", network)
        ami = aws.ec2.get_ami_output(
            most_recent=True,
            owners=[config.ami_owner],
            filters=[
                {"name": "name", "values": [config.gpu_ami_name]},
                {"name": "architecture", "values": ["x86_64"]},
                {"name": "state", "values": ["available"]},
            ],
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        self.launch_templates: dict[str, dict[str, pulumi.Output[str]]] = {}
        self.log_groups: dict[str, pulumi.Output[str]] = {}
        for job in jobs:
            self._job(job, ami, identity)
        self.interface_url: pulumi.Output[str] | None = None
        if config.interface_host:
            self._interface_host(network, identity)
        self.register_outputs(
            {
                "security_group_id": self.training_sg.id,
                "launch_templates": self.launch_templates,
                "log_groups": self.log_groups,
            }
        )

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
        user_data = render_user_data(
            config.stack, job.name, config.region, max_runtime_minutes=job.max_runtime_minutes
        )
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
                        "volume_size": job.root_volume_gb,
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
            opts=child,
        )
        self.launch_templates[job.name] = {"id": template.id, "name": template.name}
        self.log_groups[job.name] = group.name

    def _interface_host(self, network: Network, identity: Identity) -> None:
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
        owner, pattern = INTERFACE_AMI
        ami = aws.ec2.get_ami_output(
            most_recent=True,
            owners=[owner],
            filters=[{"name": "name", "values": [pattern]}],
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        host = aws.ec2.Instance(
            "interface-host",
            ami=ami.id,
            instance_type=config.interface_instance_type,
            subnet_id=network.public_subnets[0].id,
            vpc_security_group_ids=[group.id],
            iam_instance_profile=identity.interface_profile.name,
            metadata_options=IMDS,
            root_block_device={
                "volume_size": INTERFACE_ROOT_GB,
                "volume_type": "gp3",
                "encrypted": True,
            },
            user_data=render_interface_user_data(
                config.stack, config.region, config.interface_port
            ),
            user_data_replace_on_change=True,
            tags={TAG_ROLE: "interface"},
            opts=child,
        )
        self.interface_url = host.public_dns.apply(
            lambda dns: f"http://{dns}:{config.interface_port}"
        )
