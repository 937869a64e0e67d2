"""Conversation samples for one character, from the transcripts and the characters file.

Each line the character speaks becomes one sample: a system prompt from the character's record
(its description, capped to a word budget, plus its personality and speaking style when the
file has them), the preceding lines of the scene as the user turn, and the character's line as
the assistant turn, rendered with the tokenizer's own chat template. Only the assistant turn
carries labels. Whole episodes are held out for evaluation.

Which transcript lines are the character's is decided by the shared name index
(:class:`stnlp.runtime.data.names.CharacterNames`): ``MIKE``, ``Mike`` and ``Mike Wheeler`` are
all Mike Wheeler's, and ``--set character=Mike`` finds him too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from stnlp.common.errors import UserError
from stnlp.plugins.chatbot.packing import IGNORE, Sample
from stnlp.runtime.data.names import CharacterNames
from stnlp.runtime.logs import event

log = logging.getLogger(__name__)

DESCRIPTION_WORDS = 120
"""How many words of a character's description go into its system prompt by default."""
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Turn:
    """One conversation: who speaks and as whom (``persona``), the scene so far (``user``),
    the character's real reply and its episode.

    ``examples`` are the character's own lines retrieved into the prompt (none by default).
    """

    name: str
    persona: str
    user: str
    reply: str
    episode: str
    examples: tuple[str, ...] = field(default=())

    @property
    def system(self) -> str:
        """The system prompt without the retrieved examples."""
        return system_prompt(self.name, self.persona)

    @property
    def messages(self) -> list[dict[str, str]]:
        """The chat-template messages: system (with any examples) and user."""
        return [
            {"role": "system", "content": with_examples(self.system, self.examples)},
            {"role": "user", "content": self.user},
        ]


@dataclass(frozen=True)
class Split:
    """Training and held-out conversations of one character."""

    character: str
    train: list[Turn]
    held_out: list[Turn]

    @property
    def held_out_episodes(self) -> list[str]:
        """The held-out episodes, in order (``S01E04``, ...)."""
        return sorted({t.episode for t in self.held_out})


def truncate_words(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` words, at a sentence end where one is close enough."""
    words = text.split()
    if len(words) <= limit:
        return " ".join(words)
    kept = ""
    for sentence in _SENTENCE_END.split(" ".join(words)):
        candidate = f"{kept} {sentence}".strip()
        if len(candidate.split()) > limit:
            break
        kept = candidate
    if len(kept.split()) >= limit // 2:
        return kept
    return " ".join(words[:limit]) + " ..."


def character_persona(record, description_words: int = DESCRIPTION_WORDS) -> str:
    """The character's description (at most ``description_words`` words), personality and
    speaking style, as one paragraph for the system prompt."""
    parts = [truncate_words(record.description, description_words)]
    fields = getattr(record, "fields", None) or {}
    for key, label in (("personality", "Personality"), ("speaking_style", "Speaking style")):
        value = fields.get(key)
        if isinstance(value, str) and value.strip():
            parts.append(f"{label}: {truncate_words(value, description_words // 2)}")
    return " ".join(p for p in parts if p)


def system_prompt(name: str, description: str) -> str:
    """The system prompt that puts the model in character."""
    return (
        f"You are {name} from the TV series Stranger Things. {description.strip()} "
        f"Reply as {name} would, in one or two short sentences."
    )


def with_examples(system: str, examples: Sequence[str]) -> str:
    """``system`` followed by the character's own retrieved lines, one per line."""
    if not examples:
        return system
    listed = "\n".join(f"- {line}" for line in examples)
    return f"{system}\nThings you have said in similar moments:\n{listed}"


def character_names(characters: Sequence) -> CharacterNames:
    """The name index of the characters file's records."""
    return CharacterNames.from_records(characters)


def find_character(characters: Sequence, name: str):
    """The record ``name`` refers to (full name, first name, alias; any case), or a UserError
    naming the closest names."""
    canonical = character_names(characters).find(name)
    return next(c for c in characters if " ".join(c.name.split()) == canonical)


def build_turns(
    lines: Sequence,
    character,
    names: CharacterNames,
    context_lines: int = 2,
    description_words: int = DESCRIPTION_WORDS,
) -> list[Turn]:
    """One :class:`Turn` per line ``character`` speaks that has at least one line before it.

    A line is the character's when its speaker label resolves to them (``ELEVEN``, ``El``).
    """
    canonical = names.find(character.name)
    described = character_persona(character, description_words)
    turns = []
    by_episode: dict[str, list] = {}
    for line in lines:
        by_episode.setdefault(f"S{line.season:02d}E{line.episode:02d}", []).append(line)
    for episode, episode_lines in sorted(by_episode.items()):
        for index, line in enumerate(episode_lines):
            if index == 0 or names.speaker(line.name) != canonical:
                continue
            before = episode_lines[max(0, index - context_lines) : index]
            user = "\n".join(f"{b.name}: {b.line}" for b in before)
            turns.append(Turn(character.name, described, user, line.line, episode))
    return turns


def speaking_characters(transcripts: Path, characters: Path) -> list[str]:
    """The characters file's names that speak at least one line in the transcripts, in the
    file's order: the characters one can chat with (not a wiki page grouping minor roles)."""
    from stnlp.runtime.data import load_characters, load_transcripts

    records = load_characters(characters).records
    names = character_names(records)
    speakers = {names.speaker(line.name) for line in load_transcripts(transcripts).records}
    return [name for name in names.names if name in speakers]


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
    messages = turn.messages
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": turn.reply}], tokenize=False
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


def shorten(turn: Turn) -> Turn | None:
    """``turn`` one step shorter, or ``None`` when only the reply and one scene line are left.

    In order: drop a retrieved example, halve the character persona, drop the oldest
    scene line. The reply is never cut.
    """
    if turn.examples:
        return replace(turn, examples=turn.examples[:-1])
    words = len(turn.persona.split())
    if words > 8:
        return replace(turn, persona=truncate_words(turn.persona, words // 2))
    scene = turn.user.split("\n")
    if len(scene) > 1:
        return replace(turn, user="\n".join(scene[1:]))
    return None


def encode_all(tokenizer, turns: Sequence[Turn], max_tokens: int) -> list[Sample]:
    """Encode turns to at most ``max_tokens`` each: a long one is shortened (:func:`shorten`),
    so a long description never costs a sample. Only a turn whose reply and last scene line
    alone exceed the limit is dropped; both counts are logged."""
    samples, shortened, dropped = [], 0, 0
    for turn in turns:
        sample, current = encode(tokenizer, turn), turn
        while len(sample) > max_tokens and current is not None:
            current = shorten(current)
            if current is not None:
                sample = encode(tokenizer, current)
        if len(sample) > max_tokens:
            dropped += 1
            continue
        shortened += current is not turn
        samples.append(sample)
    if shortened or dropped:
        event(log, "long samples", shortened=shortened, dropped=dropped, max_tokens=max_tokens)
    return samples


def load_split(
    transcripts: Path,
    characters: Path,
    character: str,
    context_lines: int = 2,
    held_out_fraction: float = 0.2,
    min_lines: int = 20,
    description_words: int = DESCRIPTION_WORDS,
) -> Split:
    """Load the datasets with the runtime's loaders and split ``character``'s conversations."""
    from stnlp.runtime.data import load_characters, load_transcripts

    lines = load_transcripts(transcripts).records
    records = load_characters(characters).records
    names = character_names(records)
    record = find_character(records, character)
    turns = build_turns(lines, record, names, context_lines, description_words)
    return split_by_episode(record.name, turns, held_out_fraction, min_lines)
