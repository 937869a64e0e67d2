"""Network: a VPC with public and private subnets in two AZs and an S3 gateway endpoint.

Nothing here costs money while idle unless config asks: the NAT gateway (``natGateway``) and
flow logs (``flowLogs``) are off by default. Without NAT, training instances run in the public
subnets with a public address and a security group that admits no inbound traffic at all; with
NAT they run in the private subnets. ``training_subnet_ids`` says which.
"""

from __future__ import annotations

import ipaddress

import pulumi
import pulumi_aws as aws

from stnlp.common.stackconfig import StackConfig
from stnlp.infra.identity import assume_role_policy, policy_document

AZ_COUNT = 2


def subnet_cidrs(vpc_cidr: str) -> tuple[list[str], list[str]]:
    """``(public, private)`` CIDRs: the VPC split in four, two public then two private."""
    quarters = [str(net) for net in ipaddress.ip_network(vpc_cidr).subnets(prefixlen_diff=2)]
    return quarters[:AZ_COUNT], quarters[AZ_COUNT : 2 * AZ_COUNT]


class Network(pulumi.ComponentResource):
    """VPC, subnets, routes, the S3 gateway endpoint and the optional NAT gateway and flow logs."""

    def __init__(self, name: str, config: StackConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("stnlp:infra:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        zones = aws.get_availability_zones_output(
            state="available", opts=pulumi.InvokeOutputOptions(parent=self)
        )
        self.vpc = aws.ec2.Vpc(
            "vpc",
            cidr_block=config.vpc_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            opts=child,
        )
        gateway = aws.ec2.InternetGateway("igw", vpc_id=self.vpc.id, opts=child)
        public_cidrs, private_cidrs = subnet_cidrs(config.vpc_cidr)

        def subnets(kind: str, cidrs: list[str], **extra) -> list[aws.ec2.Subnet]:
            return [
                aws.ec2.Subnet(
                    f"{kind}-{i}",
                    vpc_id=self.vpc.id,
                    cidr_block=cidr,
                    availability_zone=zones.names[i],
                    opts=child,
                    **extra,
                )
                for i, cidr in enumerate(cidrs)
            ]

        self.public_subnets = subnets("public", public_cidrs, map_public_ip_on_launch=True)
        self.private_subnets = subnets("private", private_cidrs)
        public_rt = aws.ec2.RouteTable(
            "public-rt",
            vpc_id=self.vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": gateway.id}],
            opts=child,
        )
        private_rt = aws.ec2.RouteTable("private-rt", vpc_id=self.vpc.id, opts=child)
        for kind, subnets_of_kind, table in (
            ("public", self.public_subnets, public_rt),
            ("private", self.private_subnets, private_rt),
        ):
            for i, subnet in enumerate(subnets_of_kind):
                aws.ec2.RouteTableAssociation(
                    f"{kind}-{i}", subnet_id=subnet.id, route_table_id=table.id, opts=child
                )
        aws.ec2.VpcEndpoint(
            "s3-endpoint",
            vpc_id=self.vpc.id,
            service_name=f"com.amazonaws.{config.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[public_rt.id, private_rt.id],
            opts=child,
        )
        if config.nat_gateway:
            self._nat(private_rt)
        if config.flow_logs:
            self._flow_logs(config)
        chosen = self.private_subnets if config.nat_gateway else self.public_subnets
        self.training_subnet_ids = [subnet.id for subnet in chosen]
        self.register_outputs(
            {"vpc_id": self.vpc.id, "training_subnet_ids": self.training_subnet_ids}
        )

    def _nat(self, private_rt: aws.ec2.RouteTable) -> None:
        child = pulumi.ResourceOptions(parent=self)
        address = aws.ec2.Eip("nat-eip", domain="vpc", opts=child)
        nat = aws.ec2.NatGateway(
            "nat", allocation_id=address.id, subnet_id=self.public_subnets[0].id, opts=child
        )
        aws.ec2.Route(
            "private-default",
            route_table_id=private_rt.id,
            destination_cidr_block="0.0.0.0/0",
            nat_gateway_id=nat.id,
            opts=child,
        )

    def _flow_logs(self, config: StackConfig) -> None:
        child = pulumi.ResourceOptions(parent=self)
        group = aws.cloudwatch.LogGroup(
            "flow-logs",
            name=f"/stnlp/{config.stack}/_network/flow-logs",
            retention_in_days=config.log_retention_days,
            opts=child,
        )
        role = aws.iam.Role(
            "flow-logs-role",
            assume_role_policy=assume_role_policy("vpc-flow-logs.amazonaws.com"),
            opts=child,
        )
        aws.iam.RolePolicy(
            "flow-logs-write",
            role=role.id,
            policy=group.arn.apply(
                lambda arn: policy_document(
                    [
                        {
                            "Effect": "Allow",
                            "Action": [
                                "logs:CreateLogStream",
                                "logs:PutLogEvents",
                                "logs:DescribeLogStreams",
                            ],
                            "Resource": [arn, f"{arn}:*"],
                        }
                    ]
                )
            ),
            opts=child,
        )
        aws.ec2.FlowLog(
            "flow-log",
            vpc_id=self.vpc.id,
            traffic_type="ALL",
            log_destination=group.arn,
            iam_role_arn=role.arn,
            opts=child,
        )
