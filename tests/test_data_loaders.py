"""The dataset loaders: markup cleaning, skips, encodings and the errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stnlp.common.errors import DataError
from stnlp.runtime.data import (
    Caption,
    Character,
    Location,
    TranscriptLine,
    group_by_episode,
    load_any,
    load_characters,
    load_corpus,
    load_locations,
    load_subtitles,
    load_transcripts,
)


def write(path: Path, content: str | bytes) -> Path:
    """Write ``content`` (UTF-8 text or raw bytes) to ``path``, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


SRT = """1
00:00:01,000 --> 00:00:02,500
<i>- Hello,</i> {\\an8}Mike.
- [door slams] ♪ Hi! ♪

2
00:01:03,250 --> 00:01:04,000
(GROWLS)
♪ ♪

3
00:00:05,000 --> 00:00:06,000
<font color="#ffff00">Will?</font>
Are you there?

4
00:00:07,000 -> 00:00:08,000
a broken time code

x5
00:00:09,000 --> 00:00:10,000
a broken index

6
00:00:12,000 --> 00:00:11,000
ends before it starts

7
1:02:03.4 --> 1:02:04.05
short time codes
"""


def test_subtitles_markup_removed_and_time_codes_parsed(tmp_path):
    result = load_subtitles(write(tmp_path / "Show.s02e07.srt", SRT))
    assert result.records == [
        Caption(2, 7, 1, 1.0, 2.5, "Hello, Mike. Hi!"),
        Caption(2, 7, 3, 5.0, 6.0, "Will? Are you there?"),
        Caption(2, 7, 7, 3723.4, 3724.05, "short time codes"),
    ]
    assert result.skipped == 4
    assert any("3 malformed block(s) near line 16, 20, 24" in note for note in result.notes)
    assert any("1 caption(s) with no spoken text" in note for note in result.notes)


def test_subtitles_crlf_and_bom(tmp_path):
    data = "\ufeff" + SRT.replace("\n", "\r\n")
    result = load_subtitles(write(tmp_path / "S01E01.srt", data.encode("utf-8")))
    assert [c.index for c in result.records] == [1, 3, 7]
    assert result.notes[0].startswith("S01E01.srt: skipped")


def test_subtitles_cp1252_read_with_note(tmp_path):
    data = "1\r\n00:00:01,000 --> 00:00:02,000\r\nCaf\u00e9 \u2019round the corner\r\n"
    path = write(tmp_path / "S01E03.srt", data.encode("cp1252"))
    result = load_subtitles(path)
    assert result.records[0].text == "Caf\u00e9 \u2019round the corner"
    assert result.notes == ["S01E03.srt: read as cp1252"]


def test_undecodable_file_rejected_naming_it(tmp_path):
    path = write(tmp_path / "S01E04.srt", b"1\n00:00:01,000 --> 00:00:02,000\nbad \x81\x8d\n")
    with pytest.raises(DataError, match=r"S01E04\.srt: cannot decode"):
        load_subtitles(path)


def test_subtitle_name_without_episode_tag(tmp_path):
    with pytest.raises(DataError, match=r"pilot\.srt: file name has no season/episode"):
        load_subtitles(write(tmp_path / "pilot.srt", SRT))


def test_folder_loads_sorted_files_and_ignores_other_suffixes(tmp_path):
    write(tmp_path / "S01E02.srt", "1\n00:00:01,000 --> 00:00:02,000\nsecond\n")
    write(tmp_path / "S01E01.srt", "1\n00:00:01,000 --> 00:00:02,000\nfirst\n")
    write(tmp_path / "notes.txt", "not a subtitle")
    result = load_subtitles(tmp_path)
    assert [c.text for c in result.records] == ["first", "second"]
    assert [f.name for f in result.files] == ["S01E01.srt", "S01E02.srt"]


@pytest.mark.parametrize(
    ("loader", "suffix"),
    [(load_subtitles, ".srt"), (load_transcripts, ".csv"), (load_locations, ".jsonl")],
)
def test_nothing_to_load_names_the_path(tmp_path, loader, suffix):
    write(tmp_path / "readme.txt", "hello")
    with pytest.raises(DataError, match=rf"{tmp_path}: nothing to load \(no \{suffix} files\)"):
        loader(tmp_path)
    with pytest.raises(DataError, match=r"missing: no such file or folder"):
        loader(tmp_path / "missing")
    with pytest.raises(DataError, match=rf"readme\.txt: expected a \{suffix} file"):
        loader(tmp_path / "readme.txt")


@pytest.mark.parametrize("name", ["S01E01.srt", "S01E01.csv", "locations.jsonl"])
def test_empty_file_rejected_naming_it(tmp_path, name):
    path = write(tmp_path / name, " \n\n")
    with pytest.raises(DataError, match=rf"{name}: the file is empty"):
        load_any(path)


def test_transcripts_rows_and_skips(tmp_path):
    csv_text = 'Name , LINE\nEleven,"Friends don\'t lie, Mike."\nMike,  \n,orphan line\nWill,ok\n'
    result = load_transcripts(write(tmp_path / "S01E05.csv", csv_text))
    assert result.records == [
        TranscriptLine(1, 5, "Eleven", "Friends don't lie, Mike."),
        TranscriptLine(1, 5, "Will", "ok"),
    ]
    assert result.skipped == 2
    assert result.notes == ["S01E05.csv: skipped 2 row(s) with no name or line"]


def test_transcripts_missing_column_named(tmp_path):
    path = write(tmp_path / "S01E01.csv", "speaker,line\nMike,hi\n")
    with pytest.raises(DataError, match=r"S01E01\.csv: header is missing column\(s\) name"):
        load_transcripts(path)


def test_transcripts_cp1252(tmp_path):
    path = write(
        tmp_path / "S01E01.csv", "name,line\nJoyce,Will\u2019s caf\u00e9\n".encode("cp1252")
    )
    result = load_transcripts(path)
    assert result.records[0].line == "Will\u2019s caf\u00e9"
    assert result.notes == ["S01E01.csv: read as cp1252"]


def test_locations_and_missing_field_with_line_number(tmp_path):
    good = {"location_name": "Cabin", "location_description": "In the woods.", "location_type": "R"}
    path = write(tmp_path / "locations.jsonl", json.dumps(good) + "\n\n")
    assert load_locations(path).records == [Location("Cabin", "In the woods.", "R")]
    bad = {k: v for k, v in good.items() if k != "location_type"}
    write(path, json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataError, match=r"locations\.jsonl:2: field 'location_type' is missing"):
        load_locations(path)
    write(path, json.dumps({**good, "location_name": 3}) + "\n")
    with pytest.raises(DataError, match=r":1: field 'location_name' is not a non-empty string: 3"):
        load_locations(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"chars\.jsonl:2: invalid JSON"),
        ("[1, 2]", r"chars\.jsonl:2: expected a JSON"),
    ],
)
def test_jsonl_bad_lines_name_file_and_line(tmp_path, line, message):
    path = write(tmp_path / "chars.jsonl", '{"character_name": "Max"}\n' + line + "\n")
    with pytest.raises(DataError, match=message):
        load_characters(path)


def test_characters_description_and_fields(tmp_path):
    lines = [
        {"character_name": "Max", "description": "Skater.", "speaking_style": "Dry."},
        {"character_name": "Will", "personality": "Gentle.", "background": "Artist.", "age": 12},
    ]
    path = write(tmp_path / "characters.jsonl", "\n".join(json.dumps(x) for x in lines))
    records = load_characters(path).records
    assert records[0] == Character(
        "Max", "Skater.", {"description": "Skater.", "speaking_style": "Dry."}
    )
    assert records[1].description == "Gentle. Artist."
    assert records[1].fields["age"] == 12
    with pytest.raises(DataError, match=r"characters\.jsonl:1: field 'character_name' is missing"):
        load_characters(write(path, '{"name": "Max"}\n'))


def test_corpus_missing_folders_are_empty_but_empty_root_is_an_error(tmp_path):
    write(tmp_path / "transcripts" / "S01E01.csv", "name,line\nMike,hi\n")
    corpus = load_corpus(tmp_path)
    assert len(corpus.transcripts.records) == 1
    assert corpus.subtitles.records == [] and corpus.subtitles.files == []
    assert corpus.subtitles.notes == ["no .srt files in subtitles/"]
    empty = tmp_path / "empty"
    (empty / "subtitles").mkdir(parents=True)
    with pytest.raises(DataError, match=rf"{empty}: nothing to load"):
        load_corpus(empty)


def test_group_by_episode_orders_keys_and_keeps_record_order():
    lines = [
        TranscriptLine(1, 2, "A", "x"),
        TranscriptLine(1, 1, "B", "y"),
        TranscriptLine(1, 2, "C", "z"),
        TranscriptLine(2, 1, "D", "w"),
    ]
    groups = group_by_episode(lines)
    assert list(groups) == [(1, 1), (1, 2), (2, 1)]
    assert [line.name for line in groups[(1, 2)]] == ["A", "C"]


def test_load_any_detects_jsonl_kind_by_content(tmp_path):
    path = write(tmp_path / "people.jsonl", '{"character_name": "Robin"}\n')
    assert list(load_any(path)) == ["characters"]
    with pytest.raises(DataError, match=r"things\.jsonl: cannot tell locations from characters"):
        load_any(write(tmp_path / "things.jsonl", '{"x": 1}\n'))
    with pytest.raises(DataError, match=r"notes\.txt: unknown file type \.txt"):
        load_any(write(tmp_path / "notes.txt", "hi"))
