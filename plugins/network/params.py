"""The network job's parameters and defaults, light to import (no spaCy): the plugin module
declares its job from them on every registry build."""

from __future__ import annotations

from dataclasses import dataclass

from stnlp.common.errors import UserError

DEFAULT_MODEL = "en_core_web_sm"


@dataclass(frozen=True)
class NetworkParams:
    """The build's knobs (the job's hyperparameters)."""

    window: int = 10
    keep_unknown: bool = False
    spacy_model: str = DEFAULT_MODEL
    batch_size: int = 256
    n_process: int = 1
    seed: int = 0

    def __post_init__(self):
        for name in ("window", "batch_size", "n_process"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(
                    f"network-characters: {name} must be a whole number >= 1, got {value!r}"
                )
