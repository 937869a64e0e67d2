"""Character mentions against the hand-labelled set, and the hazards of a wiki characters file.

``data/eval/mentions.jsonl`` (577 sentences, 332 labelled mentions) is the outside truth: its
labelling rules are in ``data/eval/README.md``; the scoring is ``bench/network/eval_mentions.py``
(docs/benchmarks.md has the figures).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from stnlp.plugins.network.mentions import MentionFinder, characters_per_text, mask
from stnlp.plugins.network.ner import load_ner
from stnlp.plugins.network.params import NetworkParams
from stnlp.plugins.network.pipeline import build_network
from stnlp.runtime.data import load_characters, load_subtitles
from stnlp.runtime.data.names import CharacterNames

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT / "data" / "eval"


def _bench():
    spec = importlib.util.spec_from_file_location(
        "eval_mentions", ROOT / "bench" / "network" / "eval_mentions.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def finder():
    names = CharacterNames.from_records(load_characters(EVAL / "characters.jsonl").records)
    return MentionFinder(names, load_ner("en_core_web_sm"))


def test_precision_and_recall_on_the_hand_labelled_set(finder):
    bench = _bench()
    _, rows = bench.load_eval(EVAL)
    result = bench.score(finder, rows)
    assert result["labelled"] == 332
    assert result["precision"] >= 0.95, result["errors"]
    assert result["recall"] >= 0.90, result["errors"]


def test_scoring_counts_a_wrong_character_as_both_errors():
    bench = _bench()
    gold = [{"start": 0, "end": 6, "text": "Hopper", "character": "Eleven"}]
    wrong = bench.Mention(0, 6, "Hopper", "Jim Hopper")
    assert bench.match([wrong], gold) == (0, [wrong], gold)
    right = bench.Mention(0, 6, "Hopper", "Eleven")
    assert bench.match([right, right], gold) == (1, [right], [])  # one-to-one


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("MIKE: Okay, party, what do you do?", set()),  # a speaker label is no mention
        ("- DUSTIN: Guys! - LUCAS: What?", set()),
        ("I don't know MIKE: Go home.", set()),  # captions joined: a label inside the text
        ("MAN 2: Unit two, come in.", set()),  # not "Minor Characters/Season 2", not Two
        ("Four, three, two, one!", set()),
        ("Welcome to Hawkins.", set()),  # not "Hawkins Head of Security"
        ("Hospital gowns and rich parents. Freak! Tech support, please.", set()),
        ("PRINCIPAL: Settle down.", set()),
        ("El, it's me. Jane, come out.", {"Eleven"}),
        ("Tell Hopper the troopers are here.", {"Jim Hopper"}),
        ("Chief Hopper wants Mrs. Wheeler at the station.", {"Jim Hopper", "Karen Wheeler"}),
        ("Will you stop? It's my own free will.", set()),
        ("We have to stay with Will.", {"Will Byers"}),
        ("Billy's mother left a long time ago.", {"Billy Hargrove"}),
        ("Two never came back. Two tickets, please.", {"Two"}),
        ("She reads Nancy Drew books. We saw Mad Max.", set()),
        ("The Byers house is dark.", set()),
        ("<i>Nancy, come in.</i>", {"Nancy Wheeler"}),
    ],
)
def test_hazards(finder, text, expected):
    assert characters_per_text(finder.find([text])) == [frozenset(expected)]


def test_mask_keeps_offsets_and_blanks_labels_and_markup():
    text = "{\\an8}<i>MIKE: Will?</i>\n- Joyce: Hop!"
    masked = mask(text)
    assert len(masked) == len(text)
    assert masked.split() == ["Will?", "-", "Hop!"]
    assert masked.index("Will") == text.index("Will")


def test_mentions_carry_their_span_without_the_possessive(finder):
    (mentions,) = finder.find(["Ask Mrs. Byers about Mike's bike."])
    assert [(m.text, m.character) for m in mentions] == [
        ("Mrs. Byers", "Joyce Byers"),
        ("Mike", "Mike Wheeler"),
    ]


def test_a_shared_surname_takes_the_character_named_nearby(finder):
    texts = ["Claudia, where is the cat?", "Henderson, get in here."]
    assert characters_per_text(finder.find(texts, context=1))[1] == {"Claudia Henderson"}
    assert characters_per_text(finder.find(texts[1:], context=1)) == [frozenset()]


def srt(folder: Path, name: str, captions: list[str]) -> None:
    blocks = [
        f"{i}\n00:00:{i:02d},000 --> 00:00:{i:02d},900\n{text}\n"
        for i, text in enumerate(captions, start=1)
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n".join(blocks), encoding="utf-8")


def test_the_network_of_a_wiki_characters_file_holds_only_characters(tmp_path):
    """On main this crashed with KeyError "billy's" and linked Hawkins, Four and Three."""
    srt(
        tmp_path / "subtitles",
        "S01E01.srt",
        [
            "MIKE: El, where are you?",
            "Four, three, two, one!",
            "Welcome to Hawkins, Chief Hopper.",
            "MAN 2: Billy's mother called. Hospital gowns again.",
            "DUSTIN: Mike, Eleven is back!",
        ],
    )
    captions = load_subtitles(tmp_path / "subtitles").records
    characters = load_characters(EVAL / "characters.jsonl").records
    build = build_network(captions, characters, NetworkParams(window=2), progress=False)
    assert sorted(build.graph) == ["Billy Hargrove", "Eleven", "Jim Hopper", "Mike Wheeler"]
    assert build.graph.nodes["Eleven"]["mentions"] == 2
    assert build.graph.has_edge("Eleven", "Mike Wheeler")
