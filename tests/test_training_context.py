"""The job contract's metrics file: appended per entry, read back whole, restored on resume."""

from __future__ import annotations

from stnlp.runtime.training import METRICS_FILE, TrainingContext


def _context(tmp_path) -> TrainingContext:
    return TrainingContext.in_directory(tmp_path / "job", "run-1", "job", {}, tmp_path / "data")


def test_metrics_are_appended_and_read_back_in_order(tmp_path):
    ctx = _context(tmp_path)
    assert ctx.metrics_path.name == METRICS_FILE and ctx.read_metrics() == []
    for step in range(1, 4):
        ctx.log_metrics(step=step, loss=1.0 / step)
    assert [(m["step"], m["loss"]) for m in ctx.read_metrics()] == [(1, 1.0), (2, 0.5), (3, 1 / 3)]
    assert ctx.metrics_path.read_text().count("\n") == 3


def test_a_line_still_being_written_is_left_out(tmp_path):
    ctx = _context(tmp_path)
    ctx.log_metrics(step=1, loss=2.0)
    with ctx.metrics_path.open("a") as out:
        out.write('{"step": 2, "lo')
    assert [m["step"] for m in ctx.read_metrics()] == [1]


def test_restore_replaces_the_entries_and_logging_continues(tmp_path):
    ctx = _context(tmp_path)
    ctx.log_metrics(step=9, loss=9.0)
    ctx.restore_metrics([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}])
    ctx.log_metrics(step=3, loss=1.0)
    assert [m["step"] for m in ctx.read_metrics()] == [1, 2, 3]
