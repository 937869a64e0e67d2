"""Every hook specification has a docstring and a section in docs/user-guide.md."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from plugins import hookspecs

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "user-guide.md"
HOOKS = [
    name
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(fn, "stnlp_spec")
]


def test_there_are_hooks():
    assert {"stnlp_components", "stnlp_training_jobs", "stnlp_gradio_tabs"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_docstring(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook))
    assert doc and len(doc.split()) >= 8, f"{hook} needs a docstring saying when it runs"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_section_in_the_user_guide(hook):
    headings = [line for line in GUIDE.read_text().splitlines() if line.startswith("#")]
    assert any(f"`{hook}" in heading for heading in headings), f"no section for {hook}"
