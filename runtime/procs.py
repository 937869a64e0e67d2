"""Processes a run record names: who supervises a run and who trains, and whether they live.

A :class:`ProcessRef` is ``host``, ``pid`` and the process's start time (from
``/proc/<pid>/stat``), so a pid the kernel reused for another process is not mistaken for the
one recorded. Only processes on this host can be checked or signalled; for another host's,
:meth:`ProcessRef.alive` answers ``None`` (unknown) and the run's heartbeat decides.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or ``None`` (no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


@dataclass(frozen=True)
class ProcessRef:
    """One process: where it runs, its pid and when it started."""

    host: str
    pid: int
    started: str | None

    @classmethod
    def current(cls) -> ProcessRef:
        """This process."""
        return cls.of(os.getpid())

    @classmethod
    def of(cls, pid: int) -> ProcessRef:
        """Process ``pid`` on this host."""
        return cls(socket.gethostname(), pid, _start_time(pid))

    @classmethod
    def from_record(cls, value: Any) -> ProcessRef | None:
        """The reference stored in a run record, or ``None`` when absent or malformed."""
        if not isinstance(value, dict):
            return None
        host, pid, started = value.get("host"), value.get("pid"), value.get("started")
        if not isinstance(host, str) or not isinstance(pid, int) or isinstance(pid, bool):
            return None
        return cls(host, pid, started if isinstance(started, str) else None)

    def to_record(self) -> dict[str, Any]:
        """The form stored in a run record."""
        return asdict(self)

    @property
    def local(self) -> bool:
        """True when the process runs (or ran) on this host."""
        return self.host == socket.gethostname()

    def alive(self) -> bool | None:
        """Whether the process still runs: ``None`` when it is on another host."""
        if not self.local:
            return None
        if self.pid <= 0:
            return False
        started = _start_time(self.pid)
        if started is None:
            return False
        if self.started is not None and started != self.started:
            return False  # the pid now belongs to another process
        return _state(self.pid) not in ("Z", "X")

    def stop_group(self, grace: float) -> bool:
        """SIGTERM the process's group, SIGKILL it after ``grace`` s; True once it is gone.

        Only for a live process on this host; the worker leads its own process group.
        """
        alive = self.alive()
        if alive is None:
            return False  # another host's process: out of reach
        if not alive:
            return True
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:  # not a group leader: signal the process alone
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not self.alive():
                    return True
                time.sleep(0.05)
        return not self.alive()


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "X"
    return stat.rsplit(")", 1)[1].split()[0]


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` making a child get SIGKILL when its parent dies (Linux), else ``None``.

    libc is loaded here, in the parent, so the child only makes the system call.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def set_death_signal() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the call: die now
            os.kill(os.getpid(), signal.SIGKILL)

    return set_death_signal
