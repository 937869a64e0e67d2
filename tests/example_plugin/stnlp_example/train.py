"""Training entrypoint of the example plugin: running means of line length per speaker.

Each step folds one slice of the transcript lines into the running means and writes a
checkpoint, so a resumed run continues from the last step. ``fail_at_step`` raises at that
step and ``step_seconds`` sleeps per step: the runtime's fault tests use both.

With ``heldout_every = N > 0``, every Nth line is held out of the fit and the last step also
logs ``heldout_mae`` (mean absolute error of the predicted line length on those lines) and
``baseline_mae`` (the same for the overall mean, whoever speaks). ``shrinkage = k`` pulls each
speaker's mean towards the overall mean as if ``k`` overall-mean lines were added to every
speaker: what `stnlp tune` searches.
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


def _split(rows: list[tuple[str, str]], every: int) -> tuple[list, list]:
    """``(fit, held out)``: every ``every``-th line held out (none when ``every`` is 0)."""
    if every <= 0:
        return rows, []
    return ([r for i, r in enumerate(rows) if i % every != every - 1],
            [r for i, r in enumerate(rows) if i % every == every - 1])


def _means(state: dict, shrinkage: float) -> dict[str, float]:
    """Each speaker's mean line length, shrunk towards the overall mean."""
    overall = sum(state["totals"].values()) / sum(state["counts"].values())
    return {name: (state["totals"][name] + shrinkage * overall)
            / (state["counts"][name] + shrinkage) for name in state["totals"]}


def _errors(state: dict, held: list[tuple[str, str]], shrinkage: float) -> dict[str, float]:
    """Mean absolute errors on the held-out lines: the shrunk speaker means and the baseline."""
    overall = sum(state["totals"].values()) / sum(state["counts"].values())
    means = _means(state, shrinkage)
    return {"heldout_mae": sum(abs(means.get(n, overall) - len(line)) for n, line in held)
            / len(held),
            "baseline_mae": sum(abs(overall - len(line)) for _, line in held) / len(held)}


def train(ctx: stnlp.TrainingContext) -> stnlp.TrainingOutcome:
    """Fit mean line length per speaker over ``steps`` steps, checkpointing each step."""
    rows, held = _split(_read_lines(ctx), int(ctx.param("heldout_every", 0)))
    shrinkage = float(ctx.param("shrinkage", 0.0))
    steps = int(ctx.param("steps", 20))
    checkpoint = ctx.checkpoint_dir / "state.json"
    state = {"step": 0, "totals": {}, "counts": {}}
    if checkpoint.exists():
        state = json.loads(checkpoint.read_text())
    chunk = max(1, len(rows) // steps + 1)
    errors = {}
    for step in range(state["step"], steps):
        if step == int(ctx.param("fail_at_step", -1)):
            raise RuntimeError(f"injected failure at step {step}")
        for name, line in rows[step * chunk : (step + 1) * chunk]:
            state["totals"][name] = state["totals"].get(name, 0) + len(line)
            state["counts"][name] = state["counts"].get(name, 0) + 1
        state["step"] = step + 1
        checkpoint.write_text(json.dumps(state))
        if held and step + 1 == steps:
            errors = _errors(state, held, shrinkage)
        ctx.log_metrics(step=step + 1, lines_seen=sum(state["counts"].values()), **errors)
        time.sleep(float(ctx.param("step_seconds", 0.0)))
    means = _means(state, shrinkage)
    (ctx.output_dir / "model.json").write_text(json.dumps({"mean_length": means}, indent=1))
    return stnlp.TrainingOutcome(metrics={"speakers": len(means), "steps": state["step"],
                                          **errors})
