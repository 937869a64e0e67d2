"""Base models: the configured hub model (from the local cache only) or the ``tiny`` one."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from stnlp.common.errors import UserError
from stnlp.plugins.chatbot.tiny import tiny_model, tiny_tokenizer

TINY = "tiny"


def device_and_dtype() -> tuple[torch.device, torch.dtype]:
    """CUDA with bf16 when there is a GPU, else CPU with fp32."""
    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16
    return torch.device("cpu"), torch.float32


def load_hub(model_id: str, dtype: torch.dtype, attn: str = "sdpa"):
    """``(model, tokenizer)`` for ``model_id`` from the local Hugging Face cache; never downloads.

    Raises OSError when the model is not cached here.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_id, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        model_id, dtype=dtype, attn_implementation=attn, local_files_only=True
    )
    return model, tokenizer


def load_base(
    model_id: str, family: str, texts: Sequence[str], dtype: torch.dtype, attn: str, seed: int = 0
):
    """``(model, tokenizer)``: the tiny model (tokenizer trained on ``texts``) or a cached one."""
    if model_id == TINY:
        tokenizer = tiny_tokenizer(texts)
        model = tiny_model(family, len(tokenizer), seed, attn)
        return model.to(dtype), tokenizer
    try:
        return load_hub(model_id, dtype, attn)
    except OSError as exc:
        raise UserError(
            f"base model {model_id!r} is not in the local Hugging Face cache and downloads are "
            f"off; use the 'tiny' preset or cache the model first ({exc.__class__.__name__})"
        ) from exc
