"""In-character quality on the held-out episodes, for the trainer and for ``stnlp eval``.

For each model variant (the trained adapter and the untuned base, each with or without the
character's retrieved lines in the prompt) on the character's held-out episodes:

- ``loss`` / ``perplexity``: mean cross-entropy per token of the character's real replies;
- ``rouge_l`` / ``bleu``: greedy replies against the character's actual next line;
- ``judge_score``: the fraction of replies the speaker judge (:mod:`.judge`) attributes to
  the character.

The offline responder gets the reply metrics too (it has no loss), and the actual next lines
get a judge score: the ceiling the judge allows on these episodes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from stnlp.plugins.chatbot.data import Split, Turn, character_names, encode_all
from stnlp.plugins.chatbot.infer import ModelChat, for_generation
from stnlp.plugins.chatbot.judge import SpeakerJudge
from stnlp.plugins.chatbot.loss import held_out_loss
from stnlp.plugins.chatbot.lower_layers import LowerLayers, lowest_adapted_layer
from stnlp.plugins.chatbot.offline import OfflineResponder
from stnlp.plugins.chatbot.packing import ATTENTION, use_attention
from stnlp.plugins.chatbot.prompt_cache import PromptCache
from stnlp.plugins.chatbot.quality import bleu, rouge_l
from stnlp.runtime.data.names import CharacterNames

ADAPTER, BASE, OFFLINE, REFERENCE = "adapter", "untuned base", "offline responder", "actual line"
RETRIEVAL = " + retrieval"


@dataclass(frozen=True)
class HeldOut:
    """The held-out turns with and without retrieved lines, and what scores replies to them."""

    split: Split
    turns: list[Turn]  # without retrieved lines
    retrieved: list[Turn]  # the same turns with the character's retrieved lines
    responder: OfflineResponder  # built from the training episodes only
    judge_lines: list  # the training episodes' transcript lines
    names: CharacterNames

    @property
    def references(self) -> list[str]:
        """The character's actual next lines."""
        return [t.reply for t in self.turns]

    def offline_replies(self) -> list[str]:
        """The offline responder's answers to the held-out scenes."""
        return [self.responder.reply(t.user) for t in self.turns]

    def description(self) -> str:
        """The split, as the held-out record names it."""
        episodes = ", ".join(self.split.held_out_episodes)
        return f"held-out episodes {episodes} ({len(self.turns)} lines of {self.split.character})"


def prepare(
    split: Split,
    transcripts: Path,
    characters: Path,
    retrieved_lines: int,
    limit: int,
    responder: OfflineResponder | None = None,
) -> HeldOut:
    """The first ``limit`` held-out turns, with and without the character's retrieved lines,
    and the training episodes' transcript lines the judge learns from.

    ``responder``: the offline responder over ``split.train``, where the caller has one
    already (its index embeds every training turn); else it is built here.
    """
    from stnlp.runtime.data import load_characters, load_transcripts

    turns = split.held_out[:limit]
    responder = responder or OfflineResponder(split.character, split.train)
    retrieved = responder.with_examples(turns, max(retrieved_lines, 1), leave_out_own=False)
    names = character_names(load_characters(characters).records)
    train_episodes = {t.episode for t in split.train}
    lines = [
        line
        for line in load_transcripts(transcripts).records
        if f"S{line.season:02d}E{line.episode:02d}" in train_episodes
    ]
    return HeldOut(split, turns, retrieved, responder, lines, names)


@contextmanager
def _merged(model) -> Iterator[None]:
    """``model``'s LoRA weights folded into the base weights for a while: the same function
    with a third of the matrix products per layer (decoding on a CPU is bound by their count)."""
    model.merge_adapter()
    try:
        yield
    finally:
        model.unmerge_adapter()


def _adapter(model, on: bool):
    """A context with ``model``'s LoRA adapter on (merged) or off (the untuned base)."""
    if not hasattr(model, "disable_adapter"):
        return nullcontext()
    return _merged(model) if on else model.disable_adapter()


ROW_STEPS = 4
"""A held-out packed row holds up to this many training steps' tokens: a pass without
gradients keeps no activations for a backward pass, and each row lays the samples' shared
system prompt down only once (the local preset's 24 held-out samples: one row of 2,263 tokens
instead of four of 2,704 in all)."""


def mean_loss(
    model,
    tokenizer,
    turns: Sequence[Turn],
    params: dict,
    device,
    keep: PromptCache | None = None,
    lower: LowerLayers | None = None,
) -> float:
    """Held-out loss per reply token of ``turns`` (the packed-training attention, rows of
    :data:`ROW_STEPS` steps); ``keep`` receives the prompts' keys and values
    (:mod:`.prompt_cache`); ``lower`` shares the unadapted layers with another variant's pass
    over the same turns (:mod:`.lower_layers`)."""
    samples = encode_all(tokenizer, turns, int(params["max_sample_tokens"]))
    budget = ROW_STEPS * int(params["tokens_per_step"])
    return held_out_loss(model, samples, budget, device, keep=keep, lower=lower)


def model_replies(
    model,
    tokenizer,
    held: HeldOut,
    params: dict,
    device,
    variants: Sequence[tuple[str, bool, bool, bool]],
    max_context: int,
) -> tuple[dict[str, float], dict[str, list[str]]]:
    """Greedy replies for each ``(row name, adapter on, retrieval on, loss too)`` variant of
    ``model`` (a PEFT model, or a plain one for base rows only), and the losses asked for.

    Per variant: the loss first (the packed-training attention), keeping every prompt's keys
    and values, then the replies (SDPA, batched), which start from them instead of running
    the prompts again. A second loss pass over the same turns runs only the adapted layers
    (:mod:`.lower_layers`).
    """
    chat = ModelChat(model, tokenizer, max_context)
    losses, replies = {}, {}
    first = lowest_adapted_layer(model)
    lower = LowerLayers(first) if first > 0 else None
    for name, adapter, retrieval, with_loss in variants:
        turns = held.retrieved if retrieval else held.turns
        known = PromptCache() if with_loss else None
        with _adapter(model, adapter):
            if with_loss:
                use_attention(model, ATTENTION)
                losses[name] = mean_loss(model, tokenizer, turns, params, device, known, lower)
            for_generation(model)
            replies[name] = chat.replies(
                [t.messages for t in turns],
                int(params["reply_tokens"]),
                name=held.split.character,
                known=known,
            )
    return losses, replies


def score(
    held: HeldOut, losses: dict[str, float], replies: dict[str, list[str]]
) -> dict[str, dict]:
    """One row of figures per source, plus the actual lines' judge score (the ceiling).

    The judge is fitted here, on the training episodes' lines minus every line any source
    replied with verbatim, so no source is judged on text the judge learnt from.
    """
    candidates = [text for texts in replies.values() for text in texts]
    judge = SpeakerJudge.fit(held.judge_lines, held.names, exclude=candidates)
    references, character = held.references, held.split.character
    rows = {}
    for name, texts in replies.items():
        loss = losses.get(name)
        rows[name] = {
            "loss": None if loss is None else round(loss, 4),
            "perplexity": None if loss is None else round(math.exp(min(loss, 50)), 2),
            "rouge_l": rouge_l(texts, references),
            "bleu": bleu(texts, references),
            "judge_score": round(judge.score(texts, character), 4),
        }
    rows[REFERENCE] = {"judge_score": round(judge.score(references, character), 4)}
    return rows
