"""Each policy rule holds on the real stack and fails on a broken copy of it."""

from __future__ import annotations

import json
import runpy
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pulumi_policy
import pytest

from stnlp.infra.policies import RULES, Resource, check_all
from stnlp.infra.stack import build_stack
from tests.infra_mocks import example_registry, project_config, run_program

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def stack():
    """Every resource of a stack with the interface host on (so it has ingress rules too)."""
    config = project_config({"interfaceHost": True, "interfaceCidrs": ["198.51.100.0/24"]})
    registry = example_registry()
    return run_program(lambda: build_stack(registry), "dev", config).resources


def _edit(resources, typ_suffix, change, name=None):
    """A copy of ``resources`` where each match of type (and name) has its props changed."""
    out = []
    for r in resources:
        if r.typ.endswith(typ_suffix) and (name is None or r.name == name):
            props = json.loads(json.dumps(r.props))
            change(props)
            r = replace(r, props=props)
        out.append(r)
    return out


def _drop(resources, typ_suffix):
    return [r for r in resources if not r.typ.endswith(typ_suffix)]


def _add(resources, typ, name, props):
    return [*resources, Resource(typ, name, props, f"id-{name}")]


def _training_sg(resources):
    return next(r.id for r in resources if r.name == "training-sg")


def _policy_edit(change):
    def edit(props):
        document = json.loads(props["policy"])
        change(document["Statement"])
        props["policy"] = json.dumps(document)

    return edit


def _set_statement(sid, key, value):
    def change(statements):
        for statement in statements:
            if statement.get("Sid") == sid:
                if value is None:
                    statement.pop(key)
                else:
                    statement[key] = value

    return _policy_edit(change)


BROKEN = {
    "buckets-encrypted": lambda rs: _drop(rs, ":BucketServerSideEncryptionConfiguration"),
    "buckets-versioned": lambda rs: _edit(
        rs,
        ":BucketVersioning",
        lambda p: p["versioningConfiguration"].update(status="Suspended"),
        "models-versioning",
    ),
    "public-access-blocked": lambda rs: _edit(
        rs,
        ":BucketPublicAccessBlock",
        lambda p: p.update(restrictPublicBuckets=False),
        "results-public-access-block",
    ),
    "tls-only": lambda rs: _edit(
        rs,
        ":BucketPolicy",
        _policy_edit(lambda ss: ss[0].update(Condition={})),
        "datasets-tls-only",
    ),
    "imdsv2-required": lambda rs: _edit(
        rs, ":Instance", lambda p: p["metadataOptions"].update(httpTokens="optional")
    ),
    "ebs-encrypted": lambda rs: _edit(
        rs,
        ":LaunchTemplate",
        lambda p: p["blockDeviceMappings"][0]["ebs"].update(encrypted="false"),
    ),
    "training-no-ingress": lambda rs: _add(
        rs,
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
        "debug",
        {
            "securityGroupId": _training_sg(rs),
            "ipProtocol": "tcp",
            "fromPort": 8888,
            "toPort": 8888,
            "cidrIpv4": "10.0.0.0/8",
        },
    ),
    "no-world-ssh": lambda rs: _add(
        rs,
        "aws:ec2/securityGroup:SecurityGroup",
        "bastion",
        {
            "ingress": [
                {"protocol": "tcp", "fromPort": 0, "toPort": 1024, "cidrBlocks": ["0.0.0.0/0"]}
            ]
        },
    ),
    "no-star-star": lambda rs: _add(
        rs,
        "aws:iam/policy:Policy",
        "admin",
        {
            "policy": json.dumps(
                {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
            )
        },
    ),
    "data-writes-in-stack": lambda rs: _edit(
        rs,
        ":RolePolicy",
        _set_statement("WriteStackResults", "Resource", "arn:aws:s3:::anything/*"),
        "training-policy",
    ),
    "terminate-conditioned": lambda rs: _edit(
        rs,
        ":Policy",
        _set_statement("TerminateStackInstances", "Condition", None),
        "launcher-policy",
    ),
    "instances-terminate-nothing": lambda rs: _edit(
        rs,
        ":RolePolicy",
        _policy_edit(lambda ss: ss.append({"Sid": "Terminate", "Effect": "Allow",
                                           "Action": "ec2:TerminateInstances",
                                           "Resource": "*", "Condition": {"StringEquals": {
                                               "aws:ResourceTag/stnlp:stack": "dev"}}})),
        "training-policy",
    ),
    "models-kept": lambda rs: _edit(
        rs,
        ":BucketLifecycleConfiguration",
        lambda p: p["rules"][0].update(expiration={"days": 90}),
        "models-lifecycle",
    ),
}


def test_every_rule_has_a_failing_example():
    assert set(BROKEN) == set(RULES)


def test_the_stack_passes_every_rule(stack):
    assert check_all(stack, "dev") == {}


# Breaks that rightly trip another rule as well: a "*" action on "*" also lets an instance
# terminate without the stack condition.
ALSO_BROKEN = {"no-star-star": {"no-star-star", "terminate-conditioned"}}


@pytest.mark.parametrize("rule", sorted(BROKEN))
def test_rule_fails_on_a_broken_stack(stack, rule):
    violations = RULES[rule](BROKEN[rule](stack), "dev")
    assert violations, f"{rule} did not notice the break"
    assert set(check_all(BROKEN[rule](stack), "dev")) == ALSO_BROKEN.get(rule, {rule})


def test_rules_read_the_stack_name(stack):
    assert RULES["terminate-conditioned"](stack, "prod")
    assert RULES["data-writes-in-stack"](stack, "prod")


@pytest.mark.parametrize(
    "rule",
    [
        {"ipProtocol": "-1", "cidrIpv4": "0.0.0.0/0"},
        {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv6": "::/0"},
    ],
)
def test_world_ssh_in_any_form(rule):
    resources = [Resource("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "r", rule)]
    assert RULES["no-world-ssh"](resources, "dev")


def test_world_open_port_other_than_22_is_not_ssh():
    rule = {"ipProtocol": "tcp", "fromPort": 443, "toPort": 443, "cidrIpv4": "0.0.0.0/0"}
    resources = [Resource("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "r", rule)]
    assert RULES["no-world-ssh"](resources, "dev") == []


def _policy_resources(resources):
    """The recorded resources as pulumi-policy hands them over: ids unknown, links by URN."""
    urn = {r.id: f"urn:pulumi:dev::stranger-things-nlp::{r.typ}::{r.name}" for r in resources}
    out = []
    for r in resources:
        dependencies = {}
        for key in ("bucket", "securityGroupId"):
            if r.props.get(key) in urn and r.typ != "aws:s3/bucket:Bucket":
                dependencies[key] = [SimpleNamespace(urn=urn[r.props[key]])]
        groups = r.props.get("vpcSecurityGroupIds") or []
        if groups:
            dependencies["vpcSecurityGroupIds"] = [SimpleNamespace(urn=urn[g]) for g in groups]
        props = {k: ("unknown" if k in dependencies else v) for k, v in r.props.items()}
        out.append(
            SimpleNamespace(
                resource_type=r.typ,
                name=r.name,
                props=props,
                urn=urn[r.id],
                property_dependencies=dependencies,
            )
        )
    return out


def _run_pack(monkeypatch, resources):
    packs = []
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kw: packs.append(kw))
    runpy.run_path(str(ROOT / "policy" / "__main__.py"))
    [pack] = packs
    reported = {}
    for policy in pack["policies"]:
        args = SimpleNamespace(resources=_policy_resources(resources))
        policy.validate(
            args,
            lambda message, urn=None, p=policy: reported.setdefault(p.name, []).append(message),
        )
    return pack, reported


def test_policy_pack_wraps_every_rule(monkeypatch, stack):
    pack, reported = _run_pack(monkeypatch, stack)
    assert pack["name"] == "stnlp-safety"
    assert [p.name for p in pack["policies"]] == list(RULES)
    assert reported == {}


def test_policy_pack_reports_violations(monkeypatch, stack):
    _, reported = _run_pack(monkeypatch, BROKEN["training-no-ingress"](stack))
    assert list(reported) == ["training-no-ingress"]
