"""Interface login: credentials from the environment or SSM (moto over HTTP), bind checks, 401s."""

from __future__ import annotations

import base64
import json

import boto3
import pytest

from stnlp.common.errors import UserError
from stnlp.common.settings import Settings
from stnlp.runtime.auth import (
    ENV_PASSWORD,
    ENV_SSM_PARAMETER,
    ENV_USERNAME,
    BasicAuthMiddleware,
    Credentials,
    check_bind,
    load_credentials,
)


@pytest.fixture(scope="module")
def ssm_settings(moto_endpoint):
    """Settings pointing at the moto server, holding three SecureString parameters."""
    settings = Settings(region="eu-west-1", endpoint_url=moto_endpoint)
    ssm = boto3.client("ssm", region_name="eu-west-1", endpoint_url=moto_endpoint)
    secret = json.dumps({"username": "hopper", "password": "eggos"})
    for name, value in [("ui-login", secret), ("colon", "eleven:w4ffles"), ("bad", "nope")]:
        ssm.put_parameter(Name=f"/stnlp/auth-test/{name}", Value=value, Type="SecureString")
    return settings


def test_environment_credentials():
    creds = load_credentials(Settings(), {ENV_USERNAME: "joyce", ENV_PASSWORD: "lights"})
    assert (creds.username, creds.password, creds.source) == ("joyce", "lights", "environment")
    assert "lights" not in repr(creds)


def test_half_set_environment_names_the_missing_variable():
    with pytest.raises(UserError, match=ENV_PASSWORD):
        load_credentials(Settings(), {ENV_USERNAME: "joyce"})


def test_no_credentials_configured():
    assert load_credentials(Settings(), {}) is None


def test_ssm_json_secure_string(ssm_settings):
    creds = load_credentials(ssm_settings, {ENV_SSM_PARAMETER: "/stnlp/auth-test/ui-login"})
    assert (creds.username, creds.password) == ("hopper", "eggos")
    assert creds.source == "ssm:/stnlp/auth-test/ui-login"


def test_ssm_user_colon_password(ssm_settings):
    creds = load_credentials(ssm_settings, {ENV_SSM_PARAMETER: "/stnlp/auth-test/colon"})
    assert (creds.username, creds.password) == ("eleven", "w4ffles")


def test_ssm_missing_parameter_is_one_line_user_error(ssm_settings):
    with pytest.raises(UserError, match=r"/stnlp/auth-test/nope.*ParameterNotFound"):
        load_credentials(ssm_settings, {ENV_SSM_PARAMETER: "/stnlp/auth-test/nope"})


def test_ssm_malformed_value_names_the_parameter(ssm_settings):
    with pytest.raises(UserError, match="/stnlp/auth-test/bad"):
        load_credentials(ssm_settings, {ENV_SSM_PARAMETER: "/stnlp/auth-test/bad"})


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_needs_no_login(host):
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.5", "::"])
def test_other_hosts_refuse_to_start_without_login(host):
    with pytest.raises(UserError, match=ENV_USERNAME):
        check_bind(host, None)
    check_bind(host, Credentials("a", "b", "test"))


async def _call(middleware, headers=(), path="/", client=("10.1.2.3", 5000)):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "path": path, "headers": list(headers), "client": client}
    await middleware(scope, receive, send)
    return sent


async def _inner(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"inside"})


def _basic(user: str, password: str) -> tuple[bytes, bytes]:
    return b"authorization", b"Basic " + base64.b64encode(f"{user}:{password}".encode())


@pytest.mark.parametrize(
    "headers",
    [(), (_basic("hopper", "wrong"),), (_basic("other", "eggos"),), ((b"authorization", b"x"),)],
)
def test_middleware_answers_401_without_valid_login(headers):
    import asyncio

    middleware = BasicAuthMiddleware(_inner, Credentials("hopper", "eggos", "test"))
    sent = asyncio.run(_call(middleware, headers))
    assert sent[0]["status"] == 401
    assert dict(sent[0]["headers"])[b"www-authenticate"].startswith(b"Basic")


def test_middleware_passes_a_valid_login():
    import asyncio

    middleware = BasicAuthMiddleware(_inner, Credentials("hopper", "eggos", "test"))
    sent = asyncio.run(_call(middleware, [_basic("hopper", "eggos")]))
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"inside"


def test_startup_probe_is_exempt_only_from_loopback():
    import asyncio

    middleware = BasicAuthMiddleware(_inner, Credentials("hopper", "eggos", "test"))
    path = "/gradio_api/startup-events"
    assert asyncio.run(_call(middleware, path=path, client=("127.0.0.1", 1)))[0]["status"] == 200
    assert asyncio.run(_call(middleware, path=path))[0]["status"] == 401
