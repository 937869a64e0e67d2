"""The chatbot jobs' evaluator (`stnlp eval chatbot-llama`).

On the held-out episodes of the character: the trained adapter's loss, perplexity and BLEU of
its greedy replies against the character's real lines, beside BLEU for the offline responder
(built from the training episodes only; it has no loss).
"""

from __future__ import annotations

import math
from pathlib import Path

import sacrebleu
from rich.progress import track

from stnlp.plugins.chatbot import artifacts
from stnlp.plugins.chatbot.base import device_and_dtype
from stnlp.plugins.chatbot.data import encode_all, load_split
from stnlp.plugins.chatbot.infer import ModelChat
from stnlp.plugins.chatbot.offline import OfflineResponder
from stnlp.plugins.chatbot.train import held_out_loss


def bleu(hypotheses: list[str], references: list[str]) -> float:
    """Corpus BLEU (sacrebleu) of hypotheses against one reference each."""
    return round(sacrebleu.corpus_bleu(hypotheses, [references]).score, 2)


def evaluate(
    settings,
    job,
    data_dir: Path,
    limit: int = 50,
    model_dir: Path | None = None,
    preset: str | None = None,
) -> dict:
    """The report for ``job`` (a JobSpec): ``{"summary": ..., "<source>": {metric: value}}``.

    The adapter is ``model_dir`` if given, else the registry's latest ``job.output_model``.
    """
    from stnlp.runtime.registry import fetch_latest

    p = job.resolved_hyperparameters(preset)
    if model_dir is None:
        local = fetch_latest(settings, job.output_model)
        model_dir = local.path if local else None
    info = artifacts.read_info(model_dir) if model_dir else None
    character = info.character if info else p["character"]
    split = load_split(
        data_dir / "transcripts",
        data_dir / "characters",
        character,
        int(p["context_lines"]),
        float(p["held_out_fraction"]),
        int(p["min_lines"]),
    )
    held = split.held_out[:limit]
    references = [t.reply for t in held]
    responder = OfflineResponder(split.character, split.train)
    offline = [responder.reply(t.messages[-1]["content"]) for t in held]
    report = {
        "summary": {
            "character": split.character,
            "held_out_lines": len(held),
            "adapter": str(model_dir) if model_dir else "none (no trained version)",
        },
        "offline responder": {"loss": None, "perplexity": None, "bleu": bleu(offline, references)},
    }
    if model_dir is None:
        return report
    device, dtype = device_and_dtype()
    model, tokenizer, info = artifacts.load(model_dir, dtype)
    model.to(device)
    loss = held_out_loss(
        model,
        encode_all(tokenizer, held, int(p["max_sample_tokens"])),
        int(p["tokens_per_step"]),
        device,
    )
    chat = ModelChat(model, tokenizer, info.max_context)
    replies = [  # the stream yields the growing reply; its last value is the whole reply
        ([""] + list(chat.stream(t.messages, 32, temperature=0.0)))[-1]
        for t in track(held, description="generating", transient=True)
    ]
    report["adapter"] = {
        "loss": round(loss, 4),
        "perplexity": round(math.exp(min(loss, 50)), 2),
        "bleu": bleu(replies, references),
    }
    return report
