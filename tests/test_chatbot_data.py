"""Chatbot samples: chat-template rendering, assistant-only labels, episode split, names, errors."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from stnlp.common.errors import UserError
from stnlp.plugins.chatbot.data import (
    Turn,
    encode,
    encode_all,
    load_split,
    speaking_characters,
    truncate_words,
)
from stnlp.plugins.chatbot.packing import IGNORE
from stnlp.plugins.chatbot.tiny import tiny_tokenizer

EVAL_CHARACTERS = Path(__file__).resolve().parents[1] / "data" / "eval" / "characters.jsonl"

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


def write_dataset(
    root: Path, episodes: int = 4, eleven_per_episode: int = 8, labels: dict | None = None
) -> Path:
    """A small transcripts + characters dataset under ``root``; returns ``root``.

    ``labels`` maps a speaker to the labels the transcripts cycle through for them.
    """
    rng = random.Random(7)
    cycle = {name: list(written) for name, written in (labels or {}).items()}
    (root / "transcripts").mkdir(parents=True)
    (root / "characters").mkdir()
    for episode in range(1, episodes + 1):
        with (root / "transcripts" / f"S01E{episode:02d}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["name", "line"])
            for _ in range(eleven_per_episode):
                other = rng.choice(sorted(OTHERS))
                writer.writerow([_label(cycle, other), rng.choice(OTHERS[other])])
                writer.writerow([_label(cycle, "Eleven"), rng.choice(ELEVEN_LINES)])
    records = [
        {"character_name": "Eleven", "description": "A girl with psychokinetic powers."},
        {"character_name": "Mike", "description": "Eleven's loyal friend."},
    ]
    text = "\n".join(json.dumps(r) for r in records) + "\n"
    (root / "characters" / "characters.jsonl").write_text(text)
    return root


def _label(cycle: dict[str, list[str]], name: str) -> str:
    """The next label ``name`` is written with (round robin), or the name itself."""
    if name not in cycle:
        return name
    cycle[name].append(cycle[name].pop(0))
    return cycle[name][-1]


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


def test_a_misspelt_character_names_the_close_match(tmp_path):
    root = write_dataset(tmp_path)
    with pytest.raises(UserError, match=r"'Elevn'.*did you mean Eleven\?"):
        load_split(root / "transcripts", root / "characters", "Elevn")


def _wiki_characters(root: Path) -> None:
    """Replace the dataset's characters file with the wiki-style evaluation one."""
    (root / "characters" / "characters.jsonl").write_text(EVAL_CHARACTERS.read_text())


def test_first_name_and_every_speaker_label_find_the_character(tmp_path):
    """The characters file says "Mike Wheeler"; transcripts say MIKE, Mike, Mike Wheeler."""
    labels = {"Eleven": ["ELEVEN", "Eleven", "El"], "Mike": ["MIKE", "Mike", "Mike Wheeler"]}
    root = write_dataset(tmp_path, eleven_per_episode=10, labels=labels)
    _wiki_characters(root)
    said = {"Mike": [], "Eleven": []}  # what each wrote, read back from the files
    for path in sorted((root / "transcripts").glob("*.csv")):
        with path.open() as handle:
            for index, row in enumerate(csv.DictReader(handle)):
                for name, written in labels.items():
                    if index and row["name"] in written:
                        said[name].append((row["name"], row["line"]))
    split = load_split(root / "transcripts", root / "characters", "mike", min_lines=5)
    assert split.character == "Mike Wheeler"
    assert [t.reply for t in split.train + split.held_out] == [line for _, line in said["Mike"]]
    assert {label for label, _ in said["Mike"]} == set(labels["Mike"])
    eleven = load_split(root / "transcripts", root / "characters", "ELEVEN", min_lines=5)
    assert len(eleven.train) + len(eleven.held_out) == len(said["Eleven"]) == 4 * 10


def test_a_long_wiki_description_is_truncated_never_a_dropped_sample(tmp_path):
    """Eleven's wiki description is over 1,000 words: no sample may be lost to it."""
    root = write_dataset(tmp_path)
    _wiki_characters(root)
    description = json.loads(EVAL_CHARACTERS.read_text().splitlines()[0])["description"]
    assert len(description.split()) > 1000
    split = load_split(
        root / "transcripts", root / "characters", "Eleven", min_lines=10, description_words=2000
    )
    tokenizer = _tokenizer(split)
    samples = encode_all(tokenizer, split.train, 512)
    assert len(samples) == len(split.train) and all(len(s) <= 512 for s in samples)
    for sample, turn in zip(samples, split.train, strict=True):
        labelled = [t for t, label in zip(sample.input_ids, sample.labels, strict=True)
                    if label != IGNORE]  # fmt: skip
        assert tokenizer.decode(labelled).startswith(turn.reply)  # the reply is never cut
    capped = load_split(root / "transcripts", root / "characters", "Eleven", min_lines=10)
    assert description.split(". ")[0] in capped.train[0].system
    assert len(capped.train[0].persona.split()) < 250


def test_shortening_drops_examples_and_persona_before_the_scene(tmp_path):
    root = write_dataset(tmp_path)
    split = load_split(root / "transcripts", root / "characters", "Eleven", min_lines=10)
    tokenizer = _tokenizer(split)
    long = Turn("Eleven", " ".join(["strange"] * 300), "Mike: Are you okay?", "Promise?", "S01E01",
                examples=("Friends don't lie.",) * 4)  # fmt: skip
    [sample] = encode_all(tokenizer, [long], 120)
    text = tokenizer.decode(sample.input_ids)
    assert len(sample) <= 120 and "Mike: Are you okay?" in text and "Promise?" in text
    assert "Friends don't lie." not in text


def test_truncate_words_stops_at_a_sentence_end():
    text = "Eleven has powers. She escaped the lab. She found friends in Hawkins and stayed."
    assert truncate_words(text, 8) == "Eleven has powers. She escaped the lab."
    assert truncate_words(text, 100) == text
    assert truncate_words("one two three four five six", 3) == "one two three ..."


def test_only_characters_who_speak_can_be_chatted_with(tmp_path):
    """A wiki page grouping minor roles, or a character with no line, is not offered for chat."""
    root = write_dataset(tmp_path)
    extra = [
        {"character_name": "Minor Characters/Season 2", "description": "People seen once."},
        {"character_name": "Dustin Henderson", "description": "Speaks as DUSTIN."},
        {"character_name": "Billy Hargrove", "description": "Never speaks in these episodes."},
    ]
    with (root / "characters" / "characters.jsonl").open("a") as handle:
        handle.write("\n".join(json.dumps(r) for r in extra) + "\n")
    chat = speaking_characters(root / "transcripts", root / "characters")
    assert chat == ["Eleven", "Mike", "Dustin Henderson"]
