"""Instance metadata (IMDSv2) and the spot interruption notice poller.

On an EC2 instance the metadata service lives at ``http://169.254.169.254``; tests point
:class:`Imds` at a local stub (``tests/imds_stub.py``). Every read first gets a session token
with a ``PUT /latest/api/token`` (IMDSv2: the launch templates require tokens).
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from stnlp.runtime.logs import event

log = logging.getLogger(__name__)

DEFAULT_IMDS_URL = "http://169.254.169.254"
TOKEN_TTL_SECONDS = 21600


class ImdsError(RuntimeError):
    """The instance metadata service could not be reached or answered with an error."""


@dataclass(frozen=True)
class SpotNotice:
    """A spot interruption notice: the action AWS will take and when."""

    action: str
    time: str


class Imds:
    """A small IMDSv2 client: token, instance id, region, spot notice."""

    def __init__(self, base_url: str = DEFAULT_IMDS_URL, timeout: float = 2.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _token(self) -> str:
        request = urllib.request.Request(
            f"{self.base_url}/latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_SECONDS)},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read().decode()
        except (urllib.error.URLError, OSError) as exc:
            raise ImdsError(f"instance metadata token from {self.base_url}: {exc}") from exc

    def get(self, path: str) -> str | None:
        """The text at ``/latest/<path>``, or ``None`` when the service answers 404."""
        request = urllib.request.Request(
            f"{self.base_url}/latest/{path.lstrip('/')}",
            headers={"X-aws-ec2-metadata-token": self._token()},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read().decode()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise ImdsError(f"instance metadata {path}: HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise ImdsError(f"instance metadata {path}: {exc}") from exc

    def instance_id(self) -> str:
        """This instance's id."""
        value = self.get("meta-data/instance-id")
        if not value:
            raise ImdsError("instance metadata has no instance-id")
        return value

    def spot_notice(self) -> SpotNotice | None:
        """The pending spot interruption notice, or ``None`` when there is none."""
        text = self.get("meta-data/spot/instance-action")
        if text is None:
            return None
        try:
            data = json.loads(text)
            return SpotNotice(action=str(data["action"]), time=str(data["time"]))
        except (ValueError, TypeError, KeyError) as exc:
            raise ImdsError(f"instance metadata spot/instance-action is malformed: "
                            f"{text[:80]!r}") from exc


class SpotPoller:
    """Polls the spot notice every ``interval`` seconds in a daemon thread.

    On the first notice it calls ``on_notice(notice)`` once and stops polling. Any failed poll
    (the service unreachable, an error status, a malformed answer, anything else) is logged in
    one line and polling goes on: the thread only ends on a notice or :meth:`stop`.
    """

    def __init__(
        self, imds: Imds, on_notice: Callable[[SpotNotice], None], interval: float = 5.0
    ):
        self.imds = imds
        self.on_notice = on_notice
        self.interval = interval
        self.notice: SpotNotice | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="spot-poller", daemon=True)

    def start(self) -> SpotPoller:
        """Start polling; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.interval + 5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                notice = self.imds.spot_notice()
            except Exception as exc:  # noqa: BLE001 - the poller must outlive any answer
                event(log, "spot notice poll failed", logging.WARNING,
                      error=f"{type(exc).__name__}: {exc}")
                continue
            if notice is not None:
                self.notice = notice
                event(log, "spot interruption notice", action=notice.action, time=notice.time)
                self.on_notice(notice)
                return
