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
