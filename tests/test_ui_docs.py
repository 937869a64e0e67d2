"""Every hook specification and every public name has a docstring and a place in the user guide."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import stnlp
from stnlp.plugins import hookspecs

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


def _public_api_section() -> str:
    text = GUIDE.read_text()
    start = text.index("### The public API")
    return text[start : text.index("\n### ", start + 1)]


@pytest.mark.parametrize("name", stnlp.__all__)
def test_public_name_is_documented_and_resolves(name):
    assert f"`stnlp.{name}`" in _public_api_section(), f"stnlp.{name} is not in the user guide"
    value = getattr(stnlp, name)
    if callable(value) and name != "hookimpl":
        assert inspect.getdoc(value), f"stnlp.{name} has no docstring"


def test_the_documented_names_are_exactly_the_public_ones():
    import re

    documented = set(re.findall(r"`stnlp\.(\w+)`", _public_api_section()))
    assert documented == set(stnlp.__all__)
