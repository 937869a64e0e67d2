"""Chat inference: pick the live model source, load it once per process, stream replies.

Sources in order (:func:`resolve_sources`):

1. the latest trained adapter in the registry, **only where its recorded held-out judge score
   beats the untuned base's** (:func:`stnlp.runtime.baseline.judge`); it speaks only as the
   character it was trained on;
2. the untuned base model with the character's prompt (and, when retrieval is on, the
   character's most similar own lines): the adapter's own base where it is available here
   (the packaged SmolLM2-135M-Instruct in the demo), else the configured hub model if it is
   in the local Hugging Face cache;
3. the offline responder, which always works.

The tab and ``stnlp chat`` both go through :func:`reply_stream`, and both say which source
answers and why the ones before it do not.
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
from stnlp.plugins.chatbot.base import device_and_dtype, is_available
from stnlp.plugins.chatbot.base import load_pretrained as load_base_model
from stnlp.plugins.chatbot.catalog import PACKAGED, TINY
from stnlp.plugins.chatbot.data import (
    DESCRIPTION_WORDS,
    build_turns,
    character_names,
    character_persona,
    find_character,
    system_prompt,
    with_examples,
)
from stnlp.plugins.chatbot.offline import OfflineResponder
from stnlp.plugins.chatbot.packing import common_prefix_length, use_attention
from stnlp.plugins.chatbot.prompt_cache import PromptCache
from stnlp.plugins.chatbot.roomy_cache import with_room
from stnlp.runtime.data import SAMPLE_DIR

log = logging.getLogger(__name__)

RETRIEVED_LINES = 4
"""How many of the character's own lines retrieval puts into the prompt by default."""
STOP = "\n"
"""Generation stops at the first line break: a reply is one line of dialogue."""


@dataclass(frozen=True)
class Source:
    """Where a chatbot's replies come from: ``registry``, ``endpoint``, ``base`` or ``offline``."""

    kind: str
    label: str
    location: str = ""
    character: str = ""  # a registry adapter's character; empty: speaks as any character
    base_model: str = ""  # the model under a registry adapter, or the base source's model
    chat: Any = field(default=None, compare=False)  # an endpoint's EndpointChat

    def speaks_as(self, character: str) -> bool:
        """Whether this source can answer in ``character``'s voice."""
        return not self.character or self.character.casefold() == character.casefold()


OFFLINE = Source("offline", "offline responder (MiniLM retrieval of the character's lines)")


@dataclass(frozen=True)
class Chain:
    """A chatbot's sources in order of preference, and why any trained version was passed over."""

    sources: tuple[Source, ...]
    notes: tuple[str, ...] = ()

    def for_character(self, character: str) -> Source:
        """The first source that speaks as ``character``."""
        return next(source for source in self.sources if source.speaks_as(character))

    def describe(self) -> str:
        """The live source, the one other characters get, and the notes, in one line."""
        first = self.sources[0]
        text = first.label
        if first.character:
            others = next(source for source in self.sources[1:] if not source.character)
            text = f"{first.label}; other characters: {others.label}"
        return "; ".join([text, *self.notes])


def _labels(name: str) -> list[str]:
    """The speaker labels a model may put before ``name``'s reply: ``Mike Wheeler:``, ``Mike:``."""
    return [f"{label}:".casefold() for label in dict.fromkeys([name, *name.split()[:1]]) if label]


def clean_reply(text: str, name: str = "") -> str:
    """A generated reply as one line of dialogue: the first line, without a leading
    ``Name:`` label the model may imitate from the scene format."""
    line = text.strip().split("\n", 1)[0].strip()
    for label in _labels(name):
        if line.casefold().startswith(label):
            return line[len(label) :].strip()
    return line


def may_become_label(text: str, name: str) -> bool:
    """Whether a reply still being generated could turn out to start with ``name``'s label
    (``Ele`` may become ``Eleven:``): a stream holds such text back, so what it shows only
    ever grows."""
    start = text.strip().casefold()
    return bool(start) and any(label.startswith(start) for label in _labels(name))


def trim_history(tokenizer, messages: list[dict], max_tokens: int) -> list[dict]:
    """Drop the oldest turns after the system prompt until the rendered prompt fits."""
    system, rest = messages[:1], list(messages[1:])

    def size(msgs):
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    while len(rest) > 1 and size(system + rest) > max_tokens:
        rest = rest[2:] if rest[0]["role"] == "user" and len(rest) > 2 else rest[1:]
    return system + rest


def stop_token_ids(tokenizer) -> list[int]:
    """The end-of-turn token and every token whose text holds a line break: generation ends on
    any of them (cheaper than a stop string, which re-scans the vocabulary on every call)."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    breaks = [i for i, text in enumerate(texts) if STOP in text]
    return [tokenizer.eos_token_id, *breaks] if tokenizer.eos_token_id is not None else breaks


class ModelChat:
    """A causal LM (adapter or base) with its tokenizer; streams replies, or batches them."""

    def __init__(self, model, tokenizer, max_context: int):
        self.model, self.tokenizer, self.max_context = model, tokenizer, max_context
        self.stop_ids = stop_token_ids(tokenizer)

    def _prompt(self, messages: list[dict], max_new_tokens: int) -> str:
        budget = max(16, self.max_context - max_new_tokens)
        prompt = trim_history(self.tokenizer, messages, budget)
        return self.tokenizer.apply_chat_template(
            prompt, tokenize=False, add_generation_prompt=True
        )

    def _common(self, max_new_tokens: int) -> dict:
        pad = self.tokenizer.pad_token_id
        return dict(
            max_new_tokens=max_new_tokens,
            pad_token_id=self.tokenizer.eos_token_id if pad is None else pad,
            eos_token_id=self.stop_ids,
            begin_suppress_tokens=self.stop_ids,  # a reply never ends before it starts
        )

    def stream(
        self,
        messages: list[dict],
        max_new_tokens: int = 64,
        temperature: float = 0.7,
        top_p: float = 0.9,
        name: str = "",
    ) -> Iterator[str]:
        """Yield the reply as it grows (history trimmed to the context); the last value is the
        whole reply, cleaned by :func:`clean_reply` (possibly empty)."""
        from transformers import TextIteratorStreamer

        text = self._prompt(messages, max_new_tokens)
        inputs = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")
        inputs = inputs.to(self.model.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p}
        kwargs = dict(
            **inputs,
            **self._common(max_new_tokens),
            streamer=streamer,
            **(sampling if temperature > 0 else {"do_sample": False}),
        )
        worker = threading.Thread(target=self._generate, kwargs=kwargs, daemon=True)
        worker.start()
        raw, shown = "", None
        for piece in streamer:
            raw += piece
            reply = clean_reply(raw, name)
            if reply and reply != shown and not may_become_label(raw, name):
                shown = reply
                yield reply
        worker.join()
        final = clean_reply(raw, name)
        if shown is None or final != shown:
            yield final

    @torch.no_grad()
    def _generate(self, **kwargs) -> None:
        self.model.generate(**kwargs)

    @torch.no_grad()
    def replies(
        self,
        conversations: Sequence[list[dict]],
        max_new_tokens: int = 32,
        batch_size: int = 24,
        name: str = "",
        known: PromptCache | None = None,
    ) -> list[str]:
        """Greedy replies to many conversations, ``batch_size`` at a time (left-padded).

        A batch's common prompt prefix (the character's system prompt) is computed once and its
        key/value cache shared by every conversation of the batch (:meth:`_batch`); where
        ``known`` holds every prompt of a batch (the held-out loss pass computed them), its
        keys and values are used instead and no prompt is computed again.
        """
        prompts = [
            self.tokenizer(self._prompt(m, max_new_tokens), add_special_tokens=False)["input_ids"]
            for m in conversations
        ]
        out: list[str] = []
        for start in range(0, len(prompts), batch_size):
            new = self._batch(prompts[start : start + batch_size], max_new_tokens, known)
            decoded = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            out += [clean_reply(text, name) for text in decoded]
        return out

    def _batch(
        self, prompts: list[list[int]], max_new_tokens: int, known: PromptCache | None = None
    ) -> torch.Tensor:
        """The new tokens of greedy replies to ``prompts`` (token ids), one row each.

        Rows are ``shared prefix + padding + own suffix``: the prefix's cache is computed once
        and repeated over the rows (or every column but the last comes from ``known``), the
        attention mask hides the padding, and positions count real tokens only, so each row is
        decoded as if it were alone.
        """
        # each row keeps its last token: generation starts from one the cache has not seen
        limit = min(len(p) for p in prompts) - 1
        shared = common_prefix_length(prompts, limit) if len(prompts) > 1 else 0
        width = max(len(p) for p in prompts)
        # the token of its prompt each column of a row holds (None: padding)
        columns = [
            [*range(shared), *[None] * (width - len(p)), *range(shared, len(p))] for p in prompts
        ]
        common = self._common(max_new_tokens)
        pad = common["pad_token_id"]
        rows = zip(prompts, columns, strict=True)
        ids = [[pad if t is None else p[t] for t in row] for p, row in rows]
        mask = [[int(t is not None) for t in row] for row in columns]
        device = self.model.device
        inputs = {
            "input_ids": torch.tensor(ids, device=device),
            "attention_mask": torch.tensor(mask, device=device),
        }
        if known is not None and known.covers(prompts):
            cache = known.gather(prompts, [row[:-1] for row in columns])
            inputs["past_key_values"] = with_room(cache, max_new_tokens)
        elif shared:
            from transformers import DynamicCache

            cache = DynamicCache()
            self.model(input_ids=inputs["input_ids"][:1, :shared], past_key_values=cache)
            cache.batch_repeat_interleave(len(prompts))
            inputs["past_key_values"] = with_room(cache, max_new_tokens)
        generated = self.model.generate(**inputs, **common, do_sample=False)
        return generated[:, width:]


def for_generation(model):
    """``model`` (or the LM inside its PEFT wrapper) switched to SDPA attention, in eval mode:
    batched generation needs padding masks, which the packed-training attention has not."""
    use_attention(model, "sdpa")
    return model.eval()


def dataset_folder(settings, name: str) -> Path:
    """The store's current version of dataset ``name`` (S3: copied into a local cache) if it
    has one, else the sample.

    Call once per process (the tab does, when it is built), not per message.
    """
    from stnlp.runtime.datasets import dataset_folder as stored_folder

    return stored_folder(settings, name) or SAMPLE_DIR / name


def base_source(configured: str, trained_on: str | None = None) -> Source | None:
    """The untuned base model to chat with: the registry adapter's own base (the packaged
    SmolLM2 in the demo), else the configured hub model, whichever is available here first
    (never ``tiny``: random weights are no base to chat with)."""
    for model_id in dict.fromkeys(m for m in (trained_on, configured) if m):
        if model_id != TINY and is_available(model_id):
            where = "packaged" if model_id in PACKAGED else "local cache"
            return Source("base", f"untuned base {model_id} ({where})", model_id, "", model_id)
    return None


def resolve_sources(settings, model_name: str, base_model: str) -> Chain:
    """``model_name``'s sources in order of preference, without loading them.

    The registry's latest adapter, where :func:`stnlp.runtime.baseline.judge` says its
    held-out judge score beats the untuned base's; the untuned base (:func:`base_source`);
    and last the offline responder, which speaks as every character.
    """
    from stnlp.runtime.baseline import judge
    from stnlp.runtime.registry import fetch_latest

    chain, notes, trained_on = [], [], None
    local = fetch_latest(settings, model_name)
    if local is not None:
        info = artifacts.read_info(local.path)
        trained_on = info.base_model
        label = f"registry {model_name} version {local.version} (trained for {info.character})"
        verdict = judge(local.manifest, label=f"{model_name} version {local.version}")
        if verdict.use:
            chain.append(
                Source("registry", label, str(local.path), info.character, info.base_model)
            )
        else:
            notes.append(f"not using {label}: {verdict.reason}")
    from stnlp.runtime.endpoint import endpoint_source  # `stnlp deploy`: served, so first

    hosted = endpoint_source(settings, model_name)
    if hosted is not None:
        chain.insert(
            0, Source("endpoint", hosted.label, hosted.endpoint, hosted.character, chat=hosted)
        )
    base = base_source(base_model, trained_on)
    if base is not None:
        chain.append(base)
    return Chain((*chain, OFFLINE), tuple(notes))


def merge_for_serving(model):
    """Fold a LoRA adapter into a copy of the base weights in memory (fewer kernels per token).

    The published artifact stays an unmerged adapter; this is only the serving copy.
    """
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


@lru_cache(maxsize=4)
def load_chat(source: Source, max_context: int = 1024) -> ModelChat:
    """Load a registry or base source once per process (an endpoint's is already open)."""
    if source.kind == "endpoint":
        return source.chat
    device, dtype = device_and_dtype()
    if source.kind == "registry":
        model, tokenizer, info = artifacts.load(Path(source.location), dtype)
        model, max_context = merge_for_serving(model), info.max_context
    else:
        model, tokenizer = load_base_model(source.location, dtype)
    return ModelChat(model.to(device).eval(), tokenizer, max_context)


@lru_cache(maxsize=16)
def offline_responder(transcripts: Path, characters: Path, character: str) -> OfflineResponder:
    """The offline responder for ``character`` (any name the index knows), built once."""
    from stnlp.runtime.data import load_characters, load_transcripts

    records = load_characters(characters).records
    record = find_character(records, character)
    turns = build_turns(load_transcripts(transcripts).records, record, character_names(records))
    return OfflineResponder(record.name, turns)


@lru_cache(maxsize=64)
def character_prompt(characters: Path, character: str) -> str:
    """The system prompt for ``character`` from the characters file."""
    from stnlp.runtime.data import load_characters

    record = find_character(load_characters(characters).records, character)
    return system_prompt(record.name, character_persona(record, DESCRIPTION_WORDS))


def as_messages(system: str, history: Sequence[dict], message: str) -> list[dict]:
    """System prompt, the chat so far (Gradio ``messages`` format) and the new message."""
    past = [
        {"role": m["role"], "content": str(m["content"])}
        for m in history
        if m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str)
    ]
    return [{"role": "system", "content": system}, *past, {"role": "user", "content": message}]


EMPTY_REPLY = "(no reply: the model ended its turn at once; try a higher temperature)"


def reply_stream(
    source: Source,
    folders: dict[str, Path],
    character: str,
    message: str,
    history: Sequence[dict] = (),
    retrieval: bool = True,
    temperature: float = 0.7,
    top_p: float = 0.9,
    max_new_tokens: int = 64,
) -> Iterator[str]:
    """Stream ``source``'s reply in ``character``'s voice (``folders``: dataset -> its folder).

    A model gets the character's system prompt (the adapter's own, as trained) and, with
    ``retrieval``, the character's most similar own lines from the offline responder's index.
    An empty reply is never silent: it says so.
    """
    responder = offline_responder(folders["transcripts"], folders["characters"], character)
    if source.kind == "offline":
        yield responder.reply(message)
        return
    if source.kind == "registry":
        info = artifacts.read_info(Path(source.location))
        system, k = info.system_prompt, info.retrieved_lines or RETRIEVED_LINES
    else:
        system, k = character_prompt(folders["characters"], character), RETRIEVED_LINES
    examples = responder.similar(message, k) if retrieval else ()
    messages = as_messages(with_examples(system, examples), history, message)
    chat = load_chat(source)
    last = ""
    for last in chat.stream(messages, int(max_new_tokens), temperature, top_p, responder.character):
        if last:
            yield last
    if not last:
        yield EMPTY_REPLY
