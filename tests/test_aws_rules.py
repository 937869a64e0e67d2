"""The code's AWS calls judged by AWS's rules: the IAM policies the Pulumi program declares,
evaluated with IAM semantics, and the request rules moto skips (tests/aws_rules.py)."""

from __future__ import annotations

import pytest

from stnlp.infra.identity import (
    WRITE_OBJECT,
)
from tests.aws_rules import (
    Need,
    decide,
    read_calls,
    run_instances_problems,
)
from tests.cloud_stack import REPO
from tests.helpers import run_stnlp

JOB = "example-linefit"


def test_iam_semantics_wildcards_conditions_and_explicit_deny():
    allow = {"Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/models/*"}
    assert decide([allow], Need("s3:GetObject", "arn:aws:s3:::b/models/x")) == "allow"
    assert decide([allow], Need("S3:GETOBJECT", "arn:aws:s3:::b/models/x")) == "allow"
    assert decide([allow], Need("s3:GetObject", "arn:aws:s3:::b/other")) == "implicit-deny"
    tagged = {"Effect": "Allow", "Action": "ec2:TerminateInstances", "Resource": "*",
              "Condition": {"StringEquals": {"aws:ResourceTag/stnlp:stack": "dev"}}}
    assert decide([tagged], Need("ec2:TerminateInstances", "i", {
        "aws:ResourceTag/stnlp:stack": "dev"})) == "allow"
    assert decide([tagged], Need("ec2:TerminateInstances", "i")) == "implicit-deny"
    negated = {"Effect": "Deny", "Action": "*", "Resource": "*",
               "Condition": {"StringNotEquals": {"aws:ResourceTag/stnlp:stack": "dev"}}}
    assert decide([allow, negated], Need("s3:GetObject", "arn:aws:s3:::b/models/x")) == "deny"


def test_a_tagged_put_needs_put_object_tagging():
    """Item 3: today's training policy had s3:PutObject only; AWS also wants PutObjectTagging."""
    assert "s3:PutObjectTagging" in WRITE_OBJECT
    old = [{"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": "arn:aws:s3:::r/dev/*"}]
    key = "arn:aws:s3:::r/dev/runs/x/logs/a.log"
    assert decide(old, Need("s3:PutObjectTagging", key)) == "implicit-deny"


@pytest.mark.parametrize("principal, service, operation, params, status", [
    ("training", "s3", "PutObject", {"Bucket": "{results}", "Key": "other/runs/x/state.json"},
     200),
    ("training", "ec2", "TerminateInstances", {"InstanceIds": ["{instance}"]}, 200),
    ("training", "s3", "PutObject", {"Bucket": "{datasets}", "Key": "raw/transcripts/x.csv"},
     200),
    ("training", "s3", "DeleteObject", {"Bucket": "{models}",
                                        "Key": "models/line-length/v1/manifest.json"}, 204),
    ("launcher", "ec2", "TerminateInstances", {"InstanceIds": ["{foreign}"]}, 200),
    ("launcher", "s3", "DeleteObject", {"Bucket": "{models}",
                                        "Key": "models/line-length/v1/manifest.json"}, 204),
])  # fmt: skip
def test_calls_that_must_be_denied_are_denied(cloud, principal, service, operation, params,
                                              status):
    """Another stack's run, another job's instance, a dataset write from the training role,
    deleting a model version: each is refused by the declared policies."""
    template = cloud.manifest["launch_templates"][JOB]["id"]
    mine = cloud.ec2.run_instances(
        LaunchTemplate={"LaunchTemplateId": template}, MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "stnlp:stack", "Value": cloud.settings.stack}]}])["Instances"][0]
    foreign = cloud.ec2.run_instances(
        LaunchTemplate={"LaunchTemplateId": template}, MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "stnlp:stack", "Value": "another"}]}])["Instances"][0]
    values = {**cloud.manifest["buckets"], "instance": mine["InstanceId"],
              "foreign": foreign["InstanceId"]}
    params = {k: [v.format(**values) for v in val] if isinstance(val, list)
              else val.format(**values) for k, val in params.items()}  # fmt: skip
    call = {"principal": principal, "service": service, "operation": operation,
            "params": params, "status": status}
    assert cloud.denials([call]), "this call must be refused"


def test_stnlp_train_ec2_makes_only_calls_aws_allows(cloud, tmp_path):
    """Item 1 and the rules layer: the real command in a process of its own, every AWS call it
    makes recorded and judged against the launcher policy; its RunInstances request against
    EC2's rules (subnet and group in one VPC, volume vs snapshot, size, market)."""
    record = tmp_path / "calls.jsonl"
    env = {
        "PYTHONPATH": f"{REPO / 'tests' / 'recorder'}:{cloud.site}",
        "STNLP_AWS_RECORD": str(record), "STNLP_AWS_PRINCIPAL": "launcher",
        "STNLP_ENDPOINT_URL": cloud.settings.endpoint_url, "STNLP_REGION": "us-east-1",
        "STNLP_DISABLED_PLUGINS": ",".join(cloud.settings.disabled_plugins),
    }
    done = run_stnlp("train", JOB, "--backend", "ec2", "--stack", cloud.settings.stack,
                     "--preset", "tiny", env=env, cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "estimated cost: up to $" in done.stdout
    calls = read_calls(record)
    assert {c["operation"] for c in calls} >= {"GetParameter", "RunInstances", "PutObject"}
    assert cloud.denials(calls) == []
    (launch,) = [c for c in calls if c["operation"] == "RunInstances"
                 and not c["params"].get("DryRun")]  # fmt: skip
    assert run_instances_problems(launch["params"], cloud.facts(), stack_spot=True) == []
    assert run_instances_problems({**launch["params"], "SubnetId": None}, cloud.facts(), True)


def test_dry_run_prints_the_launch_and_creates_nothing(cloud, tmp_path):
    env = {"PYTHONPATH": str(cloud.site), "STNLP_ENDPOINT_URL": cloud.settings.endpoint_url,
           "STNLP_REGION": "us-east-1",
           "STNLP_DISABLED_PLUGINS": ",".join(cloud.settings.disabled_plugins)}
    done = run_stnlp("train", JOB, "--backend", "ec2", "--stack", cloud.settings.stack,
                     "--dry-run", env=env, cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"SubnetId"' in done.stdout and "user data:" in done.stdout
    assert "estimated cost: up to $" in done.stdout
    assert cloud.stores.results.list(f"{cloud.settings.stack}/") == []
    assert cloud.stores.models.list("packages/") == []


def test_the_cloud_tests_calls_are_recorded_and_judged(cloud, tmp_path):
    """The `cloud` fixture judges every call the project's code makes in a test, in process as
    the launcher's (here a launch) and in the instances it starts as their role's."""
    from stnlp.runtime.backends.ec2 import train_ec2

    train_ec2(cloud.registry.job(JOB), cloud.settings, stores=cloud.stores, ec2=cloud.ec2)
    cloud.ec2.describe_instances()  # the test's own call: not the launcher's
    calls = read_calls(tmp_path / "launcher-calls.jsonl")
    made = {(c["service"], c["operation"]) for c in calls}
    assert {("ssm", "GetParameter"), ("ec2", "RunInstances"), ("s3", "PutObject")} <= made
    assert ("ec2", "DescribeInstances") not in made
    assert {c["principal"] for c in calls} == {"launcher"}
    assert cloud.denials(calls) == []
