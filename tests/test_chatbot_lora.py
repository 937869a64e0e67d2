"""LoRA on the top decoder layers only (``lora_layers``): peft's own choice of modules, in those
layers alone, and a backward pass that stops at the lowest of them."""

from __future__ import annotations

import pytest

from stnlp.plugins.chatbot.loss import loss_sum
from stnlp.plugins.chatbot.packing import ATTENTION, IGNORE, Sample, causal_lm, collate
from stnlp.plugins.chatbot.tiny import tiny_model
from stnlp.plugins.chatbot.train import lora

PARAMS = {"lora_r": 4, "lora_alpha": 8, "target_modules": "all-linear"}


def _adapted(model) -> set[str]:
    """The modules carrying a LoRA adapter."""
    return {name.split(".lora_A")[0] for name, _ in model.named_parameters() if ".lora_A" in name}


@pytest.mark.parametrize("family", ["llama", "qwen"])
def test_the_top_layers_get_every_module_peft_picks_and_the_rest_none(family):
    everywhere = lora(tiny_model(family, 300, seed=1), {**PARAMS, "lora_layers": 0})
    top = lora(tiny_model(family, 300, seed=1), {**PARAMS, "lora_layers": 1})
    last = len(causal_lm(everywhere).model.layers) - 1
    # peft resolves "all-linear" itself when every layer is adapted: the outside truth
    expected = {name for name in _adapted(everywhere) if f".layers.{last}." in name}
    assert len(expected) == 7  # q, k, v, o, gate, up, down
    assert _adapted(top) == expected


@pytest.mark.parametrize("top", [0, 1])
def test_target_modules_may_be_names_separated_by_commas(top):
    params = {**PARAMS, "target_modules": "q_proj, v_proj", "lora_layers": top}
    named = _adapted(lora(tiny_model("llama", 300, seed=1), params))
    assert {name.rsplit(".", 1)[-1] for name in named} == {"q_proj", "v_proj"}
    layers = {name.split(".layers.")[1].split(".")[0] for name in named}
    assert layers == ({"1"} if top else {"0", "1"})


def test_no_gradient_flows_below_the_lowest_adapted_layer():
    model = lora(tiny_model("llama", 300, seed=2, attn=ATTENTION), {**PARAMS, "lora_layers": 1})
    model.train()
    needs_grad = []
    for layer in causal_lm(model).model.layers:
        layer.register_forward_hook(
            lambda module, args, out: needs_grad.append(
                (out[0] if isinstance(out, tuple) else out).requires_grad
            )
        )
    ids = list(range(10, 40))
    loss, _ = loss_sum(model, collate([Sample(ids, [IGNORE] * 10 + ids[10:])]))
    loss.backward()
    assert needs_grad == [False, True]  # the lower layer ran as without autograd
    trained = {name: p for name, p in model.named_parameters() if p.requires_grad}
    assert trained and all(p.grad is not None for p in trained.values())
    # B starts at zero, so A's first gradient is zero too; every B learns from the first step
    assert all(p.grad.abs().sum() > 0 for name, p in trained.items() if ".lora_B" in name)
