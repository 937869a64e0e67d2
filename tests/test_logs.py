"""Structured logs: one key=value line on the stderr of the moment, never a dead stream."""

from __future__ import annotations

import io
import logging
import sys

from stnlp.runtime import logs


def test_a_handler_configured_under_a_replaced_stderr_writes_to_the_current_one(capsys):
    replaced = io.StringIO()
    saved, sys.stderr = sys.stderr, replaced
    try:
        logs.configure("INFO")
    finally:
        sys.stderr = saved
    replaced.close()  # what a finished test capture or an embedding app leaves behind
    logs.event(logging.getLogger("stnlp.test"), "run ended", logging.WARNING, run_id="r 1")
    err = capsys.readouterr().err
    assert "Logging error" not in err
    assert err.endswith('level=warning logger=stnlp.test msg="run ended" run_id="r 1"\n')
