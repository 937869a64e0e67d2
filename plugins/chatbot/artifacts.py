"""The published chatbot folder: a LoRA adapter (not merged), its tokenizer and chat template.

Layout: ``adapter_config.json`` + ``adapter_model.safetensors`` (PEFT), the tokenizer files
with the chat template, ``chatbot.json`` (family, base model, character, system prompt), and
for the ``tiny`` base only, ``base/`` holding the small random-weight base model the adapter
was trained on (a real base, packaged or from the hub, is named, never copied).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from stnlp.common.errors import DataError
from stnlp.plugins.chatbot.base import TINY, load_pretrained
from stnlp.runtime.encoder import quiet_transformers

META = "chatbot.json"


@dataclass(frozen=True)
class ChatbotInfo:
    """What ``chatbot.json`` records about an adapter."""

    family: str
    base_model: str
    character: str
    system_prompt: str
    max_context: int
    retrieved_lines: int = 0  # the character's own lines retrieved into its prompt in training


def save(path: Path, model, tokenizer, info: ChatbotInfo) -> None:
    """Write the adapter, the tokenizer (with chat template) and ``chatbot.json`` to ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / META).write_text(json.dumps(asdict(info), indent=1), encoding="utf-8")


def save_tiny_base(path: Path, base) -> None:
    """Keep the ``tiny`` base's random weights beside its adapter (call before adding LoRA)."""
    with quiet_transformers():  # no "Writing model shards" bar in the job's output
        base.save_pretrained(path / "base")


def read_info(path: Path) -> ChatbotInfo:
    """The ``chatbot.json`` of an adapter folder, checked."""
    meta = path / META
    try:
        return ChatbotInfo(**json.loads(meta.read_text(encoding="utf-8")))
    except FileNotFoundError as exc:
        raise DataError(f"{meta}: missing; {path} is not a chatbot adapter folder") from exc
    except (TypeError, json.JSONDecodeError) as exc:
        raise DataError(f"{meta}: not a valid chatbot description: {exc}") from exc


def load(path: Path, dtype: torch.dtype = torch.float32, attn: str = "sdpa"):
    """``(peft model, tokenizer, info)`` from an adapter folder, the adapter kept separate."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = read_info(path)
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(path)
        if info.base_model == TINY:
            base = AutoModelForCausalLM.from_pretrained(
                path / "base", dtype=dtype, attn_implementation=attn
            )
        else:
            base, _ = load_pretrained(info.base_model, dtype, attn)
        model = PeftModel.from_pretrained(base, path)
    return model.eval(), tokenizer, info
