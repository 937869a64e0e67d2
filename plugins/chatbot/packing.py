"""Packed batches: samples laid end to end under a token budget, no padding, no cross-talk.

A packed batch is one row of ``sum(len(sample))`` tokens. Positions restart at 0 for each
sample, and ``cu_seq_lens`` (cumulative sample lengths) tells the attention where samples
begin, so no token attends to another sample. Attention goes through :func:`varlen_attention`,
registered with transformers as ``"stnlp_varlen"``: on CUDA it calls PyTorch's flash-attention
varlen kernel (``torch.nn.attention.varlen``); elsewhere it runs exact causal SDPA per sample.
Targets are shifted here, so a sample's last token never learns to predict the next sample.

With ``share_prefix`` the samples' common leading tokens (a character's samples all open with
the same system prompt, about half of each sample) are laid down once at the head of the row,
and every sample attends to them before its own tokens: the same loss and gradients as the
samples laid end to end, for far fewer tokens. Wherever the attention runs per sample (a CPU)
this is the cheaper row; the flash-attention kernel cannot attend across samples, so it is
off there (:func:`shares_prefix`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
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


def shared_prefix_length(samples: Sequence[Sample]) -> int:
    """How many leading tokens every sample shares, short of each one's first target: a shared
    token never carries a target, and each sample keeps at least one token of its own."""
    if len(samples) < 2:
        return 0
    limit = min(prompt_length(s) for s in samples) - 1
    return common_prefix_length([s.input_ids for s in samples], limit)


def common_prefix_length(sequences: Sequence[Sequence[int]], limit: int) -> int:
    """How many leading tokens all ``sequences`` share, at most ``limit``."""
    first, length = sequences[0], 0
    while length < limit and all(s[length] == first[length] for s in sequences):
        length += 1
    return length


def prompt_length(sample: Sample) -> int:
    """How many leading tokens of ``sample`` carry no target (its prompt): the index of its
    first target label, or its length if none is."""
    return next((i for i, label in enumerate(sample.labels) if label != IGNORE), len(sample))


def causal_lm(model):
    """The ``...ForCausalLM`` inside a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def use_attention(model, implementation: str) -> None:
    """Switch ``model`` (or the LM inside its PEFT wrapper) to ``implementation``: ``sdpa``
    for padded batches, :data:`ATTENTION` for packed rows."""
    lm = causal_lm(model)
    if lm.config._attn_implementation != implementation:
        lm.set_attn_implementation(implementation)


def shares_prefix(model) -> bool:
    """Whether packed rows for ``model`` may share their samples' common prefix: only through
    :func:`varlen_attention` (stock attention would let the samples see each other), and not
    where it runs the flash-attention varlen kernel (CUDA in half precision)."""
    if model.config._attn_implementation != ATTENTION:
        return False
    weight = next(model.parameters())
    flash = weight.is_cuda and weight.dtype in (torch.float16, torch.bfloat16)
    return not (flash and _varlen_attn is not None)


def pack(samples: Sequence[Sample], budget: int, share_prefix: bool = False) -> list[list[Sample]]:
    """Group samples in order into batches of at most ``budget`` tokens (first fit, longest first).

    With ``share_prefix`` a batch's cost is the samples' common prefix once plus the rest of
    each sample (as :func:`collate` lays them). A sample longer than the budget is an error
    naming its length: it cannot fit any batch.
    """
    too_long = [len(s) for s in samples if len(s) > budget]
    if too_long:
        raise UserError(
            f"a sample of {max(too_long)} tokens exceeds tokens_per_step={budget}; "
            "raise tokens_per_step or lower max_sample_tokens"
        )
    shared = shared_prefix_length(samples) if share_prefix else 0
    batches: list[list[Sample]] = []
    room: list[int] = []
    for sample in sorted(samples, key=len, reverse=True):
        cost = len(sample) - shared
        for index, free in enumerate(room):
            if cost <= free:
                batches[index].append(sample)
                room[index] -= cost
                break
        else:
            batches.append([sample])
            room.append(budget - len(sample))
    return batches


def collate(
    batch: Sequence[Sample],
    device: torch.device | str = "cpu",
    max_length: int | None = None,
    share_prefix: bool = False,
) -> dict[str, object]:
    """One packed row: ``input_ids``, ``position_ids``, shifted ``targets`` and varlen metadata.

    ``max_length`` fixes the reported longest sample (an upper bound is fine for the kernel), so
    a compiled model sees the same value every step. With ``share_prefix`` the samples' common
    prefix (:func:`shared_prefix_length`) comes first, once, as segment 0, and
    ``shared_prefix`` gives its length to :func:`varlen_attention`.
    """
    shared = shared_prefix_length(batch) if share_prefix else 0
    ids: list[int] = list(batch[0].input_ids[:shared]) if shared else []
    positions: list[int] = list(range(shared))
    targets: list[int] = [IGNORE] * shared
    bounds = [0, shared] if shared else [0]
    for sample in batch:
        ids += sample.input_ids[shared:]
        positions += range(shared, len(sample))
        targets += [*sample.labels[shared + 1 :], IGNORE]
        bounds.append(bounds[-1] + len(sample) - shared)
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
        **({"shared_prefix": shared} if shared else {}),
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


def _shared_prefix_sdpa(q, k, v, bounds: list[int], scaling: float | None) -> torch.Tensor:
    """Segment 0 (the shared prefix) causal on itself; every later segment attends to the
    whole prefix and causally to its own tokens."""
    shared = bounds[1]
    outputs = [_per_sample_sdpa(q, k, v, bounds[:2], scaling)]
    for start, end in zip(bounds[1:], bounds[2:], strict=False):
        length = end - start
        qs = q[start:end].transpose(0, 1)
        ks, vs = (torch.cat([t[:shared], t[start:end]]).transpose(0, 1) for t in (k, v))
        mask = torch.ones(length, shared + length, dtype=torch.bool, device=q.device)
        mask[:, shared:] = torch.ones(length, length, dtype=torch.bool, device=q.device).tril()
        out = F.scaled_dot_product_attention(
            qs, ks, vs, attn_mask=mask, scale=scaling, enable_gqa=ks.shape[0] != qs.shape[0]
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
    ``max_length_q`` come from :func:`collate`, and ``shared_prefix`` where the row begins
    with the samples' shared prefix. Without them (e.g. generation) the whole row is one
    sample. Returns ``(output (1, tokens, heads, head_dim), None)``.
    """
    if query.shape[0] != 1:
        raise ValueError(f"{ATTENTION} attention expects one packed row, got {query.shape[0]}")
    tokens = query.shape[2]
    cu = kw.get("cu_seq_lens_q")
    if cu is None:
        cu = torch.tensor([0, tokens], dtype=torch.int32, device=query.device)
    max_len = int(kw.get("max_length_q") or tokens)
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (tokens, heads, dim)
    if kw.get("shared_prefix"):
        out = _shared_prefix_sdpa(q, k, v, cu.tolist(), scaling)
    elif q.is_cuda and _varlen_attn is not None and q.dtype in (torch.float16, torch.bfloat16):
        out = _flash_varlen(q, k, v, cu, max_len, scaling)
    else:
        out = _per_sample_sdpa(q, k, v, cu.tolist(), scaling)
    return out.unsqueeze(0), None


AttentionInterface.register(ATTENTION, varlen_attention)
