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


def test_version_is_the_installed_distributions():
    from importlib.metadata import version

    result = run_stnlp("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"stnlp, version {version('stranger-things-nlp')}"


def test_train_help_lists_every_job_with_its_presets(tmp_path):
    from stnlp.common.settings import load_settings
    from stnlp.plugins.manager import build_plugin_manager

    result = run_stnlp("train", "--help", cwd=tmp_path, env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    jobs = build_plugin_manager(load_settings()).jobs
    assert jobs, "the built-in plugins contribute jobs"
    listed = " ".join(result.stdout.split("Jobs:")[1].split())  # as one line, unwrapped
    for name, (_, spec) in jobs.items():
        assert f"{name} {spec.description}" in listed
        assert all(preset in listed for preset in spec.presets)


LISTING_IMPORTS = """
import sys
from stnlp.runtime.cli import main
try:
    main(["plugins"])
except SystemExit as exit:
    assert not exit.code, exit.code
heavy = {"gradio", "torch", "transformers", "spacy"}
print("imported:" + ",".join(sorted(heavy & set(sys.modules))))
"""


def test_listing_plugins_imports_no_tab_or_model_library(tmp_path):
    """`stnlp plugins` took 10-19 s importing every tab's Gradio and torch; a tab given as a
    "module:function" path is imported only when the interface builds it."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", LISTING_IMPORTS], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "imported:"
