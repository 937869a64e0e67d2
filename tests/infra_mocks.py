"""Pulumi mocks that record every resource, and helpers to build a stack under them.

``build(registry, config)`` runs the whole program in-process (no Pulumi CLI) and returns a
:class:`Built` with every resource as an :class:`stnlp.infra.policies.Resource` (camelCase inputs,
exactly what the engine would get) and the manifest document.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

from stnlp.common.names import PROJECT, manifest_parameter
from stnlp.infra.policies import Resource

ACCOUNT = "123456789012"
AMI_ID = "ami-0123456789abcdef0"
AMI_SNAPSHOT_GB = 105
EXAMPLE_PLUGIN = Path(__file__).parent / "example_plugin"


SECRET_SIGNATURE = ("4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270")


def unwrap_secrets(value: Any) -> Any:
    """The value with Pulumi's secret envelopes (as mocks receive them) removed, recursively."""
    if isinstance(value, dict):
        key, signature = SECRET_SIGNATURE
        if value.get(key) == signature:
            return unwrap_secrets(value["value"])
        return {k: unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(v) for v in value]
    return value


class RecordingMocks(pulumi.runtime.Mocks):
    """Records every resource; answers only the invokes the program is known to make."""

    def __init__(self):
        self.resources: list[Resource] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        """Record the resource; return an id and outputs the way AWS would fill them in."""
        short = args.typ.rsplit(":", 1)[-1]
        inputs = unwrap_secrets(dict(args.inputs))
        outputs = {**inputs, "name": inputs.get("name", args.name)}
        if short == "Bucket":
            resource_id = inputs["bucket"]
            outputs["arn"] = f"arn:aws:s3:::{resource_id}"
        else:
            resource_id = f"{short.lower()}-{args.name}"
            service = args.typ.split(":")[1].split("/")[0]
            outputs["arn"] = f"arn:aws:{service}:us-east-1:{ACCOUNT}:{short.lower()}/{args.name}"
        if short == "Instance":
            outputs["publicDns"] = f"ec2-{args.name}.compute.amazonaws.com"
        self.resources.append(Resource(args.typ, args.name, inputs, resource_id))
        return resource_id, outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        """Answer the AWS invokes the program makes; fail loudly on any other."""
        self.calls.append((args.token, dict(args.args)))
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT,
                "arn": f"arn:aws:iam::{ACCOUNT}:user/t",
                "userId": "t",
                "id": ACCOUNT,
            }
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = ["us-east-1a", "us-east-1b", "us-east-1c"]
            return {"names": names, "zoneIds": names, "id": "us-east-1"}
        if args.token == "aws:ssm/getParameter:getParameter":
            return {"name": args.args["name"], "value": AMI_ID, "type": "String",
                    "id": args.args["name"]}
        if args.token == "aws:ec2/getAmi:getAmi":
            return {
                "id": AMI_ID,
                "rootDeviceName": "/dev/sda1",
                "name": "mock ami",
                "architecture": "x86_64",
                # the deep-learning AMIs' root snapshots are large (the PyTorch ones >= 100 GB)
                "blockDeviceMappings": [{"deviceName": "/dev/sda1", "ebs": {
                    "volume_size": str(AMI_SNAPSHOT_GB), "volume_type": "gp3"}}],
            }
        raise NotImplementedError(f"unmocked invoke {args.token}")


@dataclass
class Built:
    """A stack built under mocks."""

    resources: list[Resource]
    calls: list[tuple[str, dict[str, Any]]]
    manifest: dict[str, Any] = field(default_factory=dict)

    def of(self, typ_suffix: str) -> list[Resource]:
        """Resources whose type ends with ``typ_suffix`` (e.g. ``:LaunchTemplate``), by name.

        Sorted because mocks see registrations in whatever order Pulumi's tasks run them.
        """
        return sorted((r for r in self.resources if r.typ.endswith(typ_suffix)),
                      key=lambda r: r.name)


def run_program(program: Callable[[], Any], stack: str, config: Mapping[str, Any]) -> Built:
    """Run ``program`` under fresh recording mocks with ``config`` (``project:key`` -> value).

    ``Built.manifest`` is the document the program wrote to the SSM manifest parameter.
    """
    # A fresh event loop per program: another test in the same worker (Gradio, Playwright) may
    # have left a different or closed loop current, and Pulumi's futures bind to the current one.
    asyncio.set_event_loop(asyncio.new_event_loop())
    # A fresh root stack resource too: the one an earlier program left (maybe unfinished, when
    # that program failed) is bound to that program's loop and stack name.
    pulumi.runtime.reset_options(project=PROJECT, stack=stack, preview=False)
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False)
    pulumi.runtime.set_all_config(config_strings(config))
    pulumi.runtime.test(program)()
    built = Built(mocks.resources, mocks.calls)
    for parameter in built.of(":Parameter"):
        if parameter.props["name"] == manifest_parameter(stack):
            built.manifest = json.loads(parameter.props["value"])
    return built


def config_strings(config: Mapping[str, Any]) -> dict[str, str]:
    """Config values as Pulumi passes them to a program: strings, JSON for lists and booleans."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


def project_config(values: Mapping[str, Any], region: str = "us-east-1") -> dict[str, Any]:
    """Pulumi config keys for project ``values`` (camelCase key -> value) plus the region."""
    return {"aws:region": region, **{f"{PROJECT}:{k}": v for k, v in values.items()}}


def example_registry(settings=None, extra: tuple[tuple[str, Any], ...] = ()):
    """A registry with only the example plugin (and ``extra`` plugins), built-ins disabled."""
    from stnlp.common.settings import Settings
    from stnlp.plugins.manager import DEFAULT_PLUGINS, build_plugin_manager

    if str(EXAMPLE_PLUGIN) not in sys.path:
        sys.path.insert(0, str(EXAMPLE_PLUGIN))
    import stnlp_example.plugin

    settings = settings or Settings(disabled_plugins=tuple(name for name, _ in DEFAULT_PLUGINS))
    return build_plugin_manager(settings, extra=(("example", stnlp_example.plugin), *extra))
