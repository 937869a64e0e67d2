"""Packed batches: samples laid end to end under a token budget, no padding, no cross-talk.

A packed batch is one row of ``sum(len(sample))`` tokens. Positions restart at 0 for each
sample, and ``cu_seq_lens`` (cumulative sample lengths) tells the attention where samples
begin, so no token attends to another sample. Attention goes through :func:`varlen_attention`,
registered with transformers as ``"stnlp_varlen"``: on CUDA it calls PyTorch's flash-attention
varlen kernel (``torch.nn.attention.varlen``); elsewhere it runs exact causal SDPA per sample.
Targets are shifted here, so a sample's last token never learns to predict the next sample.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

from stnlp.common.errors import UserError

ATTENTION = "stnlp_varlen"
IGNORE = -100

try:  # PyTorch >= 2.10 ships flash-attention varlen with autograd
    from torch.nn.attention.varlen import varlen_attn as _varlen_attn

    _VARLEN_PARAMS = inspect.signature(_varlen_attn).parameters
except ImportError:  # pragma: no cover - older torch
    _varlen_attn = None
    _VARLEN_PARAMS = {}


@dataclass(frozen=True)
class Sample:
    """One training sample: token ids and per-token labels (``-100`` where no loss)."""

    input_ids: list[int]
    labels: list[int]
    episode: str = ""

    def __len__(self) -> int:
        return len(self.input_ids)


def pack(samples: Sequence[Sample], budget: int) -> list[list[Sample]]:
    """Group samples in order into batches of at most ``budget`` tokens (first fit, longest first).

    A sample longer than the budget is an error naming its length: it cannot fit any batch.
    """
    too_long = [len(s) for s in samples if len(s) > budget]
    if too_long:
        raise UserError(
            f"a sample of {max(too_long)} tokens exceeds tokens_per_step={budget}; "
            "raise tokens_per_step or lower max_sample_tokens"
        )
    batches: list[list[Sample]] = []
    room: list[int] = []
    for sample in sorted(samples, key=len, reverse=True):
        for index, free in enumerate(room):
            if len(sample) <= free:
                batches[index].append(sample)
                room[index] -= len(sample)
                break
        else:
            batches.append([sample])
            room.append(budget - len(sample))
    return batches


def collate(
    batch: Iterable[Sample], device: torch.device | str = "cpu", max_length: int | None = None
) -> dict[str, object]:
    """One packed row: ``input_ids``, ``position_ids``, shifted ``targets`` and varlen metadata.

    ``max_length`` fixes the reported longest sample (an upper bound is fine for the kernel), so
    a compiled model sees the same value every step.
    """
    ids: list[int] = []
    positions: list[int] = []
    targets: list[int] = []
    bounds = [0]
    for sample in batch:
        ids += sample.input_ids
        positions += range(len(sample))
        targets += [*sample.labels[1:], IGNORE]
        bounds.append(bounds[-1] + len(sample))
    lengths = [b - a for a, b in zip(bounds, bounds[1:], strict=False)]

    def tensor(values, dtype=torch.long):
        return torch.tensor(values, dtype=dtype, device=device)

    return {
        "input_ids": tensor([ids]),
        "position_ids": tensor([positions]),
        "targets": tensor([targets]),
        "cu_seq_lens_q": tensor(bounds, torch.int32),
        "cu_seq_lens_k": tensor(bounds, torch.int32),
        "max_length_q": max_length or max(lengths),
        "max_length_k": max_length or max(lengths),
    }


def model_inputs(batch: dict[str, object]) -> dict[str, object]:
    """The keyword arguments a transformers decoder takes from a collated batch."""
    return {k: v for k, v in batch.items() if k != "targets"}


def _per_sample_sdpa(q, k, v, bounds: list[int], scaling: float | None) -> torch.Tensor:
    outputs = []
    for start, end in zip(bounds, bounds[1:], strict=False):
        qs, ks, vs = (t[start:end].transpose(0, 1) for t in (q, k, v))
        out = F.scaled_dot_product_attention(
            qs, ks, vs, is_causal=True, scale=scaling, enable_gqa=ks.shape[0] != qs.shape[0]
        )
        outputs.append(out.transpose(0, 1))
    return torch.cat(outputs)


def _flash_varlen(q, k, v, cu, max_len: int, scaling: float | None) -> torch.Tensor:
    extra = {}
    if k.shape[1] != q.shape[1]:
        if "enable_gqa" in _VARLEN_PARAMS:
            extra["enable_gqa"] = True
        else:
            groups = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    if "window_size" in _VARLEN_PARAMS:
        extra["window_size"] = (-1, 0)
    else:
        extra["is_causal"] = True
    return _varlen_attn(q, k, v, cu, cu, max_len, max_len, scale=scaling, **extra)


def varlen_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kw):
    """Causal attention inside each packed sample (transformers attention-function signature).

    ``query``/``key``/``value`` are ``(1, heads, tokens, head_dim)``; ``cu_seq_lens_q`` and
    ``max_length_q`` come from :func:`collate`. Without them (e.g. generation) the whole row
    is one sample. Returns ``(output (1, tokens, heads, head_dim), None)``.
    """
    if query.shape[0] != 1:
        raise ValueError(f"{ATTENTION} attention expects one packed row, got {query.shape[0]}")
    tokens = query.shape[2]
    cu = kw.get("cu_seq_lens_q")
    if cu is None:
        cu = torch.tensor([0, tokens], dtype=torch.int32, device=query.device)
    max_len = int(kw.get("max_length_q") or tokens)
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (tokens, heads, dim)
    if q.is_cuda and _varlen_attn is not None and q.dtype in (torch.float16, torch.bfloat16):
        out = _flash_varlen(q, k, v, cu, max_len, scaling)
    else:
        out = _per_sample_sdpa(q, k, v, cu.tolist(), scaling)
    return out.unsqueeze(0), None


AttentionInterface.register(ATTENTION, varlen_attention)
