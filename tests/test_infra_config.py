"""Stack config: Pulumi.yaml declares exactly the keys of stnlp/common/stackconfig.py."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pytest
import yaml

from stnlp.common.errors import UserError
from stnlp.common.names import PROJECT
from stnlp.common.stackconfig import KEYS, config_from_stack_file
from stnlp.infra.config import load_config
from tests.infra_mocks import RecordingMocks, config_strings, project_config

ROOT = Path(__file__).resolve().parent.parent


def test_pulumi_yaml_declares_every_key_with_type_default_and_description():
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == PROJECT
    assert project["runtime"] == {
        "name": "python",
        "options": {"virtualenv": ".venv", "toolchain": "pip"},
    }
    declared = project["config"]
    assert list(declared) == [key.name for key in KEYS]
    for key in KEYS:
        assert declared[key.name]["type"] == key.type
        assert declared[key.name]["default"] == key.default
        assert declared[key.name]["description"] == key.description


def test_docs_describe_every_key():
    text = (ROOT / "README.md").read_text()
    missing = [key.name for key in KEYS if f"`{key.name}`" not in text]
    assert missing == []


def test_dev_is_safe_and_cheap_and_prod_differs_as_documented():
    dev = config_from_stack_file(ROOT / "Pulumi.dev.yaml")
    prod = config_from_stack_file(ROOT / "Pulumi.prod.yaml")
    assert (dev.stack, dev.region) == ("dev", "us-east-1")
    assert not dev.nat_gateway and not dev.interface_host and dev.spot
    assert prod.interface_host and prod.interface_cidrs == ("203.0.113.0/24",)
    assert not prod.spot
    assert prod.log_retention_days > dev.log_retention_days


def _stack_file(tmp_path, body: str) -> Path:
    path = tmp_path / "Pulumi.test.yaml"
    path.write_text(body)
    return path


@pytest.mark.parametrize(
    "line, message",
    [
        ("stranger-things-nlp:natGateway: maybe", "natGateway must be true or false, got 'maybe'"),
        ("stranger-things-nlp:logRetentionDays: 10", "logRetentionDays 10 is not one of"),
        ("stranger-things-nlp:vpcCidr: 10.0.0.0/33", "vpcCidr has an invalid CIDR '10.0.0.0/33'"),
        ("stranger-things-nlp:vpcCidr: 10.0.0.0/8", "must be a /16 to /24"),
        ("stranger-things-nlp:interfaceHost: true", "interfaceCidrs is empty"),
        ("stranger-things-nlp:interfaceCidrs: [nowhere]", "interfaceCidrs has an invalid CIDR"),
        ("stranger-things-nlp:interfacePort: http", "interfacePort must be an integer"),
        ("stranger-things-nlp:noncurrentTransitionDays: 7", "at least 30"),
        ("stranger-things-nlp:natGatway: true", "unknown config key(s) natGatway"),
    ],
)
def test_bad_config_is_named_with_its_file(tmp_path, line, message):
    path = _stack_file(tmp_path, f"config:\n  {line}\n")
    with pytest.raises(UserError) as error:
        config_from_stack_file(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_stack_file_must_exist_and_be_named_for_its_stack(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        config_from_stack_file(tmp_path / "Pulumi.none.yaml")
    with pytest.raises(UserError, match="must be named Pulumi"):
        config_from_stack_file(tmp_path / "stack.yaml")


def test_load_config_reads_pulumi_config_strings():
    pulumi.runtime.set_mocks(RecordingMocks(), project=PROJECT, stack="qa", preview=False)
    values = {
        "spot": False,
        "interfaceHost": True,
        "interfaceCidrs": ["10.1.0.0/16"],
        "logRetentionDays": 90,
    }
    pulumi.runtime.set_all_config(config_strings(project_config(values, "eu-west-1")))
    config = load_config()
    assert (config.stack, config.region, config.spot) == ("qa", "eu-west-1", False)
    assert config.interface_cidrs == ("10.1.0.0/16",)
    assert config.log_retention_days == 90
    assert config.nat_gateway is False  # the default
