"""Size the tokens per micro-batch (and decide on gradient checkpointing) for the GPU at hand.

Two probe steps of different sizes give peak memory as a straight line in the number of
tokens (fixed part: weights, optimizer state, one loss chunk; slope: activations per token).
The largest micro-batch that fits under the usable memory (the process's memory fraction
included) is taken, first without checkpointing, and with it only if that fits too few tokens.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from stnlp.common.errors import UserError
from stnlp.plugins.chatbot.packing import Sample, collate
from stnlp.runtime.logs import event

log = logging.getLogger(__name__)
PROBES = (1024, 3072)


@dataclass(frozen=True)
class Fit:
    """Tokens per micro-batch and whether gradient checkpointing is on."""

    tokens: int
    checkpointing: bool


def usable_bytes(device: torch.device, headroom: float = 0.9) -> int:
    """Memory this process may use on ``device``: total times its memory fraction and headroom."""
    index = torch.cuda.current_device() if device.index is None else device.index
    total = torch.cuda.get_device_properties(index).total_memory
    fraction = getattr(torch.cuda, "get_per_process_memory_fraction", lambda d: 1.0)(index)
    return int(total * fraction * headroom)


def _probe_sample(tokens: int, vocab: int) -> list[Sample]:
    generator = torch.Generator().manual_seed(tokens)
    ids = torch.randint(0, vocab, (tokens,), generator=generator).tolist()
    return [Sample(ids[i : i + 128], ids[i : i + 128]) for i in range(0, tokens, 128)]


def _peak(model, step: Callable, tokens: int, device: torch.device) -> int:
    vocab = model.config.vocab_size if hasattr(model, "config") else 32000
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    step(collate(_probe_sample(tokens, vocab), device))
    model.zero_grad(set_to_none=True)
    return torch.cuda.max_memory_allocated(device)


def prepare_allocator() -> None:
    """Let the CUDA caching allocator grow segments in place: less fragmentation at the limit.

    Takes effect only before CUDA is first used in the process.
    """
    if not torch.cuda.is_initialized():
        os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")


def _fits(model, step: Callable, tokens: int, device: torch.device, budget: int) -> bool:
    try:
        return _peak(model, step, tokens, device) <= budget
    except torch.cuda.OutOfMemoryError:
        model.zero_grad(set_to_none=True)
        return False


def fit_tokens(
    model,
    step: Callable,
    requested: int,
    device: torch.device,
    min_tokens: int = 4096,
    budget: int | None = None,
) -> Fit:
    """The micro-batch size for ``model`` on ``device``; ``requested`` tokens as-is on CPU.

    ``step(batch)`` runs one forward and backward pass. The straight-line estimate is then tried
    for real, shrinking by a fifth until a step fits. Checkpointing is switched on (and left on)
    only when fewer than ``min(requested, min_tokens)`` tokens fit without it. ``budget``
    (bytes) overrides :func:`usable_bytes`.
    """
    if device.type != "cuda":
        return Fit(requested, False)
    budget = budget or usable_bytes(device)
    floor = min(requested, min_tokens)
    tokens = 0
    for checkpointing in (False, True):
        if checkpointing:
            model.gradient_checkpointing_enable({"use_reentrant": False})
        small, large = (_peak(model, step, n, device) for n in PROBES)
        per_token = max(1.0, (large - small) / (PROBES[1] - PROBES[0]))
        fixed = small - per_token * PROBES[0]
        tokens = min(requested, int((budget - fixed) / per_token) // 256 * 256)
        while tokens >= floor and not _fits(model, step, tokens, device, budget):
            tokens = int(tokens * 0.8) // 256 * 256
        event(
            log,
            "memory probe",
            checkpointing=checkpointing,
            per_token=int(per_token),
            fixed_mb=int(fixed / 2**20),
            fits=tokens,
        )
        if tokens >= floor:
            return Fit(tokens, checkpointing)
    raise UserError(
        f"the model does not fit: only {max(tokens, 0)} tokens per step fit in "
        f"{budget / 2**30:.1f} GiB even with gradient checkpointing"
    )
