"""Chatbot samples: chat-template rendering, assistant-only labels, episode split, errors."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from stnlp.common.errors import UserError
from stnlp.plugins.chatbot.data import encode, encode_all, load_split
from stnlp.plugins.chatbot.packing import IGNORE
from stnlp.plugins.chatbot.tiny import tiny_tokenizer

ELEVEN_LINES = [
    "Friends don't lie.",
    "Mouth breather.",
    "I can find him. I can find Will.",
    "Bitchin'.",
    "Papa?",
    "I'm not a weirdo.",
    "Mike, I want to go home.",
    "Eggos. I want Eggos.",
    "He is hiding. He is safe, for now.",
    "I dumped your ass.",
    "The gate. I opened it.",
    "Promise?",
]
OTHERS = {
    "Mike": ["Are you okay?", "She's our friend and she's crazy!", "We never would've made it."],
    "Dustin": ["Why are you keeping this curiosity door locked?", "She's our friend!", "Nope."],
    "Hopper": ["Mornings are for coffee and contemplation.", "Stay in the house.", "Kid."],
}


def write_dataset(root: Path, episodes: int = 4, eleven_per_episode: int = 8) -> Path:
    """A small transcripts + characters dataset under ``root``; returns ``root``."""
    rng = random.Random(7)
    (root / "transcripts").mkdir(parents=True)
    (root / "characters").mkdir()
    for episode in range(1, episodes + 1):
        with (root / "transcripts" / f"S01E{episode:02d}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["name", "line"])
            for _ in range(eleven_per_episode):
                other = rng.choice(sorted(OTHERS))
                writer.writerow([other, rng.choice(OTHERS[other])])
                writer.writerow(["Eleven", rng.choice(ELEVEN_LINES)])
    records = [
        {"character_name": "Eleven", "description": "A girl with psychokinetic powers."},
        {"character_name": "Mike", "description": "Eleven's loyal friend."},
    ]
    text = "\n".join(json.dumps(r) for r in records) + "\n"
    (root / "characters" / "characters.jsonl").write_text(text)
    return root


def _tokenizer(split):
    texts = [m["content"] for t in split.train for m in t.messages] + [t.reply for t in split.train]
    return tiny_tokenizer(texts)


def test_labels_cover_only_the_assistant_reply(tmp_path):
    root = write_dataset(tmp_path)
    split = load_split(root / "transcripts", root / "characters", "eleven", min_lines=10)
    tokenizer = _tokenizer(split)
    turn = split.train[0]
    sample = encode(tokenizer, turn)
    labelled = [
        t for t, label in zip(sample.input_ids, sample.labels, strict=True) if label != -100
    ]
    assert tokenizer.decode(labelled).startswith(turn.reply)
    first = sample.labels.index(next(lab for lab in sample.labels if lab != IGNORE))
    prompt = tokenizer.decode(sample.input_ids[:first])
    assert turn.messages[0]["content"] in prompt and turn.messages[1]["content"] in prompt
    assert turn.reply not in prompt
    assert "psychokinetic" in turn.messages[0]["content"]


def test_held_out_split_is_by_whole_episode(tmp_path):
    root = write_dataset(tmp_path, episodes=5)
    split = load_split(
        root / "transcripts", root / "characters", "Eleven", held_out_fraction=0.2, min_lines=10
    )
    train_eps = {t.episode for t in split.train}
    held_eps = {t.episode for t in split.held_out}
    assert held_eps == {"S01E05"} and not train_eps & held_eps
    assert all(t.messages[1]["content"] for t in split.train)
    assert len(encode_all(_tokenizer(split), split.held_out, 512)) == len(split.held_out)


def test_too_few_lines_names_the_count(tmp_path):
    root = write_dataset(tmp_path, episodes=2, eleven_per_episode=3)
    with pytest.raises(UserError, match=r"'Eleven' has 6 usable lines in 2 episode\(s\)"):
        load_split(root / "transcripts", root / "characters", "Eleven", min_lines=20)


def test_unknown_character_lists_the_known(tmp_path):
    root = write_dataset(tmp_path)
    with pytest.raises(UserError, match="known: Eleven, Mike"):
        load_split(root / "transcripts", root / "characters", "Demogorgon")
