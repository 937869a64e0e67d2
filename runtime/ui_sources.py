"""Which model source each tab uses: a compact badge in the tab, the full line in Status.

A tab's ``model_source(app)`` returns one line: the source in a few words first, then ``;``
and the detail (versions, reasons). The tab shows the words before the first ``;`` as its
badge, without parentheses and version ids; the Status tab shows the whole line.
"""

from __future__ import annotations

import html
import logging
import re

from stnlp.runtime import logs

log = logging.getLogger(__name__)

VERSION_ID = re.compile(r"\s*\b(?:version\s+)?v\d{8}T\d{6,12}-[0-9a-f]{6}\b")
"""A registry version id (``v<UTC time>-<6 hex>``, see :mod:`stnlp.runtime.versions`)."""
_PARENTHESES = re.compile(r"\s*\([^()]*\)")
_KINDS = (
    ("trained", ("trained", "registry")),
    ("hub", ("hub",)),
    ("live", ("computed live", "live")),
    ("fallback", ("fallback", "offline", "untuned")),
)


def safe_model_source(app, plugin: str, tab) -> str:
    """``tab.model_source(app)``, or a note when the plugin's function raises."""
    try:
        return tab.model_source(app)
    except Exception as exc:  # a plugin's bug must not take the page down
        logs.event(log, "model source failed", logging.ERROR, plugin=plugin, tab=tab.name)
        log.debug("model source traceback", exc_info=exc)
        return f"unknown; model source failed: {type(exc).__name__}"


def badge_text(source: str) -> str:
    """The compact form of a model source line: its first clause, no parentheses or versions."""
    head = source.split(";", 1)[0]
    while _PARENTHESES.search(head):
        head = _PARENTHESES.sub("", head)
    return " ".join(VERSION_ID.sub("", head).split()) or "model source not stated"


def badge_kind(text: str) -> str:
    """``trained``, ``hub``, ``live``, ``fallback`` or ``other``: the badge's colour."""
    lowered = text.casefold()
    for kind, words in _KINDS:
        if lowered.startswith(words):
            return kind
    return "other"


def badge_html(source: str) -> str:
    """The badge a tab shows for its model source line."""
    text = badge_text(source)
    return (
        f'<span class="stnlp-badge stnlp-badge-{badge_kind(text)}" '
        f'title="Full detail in the Status tab">{html.escape(text)}</span>'
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def sources_markdown(app) -> str:
    """The Status tab's table of every tab's source: the badge and the full line."""
    rows = [(tab.title, safe_model_source(app, plugin, tab)) for plugin, tab in app.registry.tabs]
    if not rows:
        return "_No plugin contributes a tab yet._"
    lines = ["| tab | in use | detail |", "|---|---|---|"]
    lines += [f"| {_cell(t)} | {_cell(badge_text(s))} | {_cell(s)} |" for t, s in rows]
    return "\n".join(lines)
