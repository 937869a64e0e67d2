"""A watchdog that ends a training instance at the job's maximum runtime, even if Python hangs.

The bootstrap starts it as a separate process (``python -m stnlp.runtime.watchdog``) in its own
session, so a bootstrap stuck in C code or a deadlock cannot stop it. When the deadline passes
and the watched process is still alive, the watchdog kills the watched process group, records
the run as ``failed`` with its logs, releases the lock, and terminates the instance. On a real
instance the user data also schedules ``shutdown -h`` a little later, as a backstop should the
watchdog itself be stuck (the instance's shutdown behaviour is ``terminate``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from stnlp.runtime.logs import event

log = logging.getLogger(__name__)


def process_alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def kill_group(pid: int) -> None:
    """SIGKILL the process group ``pid`` leads, or just ``pid`` if it leads none."""
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)


def wait_until(deadline: float, pid: int, poll: float = 0.5) -> bool:
    """Sleep until ``deadline`` (epoch seconds); False early if ``pid`` ends first."""
    while time.time() < deadline:
        if not process_alive(pid):
            return False
        time.sleep(min(poll, max(0.0, deadline - time.time())))
    return process_alive(pid)


def run_bounded(action: Callable[[], None], seconds: float, what: str) -> None:
    """Run ``action`` in a thread for at most ``seconds``; log (never raise) failures."""

    def guarded() -> None:
        try:
            action()
        except Exception as exc:  # the watchdog must reach the terminate step
            event(log, f"watchdog {what} failed", logging.ERROR, error=str(exc))

    thread = threading.Thread(target=guarded, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        event(log, f"watchdog {what} timed out", logging.ERROR, seconds=seconds)


def expire(
    pid: int, record: Callable[[], None], terminate: Callable[[], None], grace: float = 60.0
) -> None:
    """What happens at the deadline: kill ``pid``'s group, ``record`` the failure, ``terminate``."""
    kill_group(pid)
    run_bounded(record, grace, "record")
    run_bounded(terminate, grace, "terminate")


def start(
    deadline: float, pid: int, stack: str, job: str, run_id: str, log_dir: Path, env=None
) -> subprocess.Popen:
    """Start the watchdog process for bootstrap ``pid``; it outlives a hung bootstrap."""
    command = [
        sys.executable, "-m", "stnlp.runtime.watchdog", "--deadline", f"{deadline:.3f}",
        "--pid", str(pid), "--stack", stack, "--job", job, "--run-id", run_id,
        "--log-dir", str(log_dir),
    ]  # fmt: skip
    return subprocess.Popen(command, start_new_session=True, env=env)


def finite_seconds(text: str) -> float:
    """An epoch-seconds deadline: finite and positive (``nan`` would expire the run at once)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"--deadline {text!r} must be finite positive seconds")
    return value


def main(argv: list[str] | None = None) -> int:
    """``python -m stnlp.runtime.watchdog``: wait for the deadline, then expire the run."""
    parser = argparse.ArgumentParser(prog="stnlp.runtime.watchdog")
    parser.add_argument("--deadline", type=finite_seconds, required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--stack", required=True)
    parser.add_argument("--job", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--log-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    if not wait_until(args.deadline, args.pid):
        return 0
    from stnlp.runtime.bootstrap import Instance

    instance = Instance.from_env(args.stack)
    message = "exceeded the job's maximum runtime; stopped by the watchdog"
    event(log, "watchdog deadline passed", logging.ERROR, run_id=args.run_id, pid=args.pid)
    expire(
        args.pid,
        record=lambda: instance.record_failure(args.job, args.run_id, message, args.log_dir),
        terminate=instance.terminate,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
