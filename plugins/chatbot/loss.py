"""Assistant-only causal-LM loss on a packed batch, without materialising full-vocabulary logits.

The decoder runs once over the packed row; the LM head and cross-entropy run only on the
positions that have a target (the assistant tokens), in chunks whose logits are recomputed in
the backward pass instead of kept. With a 128k vocabulary this is the difference between a few
hundred megabytes and tens of gigabytes per step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from stnlp.plugins.chatbot.packing import IGNORE, collate, model_inputs, pack, shares_prefix


def causal_lm(model):
    """The ``...ForCausalLM`` inside a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _chunk_loss(weight: torch.Tensor, hidden: torch.Tensor, targets: torch.Tensor):
    return F.cross_entropy((hidden @ weight.t()).float(), targets, reduction="sum")


# On CUDA the chunk's upcast, log-softmax and gather fuse into a few kernels.
_fused_chunk_loss = torch.compile(_chunk_loss, dynamic=True)


def loss_sum(model, batch: dict, chunk_tokens: int = 4096) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over the batch's target tokens, and how many there are."""
    lm = causal_lm(model)
    hidden = lm.model(**model_inputs(batch), use_cache=False).last_hidden_state[0]
    targets = batch["targets"][0]
    keep = targets != IGNORE
    hidden, targets = hidden[keep], targets[keep]
    weight = lm.lm_head.weight
    chunk_loss = _fused_chunk_loss if hidden.is_cuda else _chunk_loss
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, targets.numel(), chunk_tokens):
        h, t = hidden[start : start + chunk_tokens], targets[start : start + chunk_tokens]
        if torch.is_grad_enabled():
            total = total + checkpoint(chunk_loss, weight, h, t, use_reentrant=False)
        else:
            total = total + chunk_loss(weight, h, t)
    return total, int(targets.numel())


@torch.no_grad()
def held_out_loss(model, samples, budget: int, device, max_length: int | None = None) -> float:
    """Mean loss per target token over ``samples`` (nan when there are none); their shared
    prefix is computed once per batch where :func:`shares_prefix` allows."""
    was_training = model.training
    model.eval()
    share = shares_prefix(model)
    total, count = 0.0, 0
    for batch in pack(samples, budget, share):
        loss, n = loss_sum(model, collate(batch, device, max_length, share))
        total, count = total + loss.item(), count + n
    model.train(was_training)
    return total / count if count else float("nan")
