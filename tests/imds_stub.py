"""A local stand-in for the EC2 instance metadata service (IMDSv2), for tests.

Serves ``PUT /latest/api/token`` and, with a valid token, ``meta-data/instance-id`` and
``meta-data/spot/instance-action`` (404 until :meth:`ImdsStub.send_spot_notice`; answers put
in :attr:`ImdsStub.spot_answers` are served first, one per request). Requests without a token
get 401, as on an instance that requires IMDSv2.
"""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ImdsStub:
    """The metadata of one sandboxed instance, served on 127.0.0.1 at a free port."""

    def __init__(self, instance_id: str):
        self.instance_id = instance_id
        self.spot_action: dict[str, str] | None = None
        self.spot_answers: list[tuple[int, str]] = []  # (status, body), served in order
        self.tokens: set[str] = set()
        self.requests: list[tuple[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL to give :class:`stnlp.runtime.spot.Imds`."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def send_spot_notice(self, action: str = "terminate") -> None:
        """Publish a spot interruption notice (two minutes' warning on real instances)."""
        self.spot_action = {"action": action, "time": "2026-01-01T00:02:00Z"}

    def start(self) -> ImdsStub:
        """Start serving; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

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
