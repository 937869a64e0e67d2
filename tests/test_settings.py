"""Settings: defaults, the settings file, environment overrides, clear errors."""

from __future__ import annotations

import pytest

from stnlp.common.errors import UserError
from stnlp.common.settings import load_settings


def test_defaults_without_file_or_env(tmp_path):
    settings = load_settings(env={}, cwd=tmp_path)
    assert settings.stack == "local"
    assert settings.source == "defaults"
    assert not settings.uses_s3


def test_file_then_env_override(tmp_path):
    (tmp_path / "stnlp.toml").write_text(
        'store = "/data/store"\nstack = "dev"\ndisabled_plugins = ["network"]\n'
        '[models]\nchatbot-llama = "org/llama"\n'
    )
    env = {"STNLP_STACK": "prod", "STNLP_MODEL_CHATBOT_QWEN": "org/qwen"}
    settings = load_settings(env=env, cwd=tmp_path)
    assert settings.store == "/data/store"
    assert settings.stack == "prod"
    assert settings.disabled_plugins == ("network",)
    assert settings.model_id("chatbot-llama", "x") == "org/llama"
    assert settings.model_id("chatbot-qwen", "x") == "org/qwen"
    assert settings.model_id("other", "fallback") == "fallback"


def test_settings_file_from_env_var(tmp_path):
    path = tmp_path / "custom.toml"
    path.write_text('region = "eu-west-1"\n')
    settings = load_settings(env={"STNLP_SETTINGS": str(path)}, cwd=tmp_path)
    assert settings.region == "eu-west-1"
    assert settings.source == str(path)


def test_disabled_plugins_from_env(tmp_path):
    settings = load_settings(env={"STNLP_DISABLED_PLUGINS": "chatbot, network"}, cwd=tmp_path)
    assert settings.disabled_plugins == ("chatbot", "network")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("store = ", "is not valid TOML"),
        ('colour = "blue"\n', "unknown key(s) colour"),
        ('disabled_plugins = "network"\n', "disabled_plugins must be a list"),
        ("[models]\nchatbot = 3\n", "[models] must map"),
    ],
)
def test_bad_settings_file_names_the_file(tmp_path, text, message):
    (tmp_path / "stnlp.toml").write_text(text)
    with pytest.raises(UserError) as err:
        load_settings(env={}, cwd=tmp_path)
    assert str(tmp_path / "stnlp.toml") in str(err.value)
    assert message in str(err.value)


def test_missing_settings_file_is_an_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_settings(env={"STNLP_SETTINGS": str(tmp_path / "nope.toml")}, cwd=tmp_path)
