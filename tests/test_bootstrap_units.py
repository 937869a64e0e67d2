"""The bootstrap's parts on their own: metadata client, spot poller, preflight, watchdog."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from stnlp.common.errors import UserError
from stnlp.runtime import watchdog
from stnlp.runtime.bootstrap import Options
from stnlp.runtime.distributed import dist_info
from stnlp.runtime.preflight import (
    PreflightError,
    check_data,
    check_disk,
    check_gpus,
    run_preflight,
)
from stnlp.runtime.spot import Imds, ImdsError, SpotPoller
from tests.imds_stub import ImdsStub


@pytest.fixture
def imds():
    """The metadata stub of instance i-0abc."""
    stub = ImdsStub("i-0abc").start()
    yield stub
    stub.stop()


def test_imds_uses_a_token_for_every_read(imds):
    client = Imds(imds.url)
    assert client.instance_id() == "i-0abc"
    assert client.spot_notice() is None
    imds.send_spot_notice("stop")
    notice = client.spot_notice()
    assert (notice.action, notice.time) == ("stop", "2026-01-01T00:02:00Z")
    puts = [r for r in imds.requests if r == ("PUT", "/latest/api/token")]
    assert len(puts) == 3


def test_imds_unreachable_is_an_imds_error():
    with pytest.raises(ImdsError, match="token"):
        Imds("http://127.0.0.1:9", timeout=0.5).instance_id()


def test_spot_poller_reports_the_first_notice_once(imds):
    seen, fired = [], threading.Event()

    def on_notice(notice):
        seen.append(notice)
        fired.set()

    poller = SpotPoller(Imds(imds.url), on_notice, interval=0.05).start()
    time.sleep(0.2)
    assert seen == []
    imds.send_spot_notice()
    assert fired.wait(10)
    poller.stop()
    assert [n.action for n in seen] == ["terminate"] and poller.notice == seen[0]


def test_spot_poller_outlives_any_malformed_metadata_answer(imds):
    """Item 11 (#13): whatever the metadata service answers, the poller goes on polling and
    still sees the real notice that follows (before, a non-JSON answer killed its thread)."""
    imds.spot_answers = [(200, "<html>not json"), (200, "[]"), (200, "null"),
                         (200, '{"time": "2026-01-01T00:02:00Z"}'), (500, "oops"), (200, "")]
    seen, fired = [], threading.Event()
    poller = SpotPoller(Imds(imds.url), lambda n: (seen.append(n), fired.set()),
                        interval=0.02).start()
    while imds.spot_answers:
        assert poller._thread.is_alive(), "the poller died on a malformed answer"
        time.sleep(0.02)
    imds.send_spot_notice()
    assert fired.wait(10), "the notice after the bad answers is seen"
    poller.stop()
    assert [n.action for n in seen] == ["terminate"]


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e999", "-3", "junk", "", " "])
def test_environment_numbers_are_finite_and_in_range_or_one_line(text):
    with pytest.raises(UserError) as caught:
        Options.from_env("ec2", {"STNLP_MAX_RUNTIME_SECONDS": text})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"environment STNLP_MAX_RUNTIME_SECONDS={text!r} must be")
    with pytest.raises(UserError, match=f"environment WORLD_SIZE={text!r}"):
        dist_info({"WORLD_SIZE": text})
    assert dist_info({"RANK": "1", "WORLD_SIZE": "2"}).rank == 1
    with pytest.raises(UserError, match="RANK=2 must be below WORLD_SIZE=2"):
        dist_info({"RANK": "2", "WORLD_SIZE": "2"})


@pytest.mark.parametrize("deadline", ["nan", "inf", "-1", "soon"])
def test_a_watchdog_given_a_bad_deadline_refuses_and_kills_nothing(deadline, tmp_path):
    """A ``nan`` deadline used to compare as 'passed', so the watchdog stopped the run at once."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                            start_new_session=True)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "stnlp.runtime.watchdog", "--deadline", deadline, "--pid",
             str(proc.pid), "--stack", "dev", "--job", "j", "--run-id", "r", "--log-dir",
             str(tmp_path)], capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 2
        assert f"--deadline {deadline!r} must be finite positive seconds" in done.stderr
        assert proc.poll() is None, "the watched process is left alone"
    finally:
        proc.kill()
        proc.wait()


def test_preflight_checks_name_each_failure(tmp_path):
    passed = run_preflight([check_gpus(2, count=lambda: 2), check_disk(tmp_path, 0.0),
                            check_data(["transcripts"], lambda name: True)])
    assert [c.name for c in passed] == ["gpu", "disk", "data"]
    assert check_gpus(0, count=lambda: pytest.fail("not probed")).ok
    with pytest.raises(PreflightError) as caught:
        run_preflight([
            check_gpus(4, count=lambda: 1),
            check_disk(tmp_path, 50.0, measure=lambda path: 12.5),
            check_data(["transcripts", "locations"], lambda name: name == "transcripts"),
        ])  # fmt: skip
    assert str(caught.value) == (
        "preflight failed: gpu: torch sees 1 GPU(s), the job needs 4; "
        f"disk: 12.5 GiB free at {tmp_path}, need 50.0 GiB; "
        "data: no objects under raw/ for dataset(s) locations"
    )


def test_options_from_env_rejects_bad_numbers(tmp_path):
    options = Options.from_env("ec2", {"STNLP_WORKDIR": str(tmp_path),
                                       "STNLP_SPOT_POLL_SECONDS": "0.5"})
    assert options.workdir == tmp_path and options.spot_poll_seconds == 0.5
    assert options.required_gpus is None
    with pytest.raises(UserError, match="STNLP_PREFLIGHT_GPUS='two'"):
        Options.from_env("ec2", {"STNLP_PREFLIGHT_GPUS": "two"})


def _hung_group() -> subprocess.Popen:
    """A process group standing for a hung bootstrap and its worker."""
    return subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
         "'import time; time.sleep(600)']); time.sleep(600)"],
        start_new_session=True,
    )  # fmt: skip


def test_watchdog_kills_the_group_records_then_terminates(tmp_path):
    proc = _hung_group()
    calls = []
    deadline = time.time() + 30
    while len(_group_members(proc.pid)) < 2:
        assert time.time() < deadline, "the hung group never started its worker"
        time.sleep(0.05)
    assert watchdog.wait_until(time.time() + 0.3, proc.pid) is True
    watchdog.expire(proc.pid, record=lambda: calls.append("record"),
                    terminate=lambda: calls.append("terminate"))
    assert proc.wait(10) == -9
    assert calls == ["record", "terminate"]
    deadline = time.time() + 10  # SIGKILL is delivered asynchronously to the rest of the group
    while _group_members(proc.pid) and time.time() < deadline:
        time.sleep(0.05)
    assert _group_members(proc.pid) == [], "the worker in the group is gone too"


def _group_members(pgid: int) -> list[Path]:
    """The live processes of process group ``pgid``."""
    return [p for p in Path("/proc").glob("[0-9]*/stat") if _pgid(p) == pgid]


def _pgid(stat: Path) -> int | None:
    """The process group of a live (not zombie) process, from its /proc stat."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[2])


def test_watchdog_stands_down_when_the_process_ends_first():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert watchdog.wait_until(time.time() + 30, proc.pid) is False


def test_a_hanging_record_step_does_not_stop_termination():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                            start_new_session=True)
    calls = []
    watchdog.expire(proc.pid, record=lambda: time.sleep(30),
                    terminate=lambda: calls.append("terminate"), grace=0.2)
    assert proc.wait(10) == -9 and calls == ["terminate"]
