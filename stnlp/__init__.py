"""Stranger Things NLP suite: the public API for plugins.

A plugin imports only this module::

    import stnlp

    @stnlp.hookimpl
    def stnlp_training_jobs(settings):
        return [stnlp.JobSpec(name="my-job", component="mine", entrypoint="my_pkg.train:run",
                              output_model="mine")]

Every public name is listed in :data:`__all__` and documented in docs/user-guide.md ("The public
API"); everything else under ``stnlp`` is private. Names resolve on first use, so importing
``stnlp`` (or the neutral ``stnlp.common``) loads neither the runtime nor the Pulumi program.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_PUBLIC: dict[str, str] = {
    "hookimpl": "stnlp.plugins",
    "Component": "stnlp.plugins.spec",
    "JobSpec": "stnlp.plugins.spec",
    "TabSpec": "stnlp.plugins.spec",
    "SpecError": "stnlp.plugins.spec",
    "Settings": "stnlp.common.settings",
    "UserError": "stnlp.common.errors",
    "DataError": "stnlp.common.errors",
    "TrainingContext": "stnlp.runtime.training",
    "TrainingOutcome": "stnlp.runtime.training",
    "LocalModel": "stnlp.runtime.registry",
    "fetch_latest": "stnlp.runtime.registry",
    "load_subtitles": "stnlp.runtime.data",
    "load_transcripts": "stnlp.runtime.data",
    "load_characters": "stnlp.runtime.data",
    "load_locations": "stnlp.runtime.data",
    "CharacterNames": "stnlp.runtime.data.names",
    "AppContext": "stnlp.runtime.ui",
    "StackContext": "stnlp.infra.stack",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    """Resolve a public name from its defining module on first use (PEP 562)."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'stnlp' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
