"""The held-out comparison's shortcuts give what the stock paths give: the unadapted lower layers
run once for the adapter's pass and the base's, decoding writes its cache in place, and the
offline responder embeds a training context once."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers.cache_utils import DynamicLayer

from stnlp.plugins.chatbot import heldout
from stnlp.plugins.chatbot.data import encode_all, load_split
from stnlp.plugins.chatbot.infer import ModelChat, for_generation
from stnlp.plugins.chatbot.loss import held_out_loss
from stnlp.plugins.chatbot.lower_layers import lowest_adapted_layer
from stnlp.plugins.chatbot.packing import ATTENTION, causal_lm, pack, shares_prefix, use_attention
from stnlp.plugins.chatbot.roomy_cache import RoomyLayer
from stnlp.plugins.chatbot.tiny import tiny_model, tiny_tokenizer
from stnlp.plugins.chatbot.train import lora
from tests.test_chatbot_data import write_dataset

PARAMS = {"max_sample_tokens": 512, "tokens_per_step": 48, "reply_tokens": 8}
LORA = {"lora_r": 4, "lora_alpha": 8, "target_modules": "all-linear"}


@pytest.fixture(scope="module")
def held(tmp_path_factory):
    data = write_dataset(tmp_path_factory.mktemp("data"))
    split = load_split(data / "transcripts", data / "characters", "Eleven", min_lines=10)
    return heldout.prepare(split, data / "transcripts", data / "characters", 2, 6)


def _tokenizer(held):
    turns = held.split.train + held.split.held_out
    return tiny_tokenizer([m["content"] for t in turns for m in t.messages])


def _adapted(vocab: int, family: str):
    """A tiny model with LoRA on its top layer, its B matrices random (so it differs from the
    base), and the same adapter folded into a plain model: the stock truth."""
    model = lora(tiny_model(family, vocab, seed=3, attn=ATTENTION), {**LORA, "lora_layers": 1})
    torch.manual_seed(0)
    for name, weight in model.named_parameters():
        if ".lora_B" in name:
            weight.data.normal_(0, 0.2)
    plain = tiny_model(family, vocab, seed=3, attn=ATTENTION)
    plain.load_state_dict(copy.deepcopy(model).merge_and_unload().state_dict())
    return model, plain


def _stock(model, tokenizer, held, samples) -> tuple[float, list[str]]:
    """The loss of a full pass and each reply generated alone, by a plain model."""
    use_attention(model, ATTENTION)
    loss = held_out_loss(model, samples, 4 * PARAMS["tokens_per_step"], "cpu")
    chat = ModelChat(for_generation(model), tokenizer, 512)
    replies = [
        list(chat.stream(t.messages, PARAMS["reply_tokens"], 0.0, name="Eleven"))[-1]
        for t in held.retrieved
    ]
    return loss, replies


@pytest.mark.parametrize("family", ["llama", "qwen"])
def test_the_base_pass_reuses_the_lower_layers_and_equals_the_stock_base(held, family):
    tokenizer = _tokenizer(held)
    model, merged = _adapted(len(tokenizer), family)
    assert lowest_adapted_layer(model) == 1
    samples = encode_all(tokenizer, held.retrieved, PARAMS["max_sample_tokens"])
    base_truth = _stock(tiny_model(family, len(tokenizer), seed=3), tokenizer, held, samples)
    adapter_truth = _stock(merged, tokenizer, held, samples)
    assert base_truth != adapter_truth  # the comparison can tell them apart
    rows = len(pack(samples, 4 * PARAMS["tokens_per_step"], shares_prefix(model)))
    widths = []  # per run of the lower layer: how many tokens it ran
    layer = causal_lm(model).model.layers[0]
    hook = layer.register_forward_hook(lambda m, args, out: widths.append(args[0].shape[1]))
    variants = [(heldout.ADAPTER, True, True, True), (heldout.BASE, False, True, True)]
    try:
        losses, replies = heldout.model_replies(
            model, tokenizer, held, PARAMS, "cpu", variants, 512
        )
    finally:
        hook.remove()
    assert losses[heldout.ADAPTER] == pytest.approx(adapter_truth[0], abs=1e-5)
    assert losses[heldout.BASE] == pytest.approx(base_truth[0], abs=1e-5)
    assert replies[heldout.ADAPTER] == adapter_truth[1]
    assert replies[heldout.BASE] == base_truth[1]
    # the lower layer ran over the packed rows once, in the adapter's pass (then it only
    # decoded, one token at a time, from the prompts' kept keys and values)
    assert rows > 1 and sum(width > 1 for width in widths) == rows


def test_an_adapter_that_also_trains_the_embeddings_shares_no_layer():
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=4, target_modules=["q_proj"], layers_to_transform=[1], modules_to_save=["embed_tokens"]
    )
    assert lowest_adapted_layer(get_peft_model(tiny_model("llama", 300), config)) == 0


def _steps(layer_class, keys: torch.Tensor, values: torch.Tensor):
    """Drive a cache layer through prefill, growth past its room, a batch repeat, a crop and
    a batch selection; every state it returns along the way."""
    layer = layer_class(keys[:, :, :5], values[:, :, :5])
    seen = [(layer.keys.clone(), layer.values.clone())]
    for column in range(5, keys.shape[2]):
        new = keys[:, :, column : column + 1], values[:, :, column : column + 1]
        seen.append(tuple(t.clone() for t in layer.update(*new)))
    layer.batch_repeat_interleave(2)
    layer.crop(-2)
    layer.batch_select_indices(torch.tensor([3, 0]))
    extra = torch.ones(2, *keys.shape[1:2], 1, keys.shape[3])
    seen.append(tuple(t.clone() for t in layer.update(extra, extra)))
    return seen


def _stock_layer(keys, values):
    layer = DynamicLayer()
    layer.update(keys, values)
    return layer


def test_a_roomy_layer_holds_what_the_stock_dynamic_layer_holds():
    torch.manual_seed(1)
    keys, values = torch.randn(2, 3, 12, 4), torch.randn(2, 3, 12, 4)
    roomy = _steps(lambda k, v: RoomyLayer(k, v, room=3), keys, values)  # grows twice
    stock = _steps(_stock_layer, keys, values)
    assert len(roomy) == len(stock)
    for (rk, rv), (sk, sv) in zip(roomy, stock, strict=True):
        assert torch.equal(rk, sk) and torch.equal(rv, sv)


def test_the_responder_embeds_only_the_messages_its_index_does_not_hold(held, monkeypatch):
    responder = held.responder
    messages = [t.user for t in held.split.train[:5]] + ["Where were you last night?"]
    fresh = responder.encoder.encode(messages)  # the stock path: encode them all
    encoded = []
    stock = responder.encoder.encode
    monkeypatch.setattr(
        responder.encoder, "encode", lambda texts: encoded.append(texts) or stock(texts)
    )
    assert torch.allclose(responder.embed(messages), fresh, atol=1e-5)
    assert encoded == [["Where were you last night?"]]
