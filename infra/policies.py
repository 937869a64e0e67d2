"""Policy rules: plain functions over the resources of a stack.

Each rule takes the stack's resources (type, name, engine-style camelCase properties, and an
id other resources use to refer to it) and the stack name, and returns a list of violations
(empty when the rule holds). The tests run them over every resource recorded under Pulumi
mocks; ``policy/__main__.py`` runs the same functions as a pulumi-policy pack.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from stnlp.common.names import TAG_BUCKET, TAG_ROLE, TAG_STACK

BUCKET = "aws:s3/bucket:Bucket"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
INSTANCE = "aws:ec2/instance:Instance"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
IAM_DOCUMENTS = {  # resource type -> property holding an identity policy document
    ROLE_POLICY: "policy",
    "aws:iam/policy:Policy": "policy",
    "aws:iam/userPolicy:UserPolicy": "policy",
    "aws:iam/groupPolicy:GroupPolicy": "policy",
}
WORLD = ("0.0.0.0/0", "::/0")
S3_WRITES = (
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:PutObjectAcl",
    "s3:PutObjectTagging",
    "s3:AbortMultipartUpload",
    "s3:RestoreObject",
    "s3:PutBucketPolicy",
    "s3:DeleteBucket",
    "s3:PutLifecycleConfiguration",
)
DATA_ROLES = ("training", "sagemaker")


@dataclass(frozen=True)
class Resource:
    """One resource of a stack as the rules see it."""

    typ: str
    name: str
    props: Mapping[str, Any] = field(default_factory=dict)
    id: str = ""


Rule = Callable[[Sequence[Resource], str], list[str]]


def _of(resources: Sequence[Resource], typ: str) -> list[Resource]:
    return [r for r in resources if r.typ == typ]


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _statements(document: Any) -> list[dict[str, Any]]:
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except json.JSONDecodeError:
            return [{"Effect": "Allow", "Action": "*", "Resource": "*", "Sid": "unparseable"}]
    return _listed((document or {}).get("Statement"))


def _iam_statements(resources: Sequence[Resource]) -> Iterator[tuple[Resource, dict[str, Any]]]:
    for resource in resources:
        if resource.typ in IAM_DOCUMENTS:
            for statement in _statements(resource.props.get(IAM_DOCUMENTS[resource.typ])):
                yield resource, statement
        if resource.typ == ROLE:
            for inline in _listed(resource.props.get("inlinePolicies")):
                for statement in _statements(inline.get("policy")):
                    yield resource, statement


def _allows(statement: Mapping[str, Any], action: str) -> bool:
    if statement.get("Effect") != "Allow":
        return False
    if "NotAction" in statement:
        return True
    return any(fnmatchcase(action.lower(), p.lower()) for p in _listed(statement.get("Action")))


def _bucket_rule(resources, typ: str, holds: Callable[[Mapping[str, Any]], bool], what: str):
    violations = []
    for bucket in _of(resources, BUCKET):
        settings = [r for r in _of(resources, typ) if r.props.get("bucket") == bucket.id]
        if not any(holds(r.props) for r in settings):
            violations.append(f"bucket {bucket.name}: {what}")
    return violations


def buckets_encrypted(resources: Sequence[Resource], stack: str) -> list[str]:
    """Every bucket has a server-side encryption configuration."""

    def holds(props):
        rules = _listed(props.get("rules"))
        return any(
            (r.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm")
            in ("AES256", "aws:kms", "aws:kms:dsse")
            for r in rules
        )

    typ = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    return _bucket_rule(resources, typ, holds, "no server-side encryption")


def buckets_versioned(resources: Sequence[Resource], stack: str) -> list[str]:
    """Every bucket has versioning enabled."""
    return _bucket_rule(
        resources,
        "aws:s3/bucketVersioning:BucketVersioning",
        lambda p: (p.get("versioningConfiguration") or {}).get("status") == "Enabled",
        "versioning is not enabled",
    )


def public_access_blocked(resources: Sequence[Resource], stack: str) -> list[str]:
    """Every bucket blocks public access with all four flags."""
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    return _bucket_rule(
        resources,
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        lambda p: all(_truthy(p.get(flag)) for flag in flags),
        "public access is not blocked by all four flags",
    )


def tls_only(resources: Sequence[Resource], stack: str) -> list[str]:
    """Every bucket's policy denies all requests made without TLS, on the bucket and objects."""

    def holds(props, bucket: Resource):
        arn = f"arn:aws:s3:::{bucket.props.get('bucket')}"
        for statement in _statements(props.get("policy")):
            secure = ((statement.get("Condition") or {}).get("Bool") or {}).get(
                "aws:SecureTransport"
            )
            if (
                statement.get("Effect") == "Deny"
                and str(secure).lower() == "false"
                and "s3:*" in _listed(statement.get("Action"))
                and {arn, f"{arn}/*"} <= set(_listed(statement.get("Resource")))
            ):
                return True
        return False

    violations = []
    for bucket in _of(resources, BUCKET):
        policies = [
            r
            for r in _of(resources, "aws:s3/bucketPolicy:BucketPolicy")
            if r.props.get("bucket") == bucket.id
        ]
        if not any(holds(p.props, bucket) for p in policies):
            violations.append(f"bucket {bucket.name}: no policy denying non-TLS access")
    return violations


def imdsv2_required(resources: Sequence[Resource], stack: str) -> list[str]:
    """Every launch template and instance requires IMDSv2 session tokens."""
    return [
        f"{r.typ.rsplit(':', 1)[-1]} {r.name}: metadataOptions.httpTokens is not 'required'"
        for r in (*_of(resources, LAUNCH_TEMPLATE), *_of(resources, INSTANCE))
        if (r.props.get("metadataOptions") or {}).get("httpTokens") != "required"
    ]


def ebs_encrypted(resources: Sequence[Resource], stack: str) -> list[str]:
    """Every EBS volume (launch template mappings, instance disks, volumes) is encrypted."""
    violations = []
    for template in _of(resources, LAUNCH_TEMPLATE):
        mappings = _listed(template.props.get("blockDeviceMappings"))
        if not mappings:
            violations.append(f"LaunchTemplate {template.name}: no root volume mapping")
        for mapping in mappings:
            if not _truthy((mapping.get("ebs") or {}).get("encrypted")):
                violations.append(
                    f"LaunchTemplate {template.name}: {mapping.get('deviceName')} not encrypted"
                )
    for instance in _of(resources, INSTANCE):
        disks = [instance.props.get("rootBlockDevice") or {}]
        disks += _listed(instance.props.get("ebsBlockDevices"))
        if not all(_truthy(d.get("encrypted")) for d in disks):
            violations.append(f"Instance {instance.name}: a volume is not encrypted")
    for volume in _of(resources, "aws:ebs/volume:Volume"):
        if not _truthy(volume.props.get("encrypted")):
            violations.append(f"Volume {volume.name}: not encrypted")
    return violations


def _ingress(resources: Sequence[Resource]) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """``(security group ref, rule name, rule props)`` for every ingress rule, in any form."""
    for group in _of(resources, SECURITY_GROUP):
        for i, rule in enumerate(_listed(group.props.get("ingress"))):
            yield group.id, f"{group.name}[ingress {i}]", rule
    for rule in _of(resources, INGRESS_RULE):
        yield rule.props.get("securityGroupId"), rule.name, rule.props
    for rule in _of(resources, SG_RULE):
        if rule.props.get("type") == "ingress":
            yield rule.props.get("securityGroupId"), rule.name, rule.props


def training_no_ingress(resources: Sequence[Resource], stack: str) -> list[str]:
    """Training security groups admit no inbound traffic; launch templates use only them."""
    training = {
        g.id
        for g in _of(resources, SECURITY_GROUP)
        if (g.props.get("tags") or {}).get(TAG_ROLE) == "training"
    }
    violations = [
        f"ingress {name} opens the training security group"
        for group, name, _ in _ingress(resources)
        if group in training
    ]
    for template in _of(resources, LAUNCH_TEMPLATE):
        groups = set(_listed(template.props.get("vpcSecurityGroupIds")))
        if not groups or not groups <= training:
            violations.append(f"LaunchTemplate {template.name}: uses a non-training group")
    return violations


def no_world_ssh(resources: Sequence[Resource], stack: str) -> list[str]:
    """No ingress rule anywhere opens port 22 to 0.0.0.0/0 or ::/0."""
    violations = []
    for _, name, rule in _ingress(resources):
        cidrs = [
            rule.get("cidrIpv4"),
            rule.get("cidrIpv6"),
            *_listed(rule.get("cidrBlocks")),
            *_listed(rule.get("ipv6CidrBlocks")),
        ]
        if not any(c in WORLD for c in cidrs):
            continue
        protocol = str(rule.get("ipProtocol", rule.get("protocol", ""))).lower()
        low, high = rule.get("fromPort"), rule.get("toPort")
        every_port = protocol in ("-1", "all") or low is None or high is None
        if every_port or int(low) <= 22 <= int(high):
            violations.append(f"ingress {name} opens port 22 to the internet")
    return violations


def no_star_star(resources: Sequence[Resource], stack: str) -> list[str]:
    """No IAM statement allows a ``*`` action on a ``*`` resource."""
    return [
        f"{r.name}: statement {s.get('Sid', '?')} allows * on *"
        for r, s in _iam_statements(resources)
        if s.get("Effect") == "Allow"
        and set(_listed(s.get("Action"))) & {"*", "*:*"}
        and "*" in _listed(s.get("Resource"))
    ]


def _data_role_statements(resources, role: str) -> Iterator[tuple[str, dict[str, Any]]]:
    names = {
        r.props.get("name")
        for r in _of(resources, ROLE)
        if (r.props.get("tags") or {}).get(TAG_ROLE) == role
    }
    for policy in _of(resources, ROLE_POLICY):
        if policy.props.get("role") in names:
            for statement in _statements(policy.props.get("policy")):
                yield policy.name, statement


def data_writes_in_stack(resources: Sequence[Resource], stack: str) -> list[str]:
    """Training and SageMaker roles write S3 only under ``<stack>/`` in results, ``models/`` and
    ``hub/`` (the hub model cache) in models."""
    buckets = {
        (r.props.get("tags") or {}).get(TAG_BUCKET): r.props.get("bucket")
        for r in _of(resources, BUCKET)
    }
    allowed = [
        f"arn:aws:s3:::{buckets.get('results')}/{stack}/",
        f"arn:aws:s3:::{buckets.get('models')}/models/",
        f"arn:aws:s3:::{buckets.get('models')}/hub/",
    ]
    violations = []
    for role in DATA_ROLES:
        for policy, statement in _data_role_statements(resources, role):
            if not any(_allows(statement, action) for action in S3_WRITES):
                continue
            for resource in _listed(statement.get("Resource")):
                if not any(resource.startswith(prefix) for prefix in allowed):
                    violations.append(
                        f"{policy}: statement {statement.get('Sid', '?')} lets the {role} role "
                        f"write {resource}, outside {' and '.join(allowed)}"
                    )
    return violations


def terminate_conditioned(resources: Sequence[Resource], stack: str) -> list[str]:
    """Every statement allowing ec2:TerminateInstances is conditioned on this stack's tag."""
    keys = (f"aws:ResourceTag/{TAG_STACK}", f"ec2:ResourceTag/{TAG_STACK}")
    violations = []
    for resource, statement in _iam_statements(resources):
        if not _allows(statement, "ec2:TerminateInstances"):
            continue
        equals = (statement.get("Condition") or {}).get("StringEquals") or {}
        if not any(equals.get(key) == stack for key in keys):
            violations.append(
                f"{resource.name}: statement {statement.get('Sid', '?')} allows "
                f"ec2:TerminateInstances without a StringEquals condition on {keys[0]}={stack}"
            )
    return violations


def instances_terminate_nothing(resources: Sequence[Resource], stack: str) -> list[str]:
    """Training instances may not terminate instances (they shut down; shutdown terminates)."""
    return [
        f"{policy}: statement {statement.get('Sid', '?')} lets the training role call "
        "ec2:TerminateInstances"
        for policy, statement in _data_role_statements(resources, "training")
        if _allows(statement, "ec2:TerminateInstances")
    ]


def models_kept(resources: Sequence[Resource], stack: str) -> list[str]:
    """No lifecycle rule expires objects or versions in the models bucket."""
    models = {
        r.id
        for r in _of(resources, BUCKET)
        if (r.props.get("tags") or {}).get(TAG_BUCKET) == "models"
    }
    typ = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
    return [
        f"{config.name}: rule {rule.get('id')} expires models"
        for config in _of(resources, typ)
        if config.props.get("bucket") in models
        for rule in _listed(config.props.get("rules"))
        if rule.get("expiration") or rule.get("noncurrentVersionExpiration")
    ]


RULES: dict[str, Rule] = {
    rule.__name__.replace("_", "-"): rule
    for rule in (
        buckets_encrypted,
        buckets_versioned,
        public_access_blocked,
        tls_only,
        imdsv2_required,
        ebs_encrypted,
        training_no_ingress,
        no_world_ssh,
        no_star_star,
        data_writes_in_stack,
        terminate_conditioned,
        instances_terminate_nothing,
        models_kept,
    )
}


def check_all(resources: Sequence[Resource], stack: str) -> dict[str, list[str]]:
    """Rule name -> violations, for the rules that are violated."""
    results = {name: rule(resources, stack) for name, rule in RULES.items()}
    return {name: violations for name, violations in results.items() if violations}
