"""The `aws` command of a sandboxed instance, served from the test process.

The user data calls the AWS CLI a dozen times; a fresh Python importing boto3 for each call costs
about a second on a busy machine. So `tests/shims/aws` is a small standard-library client that
sends its arguments over a Unix socket to :class:`AwsCli`, which holds one boto3 client per
service (on moto) and makes the real call: ``aws SERVICE OPERATION --kebab-param VALUE ...``
(the low-level calls the user data makes). Values that look like JSON are parsed, ``file://``
values are read, ``--body PATH`` sends the file, and ``s3api get-object ... OUTFILE`` writes
the body to OUTFILE. The answer is printed as JSON; an error prints botocore's message and exits
255, as the real CLI does. Each call is recorded as the instance's principal makes it, for
tests/aws_rules.py to judge.
"""

from __future__ import annotations

import contextlib
import json
import socketserver
import threading
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

SPECIAL = {"log-events": "logEvents", "log-group-name": "logGroupName",
           "log-stream-name": "logStreamName"}  # fmt: skip


def parse(rest: list[str]) -> tuple[dict[str, Any], str | None]:
    """The CLI's ``--kebab-name value`` arguments as API parameters, and the OUTFILE if any."""
    params: dict[str, Any] = {}
    outfile, i = None, 0
    while i < len(rest):
        if rest[i] == "--output":
            i += 2
            continue
        if not rest[i].startswith("--"):
            outfile, i = rest[i], i + 1
            continue
        key, value = rest[i][2:], rest[i + 1]
        i += 2
        if value.startswith("file://"):
            value = Path(value[7:]).read_text(encoding="utf-8")
        name = SPECIAL.get(key) or "".join(part.capitalize() for part in key.split("-"))
        if key == "dimensions":
            value = [dict(zip(("Name", "Value"), d.split("=", 1), strict=True))
                     for d in value.split(",")]  # fmt: skip
        elif key == "value":
            value = float(value)
        elif key == "body":
            value = Path(value).read_bytes()
        elif value[:1] in "[{":
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        params[name] = value
    return params, outfile


class AwsCli:
    """The server behind the shims of one sandboxed instance; a context manager."""

    def __init__(self, endpoint: str, region: str, socket_path: Path, record: Path,
                 principal: str):  # fmt: skip
        self.endpoint, self.region = endpoint, region
        self.socket_path, self.record, self.principal = socket_path, record, principal
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        cli = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                request = json.loads(self.rfile.readline())
                answer = cli.serve(request["argv"])
                self.wfile.write(json.dumps(answer).encode() + b"\n")

        self._server = socketserver.ThreadingUnixStreamServer(str(socket_path), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> AwsCli:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.socket_path.unlink(missing_ok=True)

    def client(self, service: str) -> Any:
        """The boto3 client of ``service`` on moto (made once)."""
        with self._lock:
            if service not in self._clients:
                self._clients[service] = boto3.client(service, endpoint_url=self.endpoint,
                                                      region_name=self.region)
            return self._clients[service]

    def serve(self, argv: list[str]) -> dict[str, Any]:
        """Run one `aws` command; ``{"status", "stdout", "stderr"}``."""
        service, operation = argv[1].replace("s3api", "s3"), argv[2]
        params, outfile = parse(argv[3:])
        if service == "cloudwatch" and "MetricName" in params:
            params = {"Namespace": params["Namespace"], "MetricData": [{
                "MetricName": params["MetricName"], "Dimensions": params.get("Dimensions", []),
                "Value": params.get("Value", 0.0)}]}  # fmt: skip
        client = self.client(service)
        api = client.meta.method_to_api_mapping.get(operation.replace("-", "_"))
        try:
            answer = getattr(client, operation.replace("-", "_"))(**params)
        except ClientError as exc:
            self._write(service, api, params, exc.response["ResponseMetadata"]["HTTPStatusCode"])
            error = exc.response["Error"]
            return {"status": 255, "stdout": "", "stderr": (
                f"An error occurred ({error.get('Code')}) when calling the {api} operation: "
                f"{error.get('Message')}\n")}  # fmt: skip
        self._write(service, api, params, answer["ResponseMetadata"]["HTTPStatusCode"])
        if outfile is not None and "Body" in answer:
            Path(outfile).write_bytes(answer.pop("Body").read())
        answer.pop("ResponseMetadata", None)
        return {"status": 0, "stdout": json.dumps(answer, default=str) + "\n", "stderr": ""}

    def _write(self, service: str, operation: str, params: dict[str, Any], status: int) -> None:
        line = {"principal": self.principal, "service": service, "operation": operation,
                "params": {k: v for k, v in params.items() if k != "Body"}, "status": status}
        with self._lock, self.record.open("a", encoding="utf-8") as out:
            out.write(json.dumps(line, default=str) + "\n")
