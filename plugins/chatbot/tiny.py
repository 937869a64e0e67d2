"""The ``tiny`` preset's base models: small Llama / Qwen2 models with random weights.

The model classes are the real ones (``LlamaForCausalLM``, ``Qwen2ForCausalLM``), only small,
and the tokenizer is a byte-level BPE trained here on the sample text, with a ChatML chat
template. Both are cached per process, so tests and the demo build them once.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from stnlp.common.errors import UserError

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
FAMILIES = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen": (Qwen2Config, Qwen2ForCausalLM)}
TINY_SHAPE = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
    tie_word_embeddings=True,
)
"""The tiny models' dimensions (any vocabulary size)."""


@lru_cache(maxsize=4)
def _tokenizer(texts: tuple[str, ...], vocab_size: int) -> PreTrainedTokenizerFast:
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        chat_template=CHAT_TEMPLATE,
    )


def tiny_tokenizer(texts: Sequence[str], vocab_size: int = 600) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``texts``, with a ChatML chat template."""
    return _tokenizer(tuple(texts), vocab_size)


@lru_cache(maxsize=4)
def _model_state(family: str, vocab_size: int, seed: int) -> tuple[object, dict]:
    config_cls, model_cls = FAMILIES[family]
    config = config_cls(vocab_size=vocab_size, **TINY_SHAPE)
    torch.manual_seed(seed)
    model = model_cls(config)
    return config, {k: v.clone() for k, v in model.state_dict().items()}


def tiny_model(family: str, vocab_size: int, seed: int = 0, attn: str = "sdpa"):
    """A fresh small ``family`` model (``llama`` or ``qwen``) with random weights from ``seed``.

    The same arguments always give the same weights; each call returns a new model object.
    """
    if family not in FAMILIES:
        raise UserError(f"unknown model family {family!r} (known: {', '.join(FAMILIES)})")
    config, state = _model_state(family, vocab_size, seed)
    model = FAMILIES[family][1](config.__class__.from_dict(config.to_dict()))
    model.load_state_dict(state)
    model.config._attn_implementation = attn
    return model
