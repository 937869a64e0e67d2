"""Make an S3 client answer errors for a while, through botocore's ``before-send`` event."""

from __future__ import annotations

import io

from botocore.awsrequest import AWSResponse


class _Raw(io.BytesIO):
    def stream(self, **_):
        yield self.getvalue()


class FailingS3:
    """Answer the next ``count`` S3 requests of ``operation`` (``*`` for all) with ``status``."""

    def __init__(self, client, count: int, status: int = 503, operation: str = "*"):
        self.client = client
        self.remaining = count
        self.status = status
        self.event = f"before-send.s3.{operation}" if operation != "*" else "before-send.s3"
        self.answered = 0

    def _handler(self, request, **_):
        if self.remaining <= 0:
            return None
        self.remaining -= 1
        self.answered += 1
        code = {503: "SlowDown", 500: "InternalError", 403: "AccessDenied"}.get(self.status, "X")
        body = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
        return AWSResponse(request.url, self.status, {}, _Raw(body))

    def __enter__(self) -> FailingS3:
        self.client.meta.events.register(self.event, self._handler, unique_id=f"fail-{id(self)}")
        return self

    def __exit__(self, *exc) -> None:
        self.client.meta.events.unregister(self.event, unique_id=f"fail-{id(self)}")


class LostResponse:
    """Let the first request of ``operation`` to each of ``count`` keys land, then drop its
    response (``key_contains`` narrows which keys, ``header`` which requests).

    The request really reaches the server (sent here, over its own connection); the client
    sees the connection close before any answer, as when a network path fails mid-request,
    so its retry (let through) meets the state its own first attempt left.
    """

    def __init__(self, client, operation: str, count: int = 1, key_contains: str = "",
                 header: str = ""):  # fmt: skip
        import urllib3

        self.client = client
        self.remaining = count
        self.key_contains = key_contains
        self.header = header  # only requests carrying this header (e.g. If-Match)
        self.event = f"before-send.s3.{operation}"
        self.landed: list[int] = []
        self._seen: set[str] = set()
        self._http = urllib3.PoolManager()

    def _handler(self, request, **_):
        from botocore.exceptions import ConnectionClosedError

        url = request.url.split("?")[0]
        if self.remaining <= 0 or self.key_contains not in url or url in self._seen:
            return None
        if self.header and self.header not in request.headers:
            return None
        self.remaining -= 1
        self._seen.add(url)
        body = request.body.read() if hasattr(request.body, "read") else request.body
        answer = self._http.request(request.method, request.url, body=body,
                                    headers=dict(request.headers), retries=False)  # fmt: skip
        self.landed.append(answer.status)
        raise ConnectionClosedError(endpoint_url=request.url)

    def __enter__(self) -> LostResponse:
        self.client.meta.events.register(self.event, self._handler, unique_id=f"lost-{id(self)}")
        return self

    def __exit__(self, *exc) -> None:
        self.client.meta.events.unregister(self.event, unique_id=f"lost-{id(self)}")
