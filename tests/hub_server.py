"""A local Hugging Face hub over HTTP, for tests: real files, served the way the hub serves them.

``huggingface_hub`` talks to it as to huggingface.co (point ``HF_ENDPOINT`` at :attr:`url`):

- ``GET /api/models/<repo>/revision/<rev>``: the repository's info (``sha``, ``siblings``);
- ``GET /api/models/<repo>/tree/<rev>``: the file listing (``path``, ``size``, ``oid``);
- ``HEAD|GET /<repo>/resolve/<rev>/<file>``: a file, with ``X-Repo-Commit`` and ``ETag``.

A gated repository answers 401 with ``X-Error-Code: GatedRepo`` to a request without the
bearer token it was given; an unknown one 404 with ``RepoNotFound``. Every request is listed in
:attr:`HubServer.requests` (method, path, whether it carried the token).
"""

from __future__ import annotations

import hashlib
import json
from http.server import BaseHTTPRequestHandler
from urllib.parse import unquote, urlparse

from tests.helpers import LocalHttpServer


class HubServer(LocalHttpServer):
    """Repositories of files (``{repo_id: {path: bytes}}``), one commit each, on 127.0.0.1
    (:attr:`url` is the endpoint, what ``HF_ENDPOINT`` is set to)."""

    def __init__(self, repos: dict[str, dict[str, bytes]], gated: dict[str, str] | None = None):
        self.repos = repos
        self.gated = gated or {}  # repo id -> the token that opens it
        self.commits = {repo: hashlib.sha1(json.dumps(sorted(
            (p, hashlib.sha256(d).hexdigest()) for p, d in files.items())).encode()).hexdigest()
            for repo, files in repos.items()}  # fmt: skip
        self.requests: list[tuple[str, str, bool]] = []
        super().__init__(self._handler())

    def _answer(self, method: str, path: str, token: str | None):
        """``(status, headers, body)`` for one request."""
        parts = unquote(path).strip("/").split("/")
        api = parts[:2] == ["api", "models"]
        repo = "/".join(parts[2:4] if api else parts[:2])
        if repo not in self.repos:
            return 404, {"X-Error-Code": "RepoNotFound"}, b'{"error": "Repository not found"}'
        if repo in self.gated and token != self.gated[repo]:
            return 401, {"X-Error-Code": "GatedRepo"}, b'{"error": "Access to model is gated"}'
        files, commit = self.repos[repo], self.commits[repo]
        if api and parts[4:5] == ["revision"]:
            info = {"id": repo, "sha": commit, "private": False,
                    "siblings": [{"rfilename": p} for p in sorted(files)]}
            return 200, {"Content-Type": "application/json"}, json.dumps(info).encode()
        if api and parts[4:5] == ["tree"]:
            tree = [{"type": "file", "path": p, "size": len(d),
                     "oid": hashlib.sha1(b"blob %d\0" % len(d) + d).hexdigest()}
                    for p, d in sorted(files.items())]  # fmt: skip
            return 200, {"Content-Type": "application/json"}, json.dumps(tree).encode()
        if not api and parts[2:3] == ["resolve"]:
            name = "/".join(parts[4:])
            if name not in files:
                return 404, {"X-Error-Code": "EntryNotFound"}, b'{"error": "Entry not found"}'
            data = files[name]
            etag = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            return 200, {"X-Repo-Commit": commit, "ETag": f'"{etag}"',
                         "Content-Type": "application/octet-stream"}, data  # fmt: skip
        return 404, {}, b"{}"

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _serve(self, method: str) -> None:
                auth = self.headers.get("Authorization", "")
                token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
                path = urlparse(self.path).path
                hub.requests.append((method, path, token is not None))
                status, headers, body = hub._answer(method, path, token)
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(key, value)
                self.end_headers()
                if method == "GET":
                    self.wfile.write(body)

            def do_GET(self):
                self._serve("GET")

            def do_HEAD(self):
                self._serve("HEAD")

        return Handler
