"""The command line: user mistakes print one clear line, no traceback unless --debug."""

from __future__ import annotations

from tests.helpers import run_stnlp


def test_unknown_command_is_one_line_and_exit_2():
    result = run_stnlp("frobnicate")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: No such command 'frobnicate'."]


def test_bad_settings_file_is_one_line(tmp_path):
    (tmp_path / "stnlp.toml").write_text("store = ")
    result = run_stnlp("plugins", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "stnlp.toml is not valid TOML" in lines[0]
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    (tmp_path / "stnlp.toml").write_text("store = ")
    result = run_stnlp("--debug", "plugins", cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_plugins_lists_builtins(tmp_path):
    result = run_stnlp("plugins", cwd=tmp_path, env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    for name in ("chatbot", "classifier", "network"):
        assert name in result.stdout
