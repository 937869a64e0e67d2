"""Numbers from the environment, parsed strictly: finite, in range, or a one-line error.

The bootstrap, the watchdog and the distributed ranks read their settings from environment
variables; a ``nan`` or an empty value must stop the run with the variable's name, not turn
into a deadline that has already passed.
"""

from __future__ import annotations

import math

from stnlp.common.errors import UserError


def parse_number(name: str, text: str, cast, low: float, high: float):
    """``text`` (environment variable ``name``) as a finite ``cast`` number in [low, high].

    ``nan``, ``inf``, ``1e999`` and values out of range are one-line errors naming the variable:
    a ``nan`` deadline would otherwise make the watchdog stop the run at once.
    """
    try:
        value = cast(text.strip())
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or not low <= value <= high:
        kind = "an integer" if cast is int else "a finite number"
        raise UserError(f"environment {name}={text!r} must be {kind} from {low:g} to {high:g}")
    return value
