"""Assistant-only causal-LM loss on a packed batch, without materialising full-vocabulary logits.

The decoder runs once over the packed row; the LM head and cross-entropy run only on the
positions that have a target (the assistant tokens), in chunks whose logits are recomputed in
the backward pass instead of kept. With a 128k vocabulary this is the difference between a few
hundred megabytes and tens of gigabytes per step.
"""

from __future__ import annotations

import functools
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from stnlp.plugins.chatbot.packing import (
    IGNORE,
    causal_lm,
    collate,
    model_inputs,
    pack,
    shares_prefix,
)


def _chunk_loss(weight: torch.Tensor, hidden: torch.Tensor, targets: torch.Tensor):
    return F.cross_entropy((hidden @ weight.t()).float(), targets, reduction="sum")


@functools.cache
def _fused_chunk_loss():
    """On CUDA the chunk's upcast, log-softmax and gather fuse into a few kernels. Compiled on
    first use: importing the compiler costs every process about 2 s, and a CPU never uses it."""
    return torch.compile(_chunk_loss, dynamic=True)


def loss_sum(
    model, batch: dict, chunk_tokens: int = 4096, cache=None, lower=None
) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over the batch's target tokens, and how many there are; with
    ``cache`` (a ``DynamicCache``) every layer's keys and values of the row are kept in it;
    with ``lower`` (a :class:`~stnlp.plugins.chatbot.lower_layers.LowerLayers`) the layers
    below the lowest adapted one run once per row over two passes."""
    lm = causal_lm(model)
    inputs = model_inputs(batch)
    with lower.over(lm, inputs, cache) if lower is not None else nullcontext(inputs) as inputs:
        out = lm.model(**inputs, past_key_values=cache, use_cache=cache is not None)
    hidden = out.last_hidden_state[0]
    targets = batch["targets"][0]
    keep = targets != IGNORE
    hidden, targets = hidden[keep], targets[keep]
    weight = lm.lm_head.weight
    chunk_loss = _fused_chunk_loss() if hidden.is_cuda else _chunk_loss
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, targets.numel(), chunk_tokens):
        h, t = hidden[start : start + chunk_tokens], targets[start : start + chunk_tokens]
        if torch.is_grad_enabled():
            total = total + checkpoint(chunk_loss, weight, h, t, use_reentrant=False)
        else:
            total = total + chunk_loss(weight, h, t)
    return total, int(targets.numel())


@torch.no_grad()
def held_out_loss(
    model, samples, budget: int, device, max_length: int | None = None, keep=None, lower=None
) -> float:
    """Mean loss per target token over ``samples`` (nan when there are none); their shared
    prefix is computed once per batch where :func:`shares_prefix` allows. ``keep`` (a
    :class:`~stnlp.plugins.chatbot.prompt_cache.PromptCache`) receives each row's keys and
    values, so replies to the same prompts need not compute them again; ``lower`` is passed
    to :func:`loss_sum`."""
    from transformers import DynamicCache

    was_training = model.training
    model.eval()
    share = shares_prefix(model)
    total, count = 0.0, 0
    for batch in pack(samples, budget, share):
        collated = collate(batch, device, max_length, share)
        cache = None if keep is None else DynamicCache()
        loss, n = loss_sum(model, collated, cache=cache, lower=lower)
        if keep is not None:
            keep.add(batch, collated, cache)
        total, count = total + loss.item(), count + n
    model.train(was_training)
    return total / count if count else float("nan")
