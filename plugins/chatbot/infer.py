"""Chat inference: pick the live model source, load it once per process, stream replies.

Sources in order: the latest trained adapter in the registry, else the configured base model
if it is in the local Hugging Face cache (downloads stay off), else the offline responder. An
adapter speaks only as the character it was trained on; other characters get the next source.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from stnlp.plugins.chatbot import artifacts
from stnlp.plugins.chatbot.base import device_and_dtype, load_hub
from stnlp.plugins.chatbot.data import build_turns, find_character, system_prompt
from stnlp.plugins.chatbot.offline import OfflineResponder
from stnlp.runtime.data import SAMPLE_DIR

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """Where a chatbot's replies come from: ``registry``, ``endpoint``, ``hub`` or ``offline``."""

    kind: str
    label: str
    location: str = ""
    character: str = ""  # a registry adapter's character; empty: speaks as any character
    chat: Any = field(default=None, compare=False)  # an endpoint's EndpointChat

    def speaks_as(self, character: str) -> bool:
        """Whether this source can answer in ``character``'s voice."""
        return not self.character or self.character.casefold() == character.casefold()


OFFLINE = Source("offline", "offline responder (MiniLM retrieval of the character's lines)")


def trim_history(tokenizer, messages: list[dict], max_tokens: int) -> list[dict]:
    """Drop the oldest turns after the system prompt until the rendered prompt fits."""
    system, rest = messages[:1], list(messages[1:])

    def size(msgs):
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    while len(rest) > 1 and size(system + rest) > max_tokens:
        rest = rest[2:] if rest[0]["role"] == "user" and len(rest) > 2 else rest[1:]
    return system + rest


class ModelChat:
    """A causal LM (adapter or base) with its tokenizer; streams replies."""

    def __init__(self, model, tokenizer, max_context: int):
        self.model, self.tokenizer, self.max_context = model, tokenizer, max_context

    def stream(
        self,
        messages: list[dict],
        max_new_tokens: int = 64,
        temperature: float = 0.7,
        top_p: float = 0.9,
    ) -> Iterator[str]:
        """Yield the reply as it grows, token by token (history trimmed to the context)."""
        from transformers import TextIteratorStreamer

        budget = max(16, self.max_context - max_new_tokens)
        prompt = trim_history(self.tokenizer, messages, budget)
        text = self.tokenizer.apply_chat_template(
            prompt, tokenize=False, add_generation_prompt=True
        )
        inputs = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")
        inputs = inputs.to(self.model.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p}
        kwargs = dict(
            **inputs,
            max_new_tokens=max_new_tokens,
            streamer=streamer,
            pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            **(sampling if temperature > 0 else {"do_sample": False}),
        )
        worker = threading.Thread(target=self._generate, kwargs=kwargs, daemon=True)
        worker.start()
        reply = ""
        for piece in streamer:
            reply += piece
            yield reply
        worker.join()

    @torch.no_grad()
    def _generate(self, **kwargs) -> None:
        self.model.generate(**kwargs)


def dataset_folder(settings, name: str) -> Path:
    """The store's current version of dataset ``name`` (S3: copied into a local cache) if it
    has one, else the sample.

    Call once per process (the tab does, when it is built), not per message.
    """
    from stnlp.runtime.datasets import dataset_folder as stored_folder

    return stored_folder(settings, name) or SAMPLE_DIR / name


def resolve_sources(settings, model_name: str, base_model: str) -> tuple[Source, ...]:
    """``model_name``'s sources in order of preference, without loading them.

    The registry's latest adapter (if any), the base model (if in the local cache), and last
    the offline responder, which speaks as every character.
    """
    from stnlp.runtime.registry import fetch_latest

    chain = []
    local = fetch_latest(settings, model_name)
    if local is not None:
        character = artifacts.read_info(local.path).character
        label = f"registry {model_name} version {local.version} (trained for {character})"
        chain.append(Source("registry", label, str(local.path), character))
    from stnlp.runtime.endpoint import endpoint_source  # `stnlp deploy`: served, so first

    hosted = endpoint_source(settings, model_name)
    if hosted is not None:
        chain.insert(0, Source("endpoint", hosted.label, hosted.endpoint, hosted.character, hosted))
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = isinstance(try_to_load_from_cache(base_model, "config.json"), str)
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        cached = False
    if cached:
        chain.append(Source("hub", f"hub model {base_model} (local cache)", base_model))
    return (*chain, OFFLINE)


def source_for(chain: Sequence[Source], character: str) -> Source:
    """The first source of ``chain`` that speaks as ``character``."""
    return next(source for source in chain if source.speaks_as(character))


def describe_sources(chain: Sequence[Source]) -> str:
    """The live source, and the one other characters get when it speaks as one character."""
    first = chain[0]
    if not first.character:
        return first.label
    others = next(source for source in chain[1:] if not source.character)
    return f"{first.label}; other characters: {others.label}"


def merge_for_serving(model):
    """Fold a LoRA adapter into a copy of the base weights in memory (fewer kernels per token).

    The published artifact stays an unmerged adapter; this is only the serving copy.
    """
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


@lru_cache(maxsize=4)
def load_chat(source: Source, max_context: int = 1024) -> ModelChat:
    """Load a registry or hub source once per process."""
    if source.kind == "endpoint":
        return source.chat
    device, dtype = device_and_dtype()
    if source.kind == "registry":
        model, tokenizer, info = artifacts.load(Path(source.location), dtype)
        model, max_context = merge_for_serving(model), info.max_context
    else:
        model, tokenizer = load_hub(source.location, dtype)
    return ModelChat(model.to(device).eval(), tokenizer, max_context)


@lru_cache(maxsize=16)
def offline_responder(transcripts: Path, characters: Path, character: str) -> OfflineResponder:
    """The offline responder for ``character``, built once per process."""
    from stnlp.runtime.data import load_characters, load_transcripts

    record = find_character(load_characters(characters).records, character)
    turns = build_turns(load_transcripts(transcripts).records, record)
    return OfflineResponder(record.name, turns)


@lru_cache(maxsize=64)
def character_prompt(characters: Path, character: str) -> str:
    """The system prompt for ``character`` from the characters file."""
    from stnlp.runtime.data import load_characters

    record = find_character(load_characters(characters).records, character)
    return system_prompt(record.name, record.description)


def as_messages(system: str, history: Sequence[dict], message: str) -> list[dict]:
    """System prompt, the chat so far (Gradio ``messages`` format) and the new message."""
    past = [
        {"role": m["role"], "content": str(m["content"])}
        for m in history
        if m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str)
    ]
    return [{"role": "system", "content": system}, *past, {"role": "user", "content": message}]
