"""The whole stack: core components, plugin resources, the manifest and the stack outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from stnlp.common.errors import UserError
from stnlp.common.stackconfig import StackConfig
from stnlp.infra.compute import Compute
from stnlp.infra.config import load_config
from stnlp.infra.identity import Identity
from stnlp.infra.manifest import Manifest
from stnlp.infra.monitoring import Monitoring
from stnlp.infra.network import Network
from stnlp.infra.storage import Storage


@dataclass(frozen=True)
class StackContext:
    """What the ``stnlp_infra_resources`` hook receives.

    Create resources with ``pulumi.ResourceOptions(parent=stack.parent)``; they then use the
    stack's AWS provider and tags.
    """

    name: str
    config: StackConfig
    buckets: dict[str, pulumi.Output[str]]
    parent: pulumi.Resource
    vpc_id: pulumi.Output[str]
    security_group_id: pulumi.Output[str]


class NlpStack(pulumi.ComponentResource):
    """Root of every resource of one stack; ``manifest`` holds the manifest facts."""

    def __init__(self, registry, config: StackConfig):
        provider = aws.Provider("aws", region=config.region, default_tags={"tags": config.tags})
        super().__init__(
            "stnlp:infra:Stack",
            f"stnlp-{config.stack}",
            None,
            pulumi.ResourceOptions(providers={"aws": provider}),
        )
        child = pulumi.ResourceOptions(parent=self)
        account_id = aws.get_caller_identity_output(
            opts=pulumi.InvokeOutputOptions(parent=self)
        ).account_id
        jobs = registry.job_specs()
        storage = Storage("storage", config, account_id, child)
        network = Network("network", config, child)
        identity = Identity(
            "identity", config, account_id, storage.names, [job.name for job in jobs], child
        )
        compute = Compute(
            "compute", config, network, identity, jobs, storage.names["models"], child
        )
        Monitoring("monitoring", config, account_id, compute.alarm_topic,
                   [job.name for job in jobs], child)
        context = StackContext(
            config.stack, config, storage.names, self, network.vpc.id, compute.training_sg.id
        )
        self.manifest: dict[str, Any] = {
            "stack": config.stack,
            "region": config.region,
            "buckets": storage.names,
            "subnet_ids": network.training_subnet_ids,
            "security_group_id": compute.training_sg.id,
            "instance_profile_arn": identity.training_profile.arn,
            "sagemaker_role_arn": identity.sagemaker_role.arn,
            "launcher_policy_arn": identity.launcher_policy.arn,
            "launch_templates": compute.launch_templates,
            "ami_id": compute.ami.id,
            "ami_python": config.ami_python,
            "ami_packages": list(config.ami_packages),
            "spot": config.spot,
            "nat_gateway": config.nat_gateway,
            "hub_token_parameter": config.hub_token_parameter or None,
            "log_groups": compute.log_groups,
            "notify_topic_arn": compute.alarm_topic.arn,
            "plugins": plugin_resources(registry, context),
        }
        if compute.interface_url is not None:
            self.manifest["interface_url"] = compute.interface_url
        self.manifest_resource = Manifest("manifest", config.stack, self.manifest, child)
        self.register_outputs({"manifest": self.manifest_resource.document})


def plugin_resources(registry, context: StackContext) -> dict[str, Any]:
    """Call every plugin's ``stnlp_infra_resources`` hook; plugin -> the facts it returned."""
    facts: dict[str, Any] = {}
    for plugin, result in registry.call_each("stnlp_infra_resources", stack=context):
        if result is not None and not isinstance(result, dict):
            raise UserError(
                f"plugin {plugin!r}: stnlp_infra_resources must return a dict or None, "
                f"got {type(result).__name__}"
            )
        facts[plugin] = result or {}
    return facts


def build_stack(registry, config: StackConfig | None = None) -> NlpStack:
    """Build the stack from the plugin registry and export the manifest facts as outputs.

    ``config`` defaults to the stack's Pulumi config (:func:`stnlp.infra.config.load_config`).
    """
    stack = NlpStack(registry, config or load_config())
    for key, value in stack.manifest.items():
        pulumi.export(key, value)
    pulumi.export("manifest_parameter", stack.manifest_resource.parameter.name)
    return stack
