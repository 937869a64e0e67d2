"""The Pulumi program built in-process under mocks, every resource recorded and inspected."""

from __future__ import annotations

import base64
import json
import runpy
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pytest

from stnlp.common.errors import UserError
from stnlp.common.settings import Settings
from stnlp.common.stackconfig import read_stack_file
from stnlp.infra.policies import check_all
from stnlp.infra.stack import build_stack
from stnlp.plugins import hookimpl
from stnlp.plugins.manager import build_plugin_manager
from stnlp.plugins.spec import JobSpec
from tests.extension import install_example_plugin
from tests.infra_mocks import ACCOUNT, example_registry, project_config, run_program

ROOT = Path(__file__).resolve().parent.parent


def build(values=None, stack="dev", extra=()):
    """Build the stack with the example plugin (and ``extra`` plugins) and project config."""
    registry = example_registry(extra=extra)
    return run_program(lambda: build_stack(registry), stack, project_config(values or {}))


@pytest.fixture(scope="module")
def dev():
    return build()


def _statements(built, role):
    [policy] = [r for r in built.of(":RolePolicy") if r.name == f"{role}-policy"]
    return json.loads(policy.props["policy"])["Statement"]


def test_default_stack_passes_every_policy_rule(dev):
    assert check_all(dev.resources, "dev") == {}


def test_three_locked_down_buckets_with_lifecycle_rules(dev):
    names = sorted(r.props["bucket"] for r in dev.of(":Bucket"))
    assert names == [f"stnlp-dev-{kind}-{ACCOUNT}" for kind in ("datasets", "models", "results")]
    assert len(dev.of(":BucketOwnershipControls")) == 3
    assert {r.props["rule"]["objectOwnership"] for r in dev.of(":BucketOwnershipControls")} == {
        "BucketOwnerEnforced"
    }
    lifecycles = {
        r.props["bucket"].split("-")[2]: r.props["rules"]
        for r in dev.of(":BucketLifecycleConfiguration")
    }
    for rules in lifecycles.values():
        [transition] = rules[0]["noncurrentVersionTransitions"]
        assert transition == {"noncurrentDays": 30, "storageClass": "STANDARD_IA"}
    expiring = {r["id"]: r for r in lifecycles["results"] if "expiration" in r}
    assert expiring["expire-logs"]["expiration"]["days"] == 30
    assert expiring["expire-logs"]["filter"]["tag"] == {"key": "stnlp-expire", "value": "logs"}
    assert expiring["expire-checkpoints"]["expiration"]["days"] == 14
    assert not any("expiration" in r for r in lifecycles["models"])


def test_default_network_has_no_nat_and_no_flow_logs(dev):
    subnets = dev.of(":Subnet")
    assert len(subnets) == 4
    public = [s for s in subnets if s.name.startswith("public")]
    assert len({s.props["availabilityZone"] for s in public}) == 2
    assert all(s.props["mapPublicIpOnLaunch"] for s in public)
    [endpoint] = dev.of(":VpcEndpoint")
    assert endpoint.props["serviceName"] == "com.amazonaws.us-east-1.s3"
    assert endpoint.props["vpcEndpointType"] == "Gateway"
    assert len(endpoint.props["routeTableIds"]) == 2
    assert not dev.of(":NatGateway") and not dev.of(":Eip") and not dev.of(":FlowLog")
    assert dev.manifest["subnet_ids"] == [s.id for s in public]


def test_nat_and_flow_logs_when_config_asks():
    built = build({"natGateway": True, "flowLogs": True, "logRetentionDays": 30})
    assert len(built.of(":NatGateway")) == 1
    [route] = built.of(":Route")
    assert route.props["destinationCidrBlock"] == "0.0.0.0/0"
    [flow] = built.of(":FlowLog")
    assert flow.props["trafficType"] == "ALL"
    private = [s.id for s in built.of(":Subnet") if s.name.startswith("private")]
    assert built.manifest["subnet_ids"] == private
    assert check_all(built.resources, "dev") == {}


def test_training_role_scope(dev):
    statements = {s["Sid"]: s for s in _statements(dev, "training")}
    results = f"arn:aws:s3:::stnlp-dev-results-{ACCOUNT}"
    assert statements["WriteStackResults"]["Resource"] == f"{results}/dev/*"
    models = f"arn:aws:s3:::stnlp-dev-models-{ACCOUNT}"
    assert statements["PublishModels"]["Resource"] == [f"{models}/models/*", f"{models}/hub/*"]
    for sid in ("PublishModels", "WriteStackResults"):  # uploads carry object tags
        assert "s3:PutObjectTagging" in statements[sid]["Action"]
    assert not any("ec2:TerminateInstances" in str(s["Action"]) for s in statements.values())
    assert statements["WriteJobLogs"]["Resource"] == [
        f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/stnlp/dev/example-linefit:*"
    ]
    assert statements["ReadManifest"]["Resource"] == [
        f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/stnlp/dev/manifest"]
    star = [s for s in statements.values() if s["Resource"] == "*"]
    assert [s["Sid"] for s in star] == ["PutElapsedMetric"]
    assert star[0]["Condition"]["StringEquals"] == {"cloudwatch:namespace": "STNLP"}


def test_sagemaker_role_has_the_same_data_scope_and_interface_role_only_reads(dev):
    training = {s["Sid"]: s for s in _statements(dev, "training")}
    sagemaker = {s["Sid"]: s for s in _statements(dev, "sagemaker")}
    for sid in ("ListData", "ReadData", "ListStackResults", "PublishModels", "WriteStackResults"):
        assert sagemaker[sid] == training[sid]
    actions = [s["Action"] for s in _statements(dev, "interface")]
    flat = [a for action in actions for a in (action if isinstance(action, list) else [action])]
    # reads, and the chat endpoint's replies (InvokeEndpoint changes nothing)
    assert flat and all(a.split(":")[1].startswith(("Get", "List")) or
                        a == "sagemaker:InvokeEndpoint" for a in flat)


def test_launch_template_of_a_job(dev):
    [template] = dev.of(":LaunchTemplate")
    props = template.props
    assert props["name"] == "stnlp-dev-example-linefit"
    assert props["instanceType"] == "g5.xlarge"
    assert props["imageId"] == "ami-0123456789abcdef0"
    [mapping] = props["blockDeviceMappings"]
    assert mapping["deviceName"] == "/dev/sda1"
    assert mapping["ebs"] == {  # the AMI's 105 GB snapshot plus 30 GB of work space
        "volumeSize": 135,
        "volumeType": "gp3",
        "encrypted": "true",
        "deleteOnTermination": "true",
    }
    assert props["metadataOptions"]["httpTokens"] == "required"
    assert props["instanceInitiatedShutdownBehavior"] == "terminate"
    assert props["instanceMarketOptions"]["marketType"] == "spot"
    assert props["iamInstanceProfile"]["arn"] == dev.manifest["instance_profile_arn"]
    assert props["vpcSecurityGroupIds"] == [dev.manifest["security_group_id"]]
    tags = props["tagSpecifications"][0]["tags"]
    assert tags == {
        "stnlp:stack": "dev",
        "stnlp:job": "example-linefit",
        "managed-by": "pulumi",
        "project": "stranger-things-nlp",
    }
    script = base64.b64decode(props["userData"]).decode()
    assert "stnlp.runtime.bootstrap" not in script and script.endswith("shutdown -h now\n")
    [parameter] = [args for token, args in dev.calls if token.endswith("getParameter")]
    assert parameter["name"].startswith("/aws/service/deeplearning/ami/x86_64/")
    [ami_call] = [args for token, args in dev.calls if token == "aws:ec2/getAmi:getAmi"]
    assert ami_call["filters"] == [{"name": "image-id", "values": ["ami-0123456789abcdef0"]}]


def test_log_group_and_overrun_alarm_per_job(dev):
    [group] = dev.of(":LogGroup")
    assert group.props == {"name": "/stnlp/dev/example-linefit", "retentionInDays": 14}
    [alarm] = dev.of(":MetricAlarm")
    assert alarm.props["threshold"] == 10
    assert alarm.props["dimensions"] == {"Stack": "dev", "Job": "example-linefit"}
    assert (alarm.props["namespace"], alarm.props["metricName"]) == ("STNLP", "ElapsedMinutes")
    assert alarm.props["comparisonOperator"] == "GreaterThanThreshold"
    [topic] = dev.of(":Topic")
    assert alarm.props["alarmActions"] == [f"arn:aws:sns:us-east-1:{ACCOUNT}:topic/alarms"]
    assert topic.props["name"] == "stnlp-dev-alarms"


def test_on_demand_when_config_says_no_spot():
    built = build({"spot": False})
    [template] = built.of(":LaunchTemplate")
    assert "instanceMarketOptions" not in template.props


def test_training_group_has_no_ingress_and_no_interface_host_by_default(dev):
    assert not dev.of(":SecurityGroupIngressRule")
    assert not dev.of(":Instance")
    [group] = dev.of(":SecurityGroup")
    assert "ingress" not in group.props
    ports = sorted(r.props["fromPort"] for r in dev.of(":SecurityGroupEgressRule"))
    assert ports == [80, 443]


def test_interface_host_when_enabled():
    cidrs = ["198.51.100.0/24", "2001:db8::/32"]
    built = build({"interfaceHost": True, "interfaceCidrs": cidrs, "interfacePort": 8443})
    [host] = built.of(":Instance")
    assert host.props["metadataOptions"]["httpTokens"] == "required"
    assert host.props["rootBlockDevice"]["encrypted"] is True
    assert (
        "ExecStart=/opt/stnlp/.venv/bin/stnlp serve --host 0.0.0.0 --port 8443"
        in (host.props["userData"])
    )
    assert "Restart=on-failure" in host.props["userData"]
    rules = built.of(":SecurityGroupIngressRule")
    assert {(r.props["fromPort"], r.props["toPort"]) for r in rules} == {(8443, 8443)}
    assert sorted(r.props.get("cidrIpv4") or r.props["cidrIpv6"] for r in rules) == sorted(cidrs)
    assert built.manifest["interface_url"].endswith(":8443")
    assert check_all(built.resources, "dev") == {}


def test_interface_host_without_cidrs_is_refused():
    with pytest.raises(UserError, match="interfaceCidrs is empty"):
        build({"interfaceHost": True})


def test_manifest_parameter_matches_the_architecture_shape(dev):
    [parameter] = dev.of(":Parameter")
    assert parameter.props["name"] == "/stnlp/dev/manifest"
    assert set(dev.manifest) == {
        "stack",
        "region",
        "buckets",
        "subnet_ids",
        "security_group_id",
        "instance_profile_arn",
        "sagemaker_role_arn",
        "launcher_policy_arn",
        "launch_templates",
        "ami_id",
        "ami_python",
        "ami_packages",
        "spot",
        "nat_gateway",
        "hub_token_parameter",
        "log_groups",
        "notify_topic_arn",
        "plugins",
    }
    assert dev.manifest["launch_templates"]["example-linefit"] == {
        "id": "launchtemplate-example-linefit-template",
        "name": "stnlp-dev-example-linefit",
    }
    assert dev.manifest["log_groups"] == {"example-linefit": "/stnlp/dev/example-linefit"}


class ExtensionPlugin:
    """A plugin with its own job and an extra resource created through the infra hook."""

    @hookimpl
    def stnlp_training_jobs(self, settings):
        """One CPU job that may not run on spot."""
        return [
            JobSpec(
                name="ext-job",
                component="ext",
                entrypoint="ext.train:run",
                output_model="ext-model",
                instance_type="m6i.xlarge",
                gpu_count=0,
                spot=False,
                root_volume_gb=40,
            )
        ]

    @hookimpl
    def stnlp_infra_resources(self, stack):
        """A queue under the stack, whose URN goes into the manifest."""
        queue = aws.sqs.Queue(
            "ext-queue",
            name=f"stnlp-{stack.name}-ext",
            opts=pulumi.ResourceOptions(parent=stack.parent),
        )
        return {"queue_urn": queue.urn, "bucket": stack.buckets["results"]}


def test_extension_plugin_gets_its_own_template_log_group_and_resources():
    built = build(extra=(("ext", ExtensionPlugin()),))
    templates = {r.props["name"]: r.props for r in built.of(":LaunchTemplate")}
    assert set(templates) == {"stnlp-dev-example-linefit", "stnlp-dev-ext-job"}
    ext = templates["stnlp-dev-ext-job"]
    assert ext["instanceType"] == "m6i.xlarge"
    assert "instanceMarketOptions" not in ext
    assert ext["blockDeviceMappings"][0]["ebs"]["volumeSize"] == 135  # the snapshot wins
    assert {r.props["name"] for r in built.of(":LogGroup")} == {
        "/stnlp/dev/example-linefit",
        "/stnlp/dev/ext-job",
    }
    facts = built.manifest["plugins"]["ext"]
    assert "stnlp:infra:Stack$aws:sqs/queue:Queue" in facts["queue_urn"]
    assert facts["bucket"] == f"stnlp-dev-results-{ACCOUNT}"
    assert check_all(built.resources, "dev") == {}


def test_plugin_infra_hook_returning_garbage_is_named():
    class Broken:
        @hookimpl
        def stnlp_infra_resources(self, stack):
            """Returns a list, which the hook does not accept."""
            return ["not", "a", "dict"]

    with pytest.raises(UserError, match="plugin 'broken'.*must return a dict"):
        build(extra=(("broken", Broken()),))


def test_dev_stack_builds_from_main_with_the_dev_stack_file(tmp_path, monkeypatch):
    site = install_example_plugin(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.chdir(tmp_path)
    for name in ("STNLP_SETTINGS", "STNLP_DISABLED_PLUGINS", "STNLP_STACK"):
        monkeypatch.delenv(name, raising=False)
    region, values = read_stack_file(ROOT / "Pulumi.dev.yaml")
    built = run_program(
        lambda: runpy.run_path(str(ROOT / "__main__.py")), "dev", project_config(values, region)
    )
    jobs = build_plugin_manager(Settings()).jobs
    assert "example-linefit" in jobs
    assert {r.props["name"] for r in built.of(":LaunchTemplate")} == {
        f"stnlp-dev-{job}" for job in jobs
    }
    assert set(built.manifest["log_groups"]) == set(jobs)
    assert check_all(built.resources, "dev") == {}
