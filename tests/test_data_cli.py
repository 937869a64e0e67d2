"""`stnlp data validate`: the table for good data, a one-line error and exit 2 otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_main, run_stnlp

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"


run = run_main


def test_validate_sample_root(capsys):
    code, out, err = run(capsys, "data", "validate", str(SAMPLE))
    assert code == 0, err
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 4}
    assert set(rows) >= {"subtitles", "transcripts", "locations", "characters"}
    assert "malformed block(s)" in out
    cells = [cell.strip() for cell in rows["transcripts"].split("│")]
    assert cells[2] == "4" and int(cells[3]) >= 800 and cells[4] == "0"


def test_validate_single_file(capsys):
    code, out, _ = run(capsys, "data", "validate", str(SAMPLE / "locations" / "locations.jsonl"))
    assert code == 0
    assert "locations" in out and "characters" not in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name,text\nMike,hi\n", "header is missing column(s) line"),
        ("name,line\nMike,\n", "no records loaded"),
        ("", "the file is empty"),
    ],
)
def test_validate_bad_file_exits_2_with_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "S01E01.csv"
    path.write_text(content, encoding="utf-8")
    code, _, err = run(capsys, "data", "validate", str(path))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert str(path) in err


def test_validate_nothing_to_load(tmp_path, capsys):
    (tmp_path / "subtitles").mkdir()
    code, _, err = run(capsys, "data", "validate", str(tmp_path))
    assert code == 2
    assert (
        err == f"error: {tmp_path}: nothing to load (no subtitles/, transcripts/, "
        "locations/, characters/ folder with data)\n"
    )


def test_stnlp_command_end_to_end(tmp_path):
    ok = run_stnlp("data", "validate", str(SAMPLE / "subtitles"), check=False)
    assert ok.returncode == 0, ok.stderr
    assert "subtitles" in ok.stdout and "malformed" in ok.stdout
    bad = run_stnlp("data", "validate", str(tmp_path / "nope"), check=False)
    assert bad.returncode == 2
    assert bad.stderr == f"error: {tmp_path / 'nope'}: no such file or folder\n"
