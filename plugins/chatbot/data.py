"""Conversation samples for one character, from the transcripts and the characters file.

Each line the character speaks becomes one sample: a system prompt from the character's
description, the preceding lines of the scene as the user turn, and the character's line as
the assistant turn, rendered with the tokenizer's own chat template. Only the assistant turn
carries labels. Whole episodes are held out for evaluation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stnlp.common.errors import UserError
from stnlp.plugins.chatbot.packing import IGNORE, Sample
from stnlp.runtime.logs import event

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Turn:
    """One conversation: messages for the chat template, the reply, and the episode it is from."""

    messages: list[dict[str, str]]
    reply: str
    episode: str


@dataclass(frozen=True)
class Split:
    """Training and held-out conversations of one character."""

    character: str
    train: list[Turn]
    held_out: list[Turn]


def system_prompt(name: str, description: str) -> str:
    """The system prompt that puts the model in character."""
    return (
        f"You are {name} from the TV series Stranger Things. {description.strip()} "
        f"Reply as {name} would, in one or two short sentences."
    )


def find_character(characters: Sequence, name: str):
    """The character record called ``name`` (case-insensitive), or a UserError naming the known."""
    for character in characters:
        if character.name.casefold() == name.casefold():
            return character
    known = ", ".join(sorted(c.name for c in characters)) or "none"
    raise UserError(f"character {name!r} is not in the characters file (known: {known})")


def build_turns(lines: Sequence, character, context_lines: int = 2) -> list[Turn]:
    """One :class:`Turn` per line ``character`` speaks that has at least one line before it."""
    prompt = system_prompt(character.name, character.description)
    turns = []
    by_episode: dict[str, list] = {}
    for line in lines:
        by_episode.setdefault(f"S{line.season:02d}E{line.episode:02d}", []).append(line)
    for episode, episode_lines in sorted(by_episode.items()):
        for index, line in enumerate(episode_lines):
            if line.name.casefold() != character.name.casefold() or index == 0:
                continue
            before = episode_lines[max(0, index - context_lines) : index]
            user = "\n".join(f"{b.name}: {b.line}" for b in before)
            messages = [
                {"role": "system", "content": prompt},
                {"role": "user", "content": user},
            ]
            turns.append(Turn(messages, line.line, episode))
    return turns


def split_by_episode(
    character: str, turns: list[Turn], held_out_fraction: float, min_lines: int
) -> Split:
    """Hold out the last episodes (about ``held_out_fraction`` of them) for evaluation.

    Fewer than ``min_lines`` turns, or fewer than two episodes, is a UserError with the count.
    """
    episodes = sorted({t.episode for t in turns})
    if len(turns) < min_lines or len(episodes) < 2:
        raise UserError(
            f"character {character!r} has {len(turns)} usable lines in {len(episodes)} "
            f"episode(s); training needs at least {min_lines} lines across 2 episodes"
        )
    count = min(len(episodes) - 1, max(1, round(len(episodes) * held_out_fraction)))
    held = set(episodes[-count:])
    return Split(
        character,
        [t for t in turns if t.episode not in held],
        [t for t in turns if t.episode in held],
    )


def encode(tokenizer, turn: Turn) -> Sample:
    """Render ``turn`` with the chat template; labels only on the assistant reply's tokens."""
    prompt = tokenizer.apply_chat_template(
        turn.messages, tokenize=False, add_generation_prompt=True
    )
    full = tokenizer.apply_chat_template(
        [*turn.messages, {"role": "assistant", "content": turn.reply}], tokenize=False
    )
    if not full.startswith(prompt):
        raise UserError("the chat template does not render the prompt as a prefix of the reply")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    reply_ids = tokenizer(full[len(prompt) :], add_special_tokens=False)["input_ids"]
    return Sample(
        input_ids=prompt_ids + reply_ids,
        labels=[IGNORE] * len(prompt_ids) + reply_ids,
        episode=turn.episode,
    )


def encode_all(tokenizer, turns: Sequence[Turn], max_tokens: int) -> list[Sample]:
    """Encode turns, dropping (and logging how many) samples longer than ``max_tokens``."""
    samples = [encode(tokenizer, t) for t in turns]
    kept = [s for s in samples if len(s) <= max_tokens]
    if len(kept) < len(samples):
        event(log, "dropped long samples", dropped=len(samples) - len(kept), max_tokens=max_tokens)
    return kept


def load_split(
    transcripts: Path,
    characters: Path,
    character: str,
    context_lines: int = 2,
    held_out_fraction: float = 0.2,
    min_lines: int = 20,
) -> Split:
    """Load the datasets with the runtime's loaders and split ``character``'s conversations."""
    from stnlp.runtime.data import load_characters, load_transcripts

    lines = load_transcripts(transcripts).records
    record = find_character(load_characters(characters).records, character)
    turns = build_turns(lines, record, context_lines)
    return split_by_episode(record.name, turns, held_out_fraction, min_lines)
