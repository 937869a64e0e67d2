"""The project's local cache folder: ``$XDG_CACHE_HOME/stnlp`` (``~/.cache/stnlp``)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(*parts: str) -> Path:
    """``$XDG_CACHE_HOME/stnlp/<parts...>`` (``~/.cache/stnlp/...`` without the variable):
    built wheels, exported and converted models, token tables, cached results."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base.joinpath("stnlp", *parts)
