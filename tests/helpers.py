"""Small helpers several test files share: a free port and the `stnlp` command in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STNLP = [sys.executable, "-c", "from stnlp.runtime.cli import main; main()"]
"""The `stnlp` command as this interpreter runs it (no console script needed on PATH)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_stnlp(*args: str, env: dict[str, str] | None = None, cwd=None, replace_env: bool = False,
              **kwargs) -> subprocess.CompletedProcess:  # fmt: skip
    """Run `stnlp ARGS` in a subprocess with ``env`` on top of this environment (or instead of
    it, with ``replace_env``); return the completed process, output captured as text."""
    environment = dict(env or {}) if replace_env else {**os.environ, **(env or {})}
    return subprocess.run([*STNLP, *args], capture_output=True, text=True, cwd=cwd,
                          env=environment, **kwargs)  # fmt: skip


class LocalHttpServer:
    """An HTTP server on 127.0.0.1 at a free port, serving in a daemon thread; a context manager
    (or :meth:`start` / :meth:`stop`). Subclasses give the handler class."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        """Start serving; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """Run `stnlp ARGS` in this process: exit code, stdout, stderr."""
    from stnlp.runtime.cli import main

    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def run_cli(capsys, monkeypatch, settings, *args: str) -> tuple[int, str, str]:
    """Run `stnlp ARGS` in this process against ``settings``' stores: exit code, stdout, stderr.

    The settings reach the CLI as the environment variables a user would set.
    """
    monkeypatch.delenv("STNLP_SETTINGS", raising=False)
    env = {"STNLP_STORE": settings.store, "STNLP_STACK": settings.stack,
           "STNLP_REGION": settings.region}  # fmt: skip
    if settings.endpoint_url:
        env["STNLP_ENDPOINT_URL"] = settings.endpoint_url
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return run_main(capsys, *args)
