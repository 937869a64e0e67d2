"""Character names as subtitles, transcripts and users write them, against a wiki-style file.

``data/eval/characters.jsonl`` is a hand-written characters file with the hazards a fan wiki
has: shared surnames, possessive and role names, numbers, group records, listed aliases.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stnlp.common.errors import UserError
from stnlp.runtime.data import load_characters
from stnlp.runtime.data.names import CharacterNames, name_key

EVAL = Path(__file__).resolve().parents[1] / "data" / "eval" / "characters.jsonl"
NAMES = CharacterNames.from_records(load_characters(EVAL).records)


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("Mike", "Mike Wheeler"), ("MIKE", "Mike Wheeler"), ("mike wheeler", "Mike Wheeler"),
        ("Mike's", "Mike Wheeler"), ("Michael", "Mike Wheeler"), ("El", "Eleven"),
        ("Jane", "Eleven"), ("ELEVEN", "Eleven"), ("Hop", "Jim Hopper"),
        ("Chief Hopper", "Jim Hopper"), ("Hopper", "Jim Hopper"),  # listed alias beats derived
        ("Mrs. Wheeler", "Karen Wheeler"), ("Mr. Wheeler", "Ted Wheeler"),
        ("Papa", "Martin Brenner"), ("Dr. Brenner", "Martin Brenner"),
        ("Billy's mother", "Billy's mother"), ("Lonnie", "Will's father"),
        ("Harrington", "Steve Harrington"), ("Steve’s", "Steve Harrington"),
    ],
)  # fmt: skip
def test_names_resolve(written, canonical):
    assert NAMES.resolve(written) == canonical


@pytest.mark.parametrize("written", ["Wheeler", "Byers", "Sinclair", "Henderson"])
def test_a_shared_surname_is_ambiguous(written):
    assert NAMES.resolve(written) is None
    assert len(NAMES.owners(written)) >= 2


@pytest.mark.parametrize(
    "written",
    ["mother", "Hawkins", "Head", "Security", "Minor", "Season 2", "Hospital", "parents", "Mall"],
)
def test_words_of_role_and_group_records_name_nobody(written):
    assert NAMES.resolve(written) is None


@pytest.mark.parametrize(
    ("label", "canonical"),
    [("MIKE:", "Mike Wheeler"), ("Eleven (radio)", "Eleven"), ("DUSTIN (V.O.)", "Dustin Henderson"),
     ("MAN 2", None), ("PRINCIPAL:", "Principal")],
)  # fmt: skip
def test_speaker_labels(label, canonical):
    assert NAMES.speaker(label) == canonical


def test_find_names_close_matches_and_ambiguity():
    assert NAMES.find("dustin") == "Dustin Henderson"
    with pytest.raises(UserError, match=r"'Dustn'.*did you mean Dustin Henderson"):
        NAMES.find("Dustn")
    with pytest.raises(UserError, match=r"'Byers' is ambiguous: it may be .*Joyce Byers"):
        NAMES.find("Byers")


def test_keys_ignore_case_possessive_dots_and_punctuation():
    assert name_key("  Mrs.  Wheeler's! ") == "mrs wheeler"
    assert name_key("MIKE:") == "mike"
