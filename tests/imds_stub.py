"""A local stand-in for the EC2 instance metadata service (IMDSv2), for tests.

Serves ``PUT /latest/api/token`` and, with a valid token, ``meta-data/instance-id`` and
``meta-data/spot/instance-action`` (404 until :meth:`ImdsStub.send_spot_notice`; answers put
in :attr:`ImdsStub.spot_answers` are served first, one per request). Requests without a token
get 401, as on an instance that requires IMDSv2.
"""

from __future__ import annotations

import json
import secrets
from http.server import BaseHTTPRequestHandler

from tests.helpers import LocalHttpServer


class ImdsStub(LocalHttpServer):
    """The metadata of one sandboxed instance, served on 127.0.0.1 at a free port (:attr:`url`
    is the base URL to give :class:`stnlp.runtime.spot.Imds`)."""

    def __init__(self, instance_id: str):
        self.instance_id = instance_id
        self.spot_action: dict[str, str] | None = None
        self.spot_answers: list[tuple[int, str]] = []  # (status, body), served in order
        self.tokens: set[str] = set()
        self.requests: list[tuple[str, str]] = []
        super().__init__(self._handler())

    def send_spot_notice(self, action: str = "terminate") -> None:
        """Publish a spot interruption notice (two minutes' warning on real instances)."""
        self.spot_action = {"action": action, "time": "2026-01-01T00:02:00Z"}

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _send(self, code: int, body: str = "") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self):
                stub.requests.append(("PUT", self.path))
                if self.path != "/latest/api/token" or not self.headers.get(
                    "X-aws-ec2-metadata-token-ttl-seconds"
                ):
                    return self._send(400)
                token = secrets.token_hex(8)
                stub.tokens.add(token)
                return self._send(200, token)

            def do_GET(self):
                stub.requests.append(("GET", self.path))
                if self.headers.get("X-aws-ec2-metadata-token") not in stub.tokens:
                    return self._send(401)
                if self.path == "/latest/meta-data/instance-id":
                    return self._send(200, stub.instance_id)
                if self.path == "/latest/meta-data/spot/instance-action":
                    if stub.spot_answers:
                        return self._send(*stub.spot_answers.pop(0))
                    if stub.spot_action is None:
                        return self._send(404)
                    return self._send(200, json.dumps(stub.spot_action))
                return self._send(404)

        return Handler
