"""The chatbot jobs' entrypoint: LoRA fine-tuning of a character chatbot on packed samples.

One screen of loop: pack the character's samples into token-budget micro-batches, size the
micro-batch for the GPU, then for each step accumulate micro-batches up to ``tokens_per_step``,
take an AdamW step, log metrics, checkpoint (adapter + optimizer + step) and resume from the
latest checkpoint when one is there. Then the held-out comparison (:mod:`.heldout`): the
adapter against the untuned base (and the offline responder) on the character's held-out
episodes, recorded as ``metrics["heldout"]`` on the speaker judge's score, so the interface
uses the adapter only where it beats the base. The adapter, tokenizer and chat template go to
``ctx.output_dir``. A run that trains on nothing, or whose loss is not a number, fails with
one line naming the cause and publishes nothing.
"""

from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from rich.progress import Progress

from stnlp.common.errors import UserError
from stnlp.plugins.chatbot import artifacts, heldout
from stnlp.plugins.chatbot.base import TINY, device_and_dtype, load_base
from stnlp.plugins.chatbot.data import encode_all, load_split
from stnlp.plugins.chatbot.fit import fit_tokens, prepare_allocator
from stnlp.plugins.chatbot.loss import loss_sum
from stnlp.plugins.chatbot.offline import OfflineResponder
from stnlp.plugins.chatbot.packing import (
    ATTENTION,
    IGNORE,
    causal_lm,
    collate,
    pack,
    shares_prefix,
)
from stnlp.runtime.baseline import HELDOUT, heldout_record
from stnlp.runtime.encoder import quiet_transformers
from stnlp.runtime.logs import event
from stnlp.runtime.training import TrainingContext, TrainingOutcome

log = logging.getLogger(__name__)


def adapted_modules(model, params: dict) -> dict:
    """``LoraConfig``'s module arguments: the ``target_modules`` (``all-linear``, or names
    separated by commas) of the top ``lora_layers`` decoder layers only (0: every layer). No
    gradient is needed below the lowest adapted layer, so the backward pass stops there."""
    targets, top = params["target_modules"], int(params.get("lora_layers") or 0)
    if isinstance(targets, str) and targets != "all-linear":
        targets = [name.strip() for name in targets.split(",") if name.strip()]
    if top <= 0:
        return {"target_modules": targets}
    layers = causal_lm(model).model.layers
    if targets == "all-linear":
        linear = (n for n, m in layers[0].named_modules() if isinstance(m, torch.nn.Linear))
        targets = sorted({name.rsplit(".", 1)[-1] for name in linear})
    adapted = list(range(max(0, len(layers) - top), len(layers)))
    return {"target_modules": targets, "layers_to_transform": adapted}


def lora(model, params: dict):
    """Wrap ``model`` with a LoRA adapter (all linear layers unless ``target_modules`` says;
    in the top ``lora_layers`` decoder layers where it says)."""
    config = LoraConfig(
        r=int(params["lora_r"]),
        lora_alpha=int(params["lora_alpha"]),
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
        **adapted_modules(model, params),
    )
    with quiet_transformers():
        return get_peft_model(model, config)


def compile_layers(model, mode: str | None = None) -> None:
    """Compile each decoder layer (one graph, reused by every layer): fused norms, SwiGLU, LoRA."""
    for layer in causal_lm(model).model.layers:
        layer.compile(mode=mode)


def optimizer_step(model, optimizer, micro_batches: list[dict]) -> tuple[float, int]:
    """Accumulate gradients over ``micro_batches`` (mean over all their targets), then step."""
    targets = sum(int((b["targets"] != IGNORE).sum()) for b in micro_batches)
    total = 0.0
    for batch in micro_batches:
        loss, _ = loss_sum(model, batch)
        (loss / max(targets, 1)).backward()
        total += loss.item()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total / max(targets, 1), sum(b["input_ids"].numel() for b in micro_batches)


def _latest_checkpoint(folder: Path) -> Path | None:
    found = sorted(folder.glob("step-*.pt"))
    return found[-1] if found else None


def save_checkpoint(folder: Path, model, optimizer, step: int) -> None:
    """Write ``step-NNNNNNNN.pt`` atomically, then drop older checkpoints."""
    state = {
        "adapter": get_peft_model_state_dict(model),
        "optimizer": optimizer.state_dict(),
        "step": step,
    }
    target = folder / f"step-{step:08d}.pt"
    torch.save(state, target.with_suffix(".tmp"))
    target.with_suffix(".tmp").replace(target)
    for old in folder.glob("step-*.pt"):
        if old != target:
            old.unlink()


def restore_checkpoint(folder: Path, model, optimizer) -> int:
    """Load the latest checkpoint into ``model`` and ``optimizer``; the step to resume at."""
    latest = _latest_checkpoint(folder)
    if latest is None:
        return 0
    state = torch.load(latest, map_location="cpu", weights_only=True)
    set_peft_model_state_dict(model, state["adapter"])
    optimizer.load_state_dict(state["optimizer"])
    event(log, "resumed from checkpoint", path=str(latest), step=state["step"])
    return int(state["step"])


def _check_loss(value: float, step: int, p: dict) -> None:
    if not math.isfinite(value):
        raise UserError(
            f"training loss is {value} at step {step} (learning_rate={p['learning_rate']}): "
            "nothing is published; lower learning_rate"
        )


def _training_turns(split, responder: OfflineResponder, p: dict) -> list:
    """The training turns, with the character's own retrieved lines when ``retrieved_lines``
    asks; a turn never retrieves the very line it is trained to say."""
    k = int(p["retrieved_lines"])
    if k <= 0:
        return split.train
    return responder.with_examples(split.train, k, True)


def quality(
    ctx: TrainingContext, model, tokenizer, split, responder: OfflineResponder, device
) -> dict:
    """The adapter against the untuned base and the offline responder on the held-out
    episodes (:mod:`.heldout`), with the training prompts' retrieval setting.

    Returns the figures per source and the ``heldout`` record on the judge score. Both models
    get a held-out loss: its pass also computes the prompts' keys and values, which the
    replies then start from (:mod:`.prompt_cache`), so the loss costs little more than the
    replies' own prompt pass would.
    """
    p = ctx.hyperparameters
    held = heldout.prepare(
        split,
        ctx.dataset("transcripts"),
        ctx.dataset("characters"),
        int(p["retrieved_lines"]),
        int(p["judge_lines"]),
        responder,
    )
    retrieval = int(p["retrieved_lines"]) > 0  # as the adapter was trained, for both
    variants = [(heldout.ADAPTER, True, retrieval, True), (heldout.BASE, False, retrieval, True)]
    losses, replies = heldout.model_replies(
        model, tokenizer, held, p, device, variants, int(p["max_context"])
    )
    replies[heldout.OFFLINE] = held.offline_replies()
    rows = heldout.score(held, losses, replies)
    record = heldout_record(
        "judge_score",
        rows[heldout.ADAPTER]["judge_score"],
        heldout.BASE,
        rows[heldout.BASE]["judge_score"],
        split=held.description(),
        examples=len(held.turns),
    )
    return {"quality": rows, HELDOUT: record}


def train(ctx: TrainingContext) -> TrainingOutcome:
    """Fine-tune the character chatbot described by ``ctx.hyperparameters``."""
    p = ctx.hyperparameters
    device, dtype = device_and_dtype()
    prepare_allocator()
    torch.manual_seed(int(p["seed"]))
    split = load_split(
        ctx.dataset("transcripts"),
        ctx.dataset("characters"),
        p["character"],
        int(p["context_lines"]),
        float(p["held_out_fraction"]),
        int(p["min_lines"]),
        int(p["description_words"]),
    )
    responder = OfflineResponder(split.character, split.train)  # retrieval, then a baseline
    train_turns = _training_turns(split, responder, p)
    texts = [m["content"] for t in train_turns for m in t.messages] + [t.reply for t in train_turns]
    base, tokenizer = load_base(p["base_model"], p["family"], texts, dtype, ATTENTION, p["seed"])
    if p["base_model"] == TINY:
        artifacts.save_tiny_base(ctx.output_dir, base)
    model = lora(base.to(device), p)
    model.train()
    if device.type == "cuda" and p["compile"]:
        compile_layers(model)
    # a compiled model sees one longest-sample value, so it does not recompile per batch
    fixed = int(p["max_sample_tokens"]) if device.type == "cuda" and p["compile"] else None
    train_samples = encode_all(tokenizer, train_turns, int(p["max_sample_tokens"]))
    held_samples = encode_all(tokenizer, split.held_out, int(p["max_sample_tokens"]))
    if not train_samples or not held_samples:
        empty = "training" if not train_samples else "held-out"
        raise UserError(
            f"no {empty} samples of {split.character!r} fit max_sample_tokens="
            f"{p['max_sample_tokens']} (a reply and one scene line must fit); raise it"
        )
    optimizer = torch.optim.AdamW(
        [q for q in model.parameters() if q.requires_grad],
        lr=float(p["learning_rate"]),
        weight_decay=0.0,
    )

    def probe(batch):
        loss_sum(model, batch)[0].backward()

    fit = fit_tokens(model, probe, int(p["tokens_per_step"]), device)
    share = shares_prefix(model)  # the samples' common system prompt, once per row
    micro = pack(train_samples, fit.tokens, share)
    accumulate = max(1, int(p["tokens_per_step"]) // fit.tokens)
    per_epoch = math.ceil(len(micro) / accumulate)
    total_steps = per_epoch * int(p["epochs"])
    if int(p["max_steps"]) > 0:
        total_steps = min(total_steps, int(p["max_steps"]))
    step = restore_checkpoint(ctx.checkpoint_dir, model, optimizer)
    event(
        log,
        "training",
        character=split.character,
        samples=len(train_samples),
        micro_tokens=fit.tokens,
        checkpointing=fit.checkpointing,
        steps=total_steps,
        start=step,
    )
    train_loss, rate = float("nan"), 0.0
    with Progress(transient=True) as progress:
        bar = progress.add_task("training", total=total_steps, completed=step)
        while step < total_steps:
            epoch, index = divmod(step, per_epoch)
            order = list(range(len(micro)))
            random.Random(int(p["seed"]) + epoch).shuffle(order)
            chosen = order[index * accumulate : (index + 1) * accumulate]
            started = time.perf_counter()
            train_loss, tokens = optimizer_step(
                model, optimizer, [collate(micro[i], device, fixed, share) for i in chosen]
            )
            rate = tokens / (time.perf_counter() - started)
            step += 1
            _check_loss(train_loss, step, p)
            ctx.log_metrics(step=step, train_loss=train_loss, tokens_per_s=rate)
            if step % int(p["checkpoint_every"]) == 0 or step == total_steps:
                save_checkpoint(ctx.checkpoint_dir, model, optimizer, step)
            progress.update(bar, completed=step)
    compared = quality(ctx, model, tokenizer, split, responder, device)
    adapter = compared["quality"][heldout.ADAPTER]
    _check_loss(adapter["loss"], step, p)
    metrics = {
        "train_loss": train_loss,
        "held_out_loss": adapter["loss"],
        "held_out_perplexity": adapter["perplexity"],
        "tokens_per_s": rate,
        "steps": step,
        "tokens_per_micro_batch": fit.tokens,
        "gradient_checkpointing": fit.checkpointing,
        "character": split.character,
        "retrieved_lines": int(p["retrieved_lines"]),
        **compared,
    }
    ctx.log_metrics(step=step, **metrics)
    info = artifacts.ChatbotInfo(
        family=p["family"],
        base_model=p["base_model"],
        character=split.character,
        system_prompt=split.train[0].system,
        max_context=int(p["max_context"]),
        retrieved_lines=int(p["retrieved_lines"]),
    )
    artifacts.save(ctx.output_dir, model, tokenizer, info)
    return TrainingOutcome(metrics=metrics, base_model=p["base_model"])
