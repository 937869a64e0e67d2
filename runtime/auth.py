"""Interface login: credentials from the environment or SSM, and HTTP Basic auth in front of it.

Credentials come from ``STNLP_AUTH_USERNAME`` + ``STNLP_AUTH_PASSWORD``, or from the SSM
SecureString parameter named by ``STNLP_AUTH_SSM_PARAMETER`` whose value is
``{"username": ..., "password": ...}`` (JSON) or ``username:password``. They are required
whenever the interface binds anything but the loopback address. With credentials set, every
request (pages, API, files) answers 401 unless it carries them.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hmac
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from stnlp.common.errors import UserError
from stnlp.common.settings import Settings

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
ENV_USERNAME = "STNLP_AUTH_USERNAME"
ENV_PASSWORD = "STNLP_AUTH_PASSWORD"
ENV_SSM_PARAMETER = "STNLP_AUTH_SSM_PARAMETER"
REALM = "stnlp"
STARTUP_PATH = "/gradio_api/startup-events"
LOOPBACK_CLIENTS = frozenset({"127.0.0.1", "::1"})


@dataclass(frozen=True)
class Credentials:
    """One username and password; ``source`` says where they came from (never the secret)."""

    username: str
    password: str
    source: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, source={self.source!r})"

    def matches(self, username: str, password: str) -> bool:
        """Constant-time comparison of both fields."""
        user_ok = hmac.compare_digest(username.encode(), self.username.encode())
        password_ok = hmac.compare_digest(password.encode(), self.password.encode())
        return user_ok and password_ok


def _parse_secret(text: str, where: str) -> tuple[str, str]:
    text = text.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: value is not valid JSON: {exc.msg}") from exc
        username, password = data.get("username"), data.get("password")
    else:
        username, _, password = text.partition(":")
    if not username or not password:
        raise UserError(f"{where}: expected {{'username', 'password'}} JSON or 'username:password'")
    return str(username), str(password)


def _from_ssm(name: str, settings: Settings) -> Credentials:
    from botocore.exceptions import BotoCoreError, ClientError

    from stnlp.runtime.store import s3_client

    client = s3_client(settings, "ssm")
    try:
        value = client.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise UserError(f"{ENV_SSM_PARAMETER}={name}: cannot read the parameter ({code})") from exc
    except BotoCoreError as exc:
        raise UserError(f"{ENV_SSM_PARAMETER}={name}: cannot reach SSM: {exc}") from exc
    username, password = _parse_secret(value, f"SSM parameter {name}")
    return Credentials(username, password, f"ssm:{name}")


def load_credentials(
    settings: Settings, env: Mapping[str, str] | None = None
) -> Credentials | None:
    """Credentials from the environment, else from SSM, else ``None`` (no login configured)."""
    env = os.environ if env is None else env
    username, password = env.get(ENV_USERNAME, ""), env.get(ENV_PASSWORD, "")
    if username or password:
        if not (username and password):
            missing = ENV_PASSWORD if username else ENV_USERNAME
            raise UserError(f"{missing} is not set (both {ENV_USERNAME} and {ENV_PASSWORD} needed)")
        return Credentials(username, password, "environment")
    if env.get(ENV_SSM_PARAMETER):
        return _from_ssm(env[ENV_SSM_PARAMETER], settings)
    return None


def check_bind(host: str, credentials: Credentials | None) -> None:
    """Refuse to bind a non-loopback ``host`` without credentials."""
    if host not in LOCAL_HOSTS and credentials is None:
        raise UserError(
            f"--host {host} is reachable from other machines: set {ENV_USERNAME} and "
            f"{ENV_PASSWORD}, or {ENV_SSM_PARAMETER}, to require a login"
        )


def check_port(host: str, port: int) -> None:
    """Refuse, as one line naming ``--port``/``--host``, an address this process cannot bind."""
    if not 0 < port < 65536:
        raise UserError(f"--port {port}: expected a port number from 1 to 65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UserError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(f"port {port} on {host} is already in use: pass --port with a "
                                "free port, or stop what listens there") from None
            raise UserError(
                f"--host {host} --port {port}: cannot listen ({exc.strerror})"
            ) from None


def _basic_credentials(header: bytes) -> tuple[str, str] | None:
    scheme, _, encoded = header.decode("latin-1").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


class BasicAuthMiddleware:
    """ASGI middleware: every HTTP or websocket request must carry the credentials.

    Without them the answer is ``401`` with ``WWW-Authenticate: Basic``, so browsers ask for a
    login and API clients get a clear status.
    """

    def __init__(self, app, credentials: Credentials):
        self.app = app
        self.credentials = credentials

    async def __call__(self, scope, receive, send):
        """Pass authorised requests through; answer 401 to the rest."""
        passes = scope["type"] not in ("http", "websocket") or self._exempt(scope)
        if passes or self._authorised(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = b"401 Unauthorized: log in to the Stranger Things NLP interface\n"
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"www-authenticate", f'Basic realm="{REALM}", charset="UTF-8"'.encode()),
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _exempt(scope) -> bool:
        # Gradio's launch() calls this endpoint on itself, without credentials, to start the
        # queue; it answers only true/false. Exempt it for loopback callers only.
        client = (scope.get("client") or ("",))[0]
        return scope.get("path", "").endswith(STARTUP_PATH) and client in LOOPBACK_CLIENTS

    def _authorised(self, scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                pair = _basic_credentials(value)
                return pair is not None and self.credentials.matches(*pair)
        return False
