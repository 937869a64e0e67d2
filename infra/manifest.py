"""Manifest: one JSON document of what the stack created, in SSM and as stack outputs.

The CLI and the instances find it by stack name at ``/stnlp/<stack>/manifest``; its shape is
the one in docs/architecture.md ("Stack manifest").
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from stnlp.common.names import manifest_parameter


def manifest_document(facts: dict[str, Any]) -> str:
    """The manifest as stored: sorted JSON, so an unchanged stack gives an unchanged parameter."""
    return json.dumps(facts, sort_keys=True, indent=1)


class Manifest(pulumi.ComponentResource):
    """The SSM parameter holding the manifest; ``document`` is its JSON text."""

    def __init__(
        self,
        name: str,
        stack: str,
        facts: dict[str, Any],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("stnlp:infra:Manifest", name, None, opts)
        self.document = pulumi.Output.from_input(facts).apply(manifest_document)
        self.parameter = aws.ssm.Parameter(
            "manifest",
            name=manifest_parameter(stack),
            type="String",
            tier="Intelligent-Tiering",
            value=self.document,
            description=f"stnlp stack manifest of {stack}",
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"parameter": self.parameter.name})
