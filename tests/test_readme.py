"""The README's commands paste as written: every line of "Using it on one machine" is a real
command line that the `stnlp` parser accepts, with no shell pipes standing for alternatives and
no placeholders."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from stnlp.runtime.cli import cli

README = Path(__file__).resolve().parents[1] / "README.md"


def _block(heading: str) -> list[str]:
    """The command lines of the first bash block under ``heading``, comments removed."""
    text = README.read_text().split(f"## {heading}\n", 1)[1]
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    lines = [re.split(r"\s+#\s", line, maxsplit=1)[0].strip() for line in block.splitlines()]
    return [line for line in lines if line]


LOCAL = _block("Using it on one machine")


def test_the_block_activates_the_venv_the_makefile_makes():
    assert LOCAL[0] == "source .venv/bin/activate"
    makefile = (README.parent / "Makefile").read_text()
    assert re.search(r"^VENV \?= \.venv$", makefile, re.M)


@pytest.mark.parametrize("line", LOCAL[1:])
def test_each_line_parses_as_the_cli_would(line):
    words = shlex.split(line)
    assert words[0] == "stnlp", "a line runs stnlp once"
    assert "|" not in words, "a pipe is not a list of alternatives"
    assert not [w for w in words if re.fullmatch(r"[A-Z][A-Z_]+", w)], "no placeholders"
    command: click.Command = cli
    args = words[1:]
    with click.Context(cli) as context:
        while isinstance(command, click.Group) and args and not args[0].startswith("-"):
            name = args.pop(0)
            command = command.get_command(context, name)
            assert command is not None, f"no command {name!r} in {line!r}"
    try:
        command.make_context(words[1], args, resilient_parsing=False)
    except click.exceptions.Exit as done:  # --help, --version: printed, then exit 0
        assert done.exit_code == 0


def test_the_screenshots_shown_are_the_browser_tests_of_every_built_in_tab():
    """Each built-in tab has its screenshot at the top of the README, as the browser tests
    save them (docs/screenshots/<tab title>.png)."""
    from tests.browser.test_interface import SCREENSHOTS

    shown = re.findall(r"!\[[^\]]+\]\((docs/screenshots/[\w-]+\.png)\)", README.read_text())
    for title in ("Chat", "Character network", "Location classifier", "Themes", "Status"):
        name = title.lower().replace(" ", "-")
        assert f"docs/screenshots/{name}.png" in shown, title
    for path in shown:
        assert (README.parent / path).is_file(), path
    assert README.parent / "docs" / "screenshots" == SCREENSHOTS
