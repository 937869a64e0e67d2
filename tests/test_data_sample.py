"""The sample data set in data/sample: what the plugins need from it, and that it is rebuilt
exactly from its scenes."""

from __future__ import annotations

import importlib.util
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from stnlp.runtime.data import group_by_episode, load_corpus

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
MAIN = ("Eleven", "Mike", "Dustin", "Lucas", "Will", "Hopper", "Joyce")


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(SAMPLE)


def test_sample_transcripts(corpus):
    lines = corpus.transcripts.records
    episodes = group_by_episode(lines)
    assert len(episodes) >= 4
    assert len(lines) >= 800
    speakers = Counter(line.name for line in lines)
    assert speakers["Eleven"] >= 120
    recurring = [
        name
        for name in speakers
        if all(any(x.name == name for x in ep) for ep in episodes.values())
    ]
    assert len(recurring) >= 6
    for name in MAIN:
        mentions = sum(1 for x in lines if x.name != name and re.search(rf"\b{name}\b", x.line))
        assert mentions >= 10, f"{name} is named in only {mentions} lines of others"
    themes = (
        "friend",
        "hope",
        "sacrific|stay on the other side|stand in the door",
        "battle|fight",
        "better|stronger|grow",
        "lie|lied|secret|tricked",
        "love",
    )
    for theme in themes:
        assert any(re.search(theme, x.line, re.IGNORECASE) for x in lines), theme


def test_sample_subtitles_follow_transcripts(corpus):
    captions = corpus.subtitles.records
    assert len(captions) >= 780
    assert corpus.subtitles.skipped >= 2
    assert sum("malformed" in note for note in corpus.subtitles.notes) == 2
    for episode in group_by_episode(captions).values():
        starts = [c.start for c in episode]
        assert starts == sorted(starts)
        assert all(c.end > c.start for c in episode)
    assert not any(re.search(r"[<>{}\[\]♪]", c.text) for c in captions)


def test_sample_locations_and_characters(corpus):
    locations = corpus.locations.records
    assert len(locations) >= 48
    types = Counter(location.type for location in locations)
    assert len(types) >= 4 and min(types.values()) >= 8
    assert len({location.name for location in locations}) == len(locations)
    characters = corpus.characters.records
    assert len(characters) >= 8
    for character in characters:
        assert character.description
        assert {"personality", "speaking_style"} <= set(character.fields)


def test_sample_is_rebuilt_exactly_from_scenes(tmp_path):
    spec = importlib.util.spec_from_file_location("sample_build", SAMPLE / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    shutil.copytree(SAMPLE / "scenes", tmp_path / "scenes")
    build.build(tmp_path)
    for folder in ("transcripts", "subtitles"):
        built = sorted(p.name for p in (tmp_path / folder).iterdir())
        assert built == sorted(p.name for p in (SAMPLE / folder).iterdir())
        for name in built:
            assert (tmp_path / folder / name).read_bytes() == (SAMPLE / folder / name).read_bytes()
    assert sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file()) < 1_000_000


def test_sample_characters_carry_the_hazards_of_a_wiki_file(corpus):
    from stnlp.runtime.data.names import CharacterNames

    characters = corpus.characters.records
    names = CharacterNames.from_records(characters)
    assert len(names.owners("Hopper")) == 1 and "Sara Hopper" in names.names  # listed alias wins
    assert names.resolve("El") == names.resolve("Jane") == "Eleven"
    for record in ("Billy's mother", "Hawkins Head of Security", "Two", "Freak!",
                   "Minor Characters/Season 2", "Hospital gowns", "Tech", "Principal"):
        assert record in names.names  # fmt: skip
    assert max(len(c.description.split()) for c in characters) >= 1000  # overlong description
    captions = " ".join(c.text for c in corpus.subtitles.records)
    assert re.search(r"\bMIKE: ", captions) and re.search(r"\bMAN 2: ", captions)  # labels left
    for hazard in ("Four, three, two, one", "Welcome to Hawkins", "Hop in", "Freak!"):
        assert hazard in captions


def test_sample_speakers_resolve_through_the_name_index(corpus):
    from stnlp.runtime.data.names import CharacterNames

    names = CharacterNames.from_records(corpus.characters.records)
    lines = corpus.transcripts.records
    speakers = Counter(line.name for line in lines)
    unresolved = {s for s in speakers if names.speaker(s) is None}
    assert unresolved <= {"Man 2", "Deputy Rourke", "Technician"}, unresolved
    for character in ("Eleven", "Mike Wheeler"):
        own = [x for x in lines if names.speaker(x.name) == character]
        assert len(own) >= 20 and len({(x.season, x.episode) for x in own}) >= 2
