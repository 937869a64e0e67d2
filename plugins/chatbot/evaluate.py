"""The chatbot jobs' evaluator (`stnlp eval chatbot-llama`).

On the character's held-out episodes (:mod:`.heldout`), side by side: the untuned base and the
trained adapter, each with and without the character's retrieved lines in the prompt (loss,
perplexity, ROUGE-L, BLEU, judge score), the offline responder (built from the training
episodes only; it has no loss) and the actual next lines' judge score (the judge's ceiling).
"""

from __future__ import annotations

from pathlib import Path

from stnlp.plugins.chatbot import artifacts, heldout
from stnlp.plugins.chatbot.base import device_and_dtype, is_available, load_pretrained
from stnlp.plugins.chatbot.catalog import TINY
from stnlp.plugins.chatbot.data import load_split
from stnlp.plugins.chatbot.infer import RETRIEVED_LINES
from stnlp.plugins.chatbot.packing import ATTENTION

WITH = heldout.RETRIEVAL


def _variants(adapter: bool) -> list[tuple[str, bool, bool, bool]]:
    rows = [(heldout.BASE, False, False, True), (heldout.BASE + WITH, False, True, True)]
    if adapter:
        rows += [(heldout.ADAPTER, True, False, True), (heldout.ADAPTER + WITH, True, True, True)]
    return rows


def _model(model_dir: Path | None, base_model: str, params: dict):
    """``(model, tokenizer, max_context, adapter?)``: the adapter folder's PEFT model, else the
    base model alone, else ``None`` (not available here)."""
    _, dtype = device_and_dtype()
    if model_dir is not None:
        model, tokenizer, info = artifacts.load(model_dir, dtype, ATTENTION)
        return model, tokenizer, info.max_context, True
    if base_model == TINY or not is_available(base_model):
        return None
    base, tokenizer = load_pretrained(base_model, dtype, ATTENTION)
    return base, tokenizer, int(params["max_context"]), False


def evaluate(
    settings,
    job,
    data_dir: Path,
    limit: int = 50,
    model_dir: Path | None = None,
    preset: str | None = None,
) -> dict:
    """The report for ``job`` (a JobSpec): ``{"summary": ..., "<source>": {metric: value}}``.

    The adapter is ``model_dir`` if given, else the registry's latest ``job.output_model``;
    without one, the base (the preset's ``base_model``) and the offline responder only.
    """
    from stnlp.runtime.registry import fetch_latest

    p = job.resolved_hyperparameters(preset)
    if model_dir is None:
        local = fetch_latest(settings, job.output_model)
        model_dir = local.path if local else None
    info = artifacts.read_info(model_dir) if model_dir else None
    split = load_split(
        data_dir / "transcripts",
        data_dir / "characters",
        info.character if info else p["character"],
        int(p["context_lines"]),
        float(p["held_out_fraction"]),
        int(p["min_lines"]),
        int(p["description_words"]),
    )
    k = (info.retrieved_lines if info else 0) or int(p["retrieved_lines"]) or RETRIEVED_LINES
    held = heldout.prepare(split, data_dir / "transcripts", data_dir / "characters", k, limit)
    base_model = info.base_model if info else p["base_model"]
    summary = {
        "character": split.character,
        "split": held.description(),
        "adapter": str(model_dir) if model_dir else "none (no trained version)",
        "base": base_model,
        "retrieved_lines": k,
    }
    losses, replies = {}, {}
    loaded = _model(model_dir, base_model, p)
    if loaded is None:
        summary["base"] = f"{base_model} (not available here: no base rows)"
    else:
        device, _ = device_and_dtype()
        model, tokenizer, max_context, adapter = loaded
        losses, replies = heldout.model_replies(
            model.to(device), tokenizer, held, p, device, _variants(adapter), max_context
        )
    replies[heldout.OFFLINE] = held.offline_replies()
    return {"summary": summary, **heldout.score(held, losses, replies)}
