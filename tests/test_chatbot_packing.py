"""Packed batches: no attention across samples, shifted targets, budgets respected, and a
shared prefix laid down once with the same loss and gradients as stock per-sample passes."""

from __future__ import annotations

import random

import pytest
import torch

from stnlp.common.errors import UserError
from stnlp.plugins.chatbot.loss import loss_sum
from stnlp.plugins.chatbot.packing import (
    ATTENTION,
    IGNORE,
    Sample,
    collate,
    model_inputs,
    pack,
    shared_prefix_length,
)
from stnlp.plugins.chatbot.tiny import tiny_model


def _samples(count: int, vocab: int, seed: int = 3) -> list[Sample]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        length = rng.randint(5, 30)
        ids = [rng.randrange(vocab) for _ in range(length)]
        cut = length // 2
        out.append(Sample(ids, [IGNORE] * cut + ids[cut:]))
    return out


@pytest.mark.parametrize("family", ["llama", "qwen"])
def test_packed_sample_sees_only_itself(family):
    model = tiny_model(family, 300, seed=1, attn=ATTENTION).eval()
    reference = tiny_model(family, 300, seed=1, attn="sdpa").eval()  # same weights, stock SDPA
    samples = _samples(5, 300)
    with torch.no_grad():
        packed = model(**model_inputs(collate(samples))).logits[0]
        start = 0
        for sample in samples:
            alone = reference(input_ids=torch.tensor([sample.input_ids])).logits[0]
            torch.testing.assert_close(packed[start : start + len(sample)], alone)
            start += len(sample)
        mixed = samples[:2] + [Sample([7] * len(samples[2]), samples[2].labels)] + samples[3:]
        changed = model(**model_inputs(collate(mixed))).logits[0]
    # changing one sample leaves every other sample's logits untouched
    end = sum(len(s) for s in samples[:3])
    torch.testing.assert_close(changed[end:], packed[end:])
    assert not torch.allclose(changed[:end], packed[:end])


def test_packed_loss_equals_the_per_sample_losses():
    model = tiny_model("llama", 300, seed=2, attn=ATTENTION).eval()
    reference = tiny_model("llama", 300, seed=2, attn="sdpa").eval()
    samples = _samples(4, 300, seed=5)
    with torch.no_grad():
        total, count = loss_sum(model, collate(samples))
        expected, expected_count = 0.0, 0
        for sample in samples:
            out = reference(
                input_ids=torch.tensor([sample.input_ids]), labels=torch.tensor([sample.labels])
            )
            n = sum(1 for label in sample.labels[1:] if label != IGNORE)
            expected += out.loss.item() * n
            expected_count += n
    assert count == expected_count
    assert total.item() == pytest.approx(expected, rel=1e-5)


def test_pack_respects_the_budget_and_keeps_every_sample():
    samples = _samples(60, 100)
    batches = pack(samples, 64)
    assert all(sum(len(s) for s in b) <= 64 for b in batches)
    assert sorted(id(s) for b in batches for s in b) == sorted(id(s) for s in samples)
    assert len(batches) <= sum(map(len, samples)) // 64 + 3  # close to no waste
    batch = collate(batches[0])
    assert batch["cu_seq_lens_q"].tolist()[-1] == batch["input_ids"].shape[1]
    assert batch["position_ids"][0, batch["cu_seq_lens_q"][1]].item() == 0


def test_sample_longer_than_the_budget_is_named():
    with pytest.raises(UserError, match="sample of 40 tokens exceeds tokens_per_step=32"):
        pack([Sample([1] * 40, [1] * 40)], 32)


def _with_prefix(samples: list[Sample], prefix: list[int]) -> list[Sample]:
    """``samples`` behind a common ``prefix`` of prompt tokens (as a system prompt is)."""
    return [Sample(prefix + s.input_ids, [IGNORE] * len(prefix) + s.labels) for s in samples]


def _stock_loss_and_grads(model, samples: list[Sample]) -> tuple[float, list[torch.Tensor]]:
    """Summed loss over every sample's targets by stock transformers passes, one per sample,
    and the gradients of that sum."""
    model.zero_grad()
    total = 0.0
    for sample in samples:
        labels = torch.tensor([sample.labels])
        out = model(input_ids=torch.tensor([sample.input_ids]), labels=labels)
        n = int((labels[0, 1:] != IGNORE).sum())
        (out.loss * n).backward()
        total += out.loss.item() * n
    return total, [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("family", ["llama", "qwen"])
def test_a_shared_prefix_gives_the_stock_per_sample_loss_and_gradients(family):
    prefix = [11, 12, 13, 14, 15, 16, 17, 18, 19]
    samples = _with_prefix(_samples(4, 300, seed=7), prefix)
    model = tiny_model(family, 300, seed=4, attn=ATTENTION)
    reference = tiny_model(family, 300, seed=4, attn="sdpa")  # same weights, stock SDPA
    batch = collate(samples, share_prefix=True)
    assert batch["shared_prefix"] >= len(prefix)
    shared = batch["shared_prefix"]
    assert batch["input_ids"].shape[1] == sum(len(s) for s in samples) - 3 * shared
    model.zero_grad()
    total, count = loss_sum(model, batch)
    total.backward()
    expected, grads = _stock_loss_and_grads(reference, samples)
    assert count == sum(1 for s in samples for label in s.labels[1:] if label != IGNORE)
    assert total.item() == pytest.approx(expected, rel=1e-5)
    for got, want in zip((p.grad for p in model.parameters()), grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_the_shared_prefix_stops_before_any_target_and_leaves_each_sample_a_token():
    a = Sample([1, 2, 3, 4, 5], [IGNORE, IGNORE, IGNORE, 4, 5])
    b = Sample([1, 2, 3, 4, 6], [IGNORE, IGNORE, IGNORE, IGNORE, 6])
    assert shared_prefix_length([a, b]) == 2  # token 3 predicts a's first target
    assert shared_prefix_length([a]) == 0  # nothing to share
    assert shared_prefix_length([a, Sample([9, 2], [IGNORE, 2])]) == 0
    c = Sample([1, 2, 3], [IGNORE, IGNORE, IGNORE])  # no target at all
    assert shared_prefix_length([c, c]) == 2


def test_packing_with_a_shared_prefix_counts_it_once_per_batch():
    samples = _with_prefix(_samples(30, 100, seed=9), list(range(40)))
    plain, shared = pack(samples, 256), pack(samples, 256, share_prefix=True)
    assert len(shared) < len(plain)
    for batch in shared:
        row = collate(batch, share_prefix=True)
        assert row["input_ids"].shape[1] <= 256
    assert sorted(id(s) for b in shared for s in b) == sorted(id(s) for s in samples)
