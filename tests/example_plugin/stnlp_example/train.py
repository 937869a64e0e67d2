"""Training entrypoint of the example plugin: running means of line length per speaker.

Each step folds one slice of the transcript lines into the running means and writes a
checkpoint, so a resumed run continues from the last step. ``fail_at_step`` raises at that
step and ``step_seconds`` sleeps per step: the runtime's fault tests use both.
"""

import csv
import json
import time

import stnlp


def _read_lines(ctx: stnlp.TrainingContext) -> list[tuple[str, str]]:
    rows = []
    for path in sorted(ctx.dataset("transcripts").glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as handle:
            rows += [(r["name"], r["line"]) for r in csv.DictReader(handle)]
    if not rows:
        raise ValueError("no transcript lines found")
    return rows


def train(ctx: stnlp.TrainingContext) -> stnlp.TrainingOutcome:
    """Fit mean line length per speaker over ``steps`` steps, checkpointing each step."""
    rows = _read_lines(ctx)
    steps = int(ctx.param("steps", 20))
    checkpoint = ctx.checkpoint_dir / "state.json"
    state = {"step": 0, "totals": {}, "counts": {}}
    if checkpoint.exists():
        state = json.loads(checkpoint.read_text())
    chunk = max(1, len(rows) // steps + 1)
    for step in range(state["step"], steps):
        if step == int(ctx.param("fail_at_step", -1)):
            raise RuntimeError(f"injected failure at step {step}")
        for name, line in rows[step * chunk : (step + 1) * chunk]:
            state["totals"][name] = state["totals"].get(name, 0) + len(line)
            state["counts"][name] = state["counts"].get(name, 0) + 1
        state["step"] = step + 1
        checkpoint.write_text(json.dumps(state))
        ctx.log_metrics(step=step + 1, lines_seen=sum(state["counts"].values()))
        time.sleep(float(ctx.param("step_seconds", 0.0)))
    means = {n: state["totals"][n] / state["counts"][n] for n in state["totals"]}
    (ctx.output_dir / "model.json").write_text(json.dumps({"mean_length": means}, indent=1))
    return stnlp.TrainingOutcome(metrics={"speakers": len(means), "steps": state["step"]})
