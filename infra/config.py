"""The stack's typed config, read from ``pulumi.Config`` inside the Pulumi program.

The keys, their types and validation live in the neutral :mod:`stnlp.common.stackconfig`, which
the CLI also uses to read ``Pulumi.<stack>.yaml`` files without Pulumi.
"""

from __future__ import annotations

from stnlp.common.stackconfig import KEYS, StackConfig, config_from_values


def load_config() -> StackConfig:
    """Read the stack's config from ``pulumi.Config`` (inside a Pulumi program or mocks)."""
    import pulumi

    project = pulumi.Config()
    values = {key.name: project.get(key.name) for key in KEYS}
    values = {name: value for name, value in values.items() if value is not None}
    region = pulumi.Config("aws").get("region")
    return config_from_values(pulumi.get_stack(), region, values, where="pulumi config")


