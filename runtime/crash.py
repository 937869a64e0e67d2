"""Where unexpected errors go: one traceback file each, and a one-line summary for the user.

Expected failures (:class:`stnlp.common.errors.UserError`, a file that cannot be read, AWS that
cannot be reached) are one line naming what failed. Anything else is an *internal error*: its
traceback is written to ``$XDG_STATE_HOME/stnlp/errors/<time>-<ref>.txt`` (default
``~/.local/state``), and the user sees the error's type, its reference and that file.
"""

from __future__ import annotations

import os
import secrets
import traceback
from datetime import UTC, datetime
from pathlib import Path

from stnlp.common.errors import UserError


def error_dir() -> Path:
    """The folder holding internal errors' tracebacks."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "stnlp" / "errors"


def one_line(text: str, limit: int = 2000) -> str:
    """``text`` on one line (newlines folded), cut at ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def expected_message(exc: BaseException) -> str | None:
    """The one-line message of an expected failure, or ``None`` for an internal error."""
    if isinstance(exc, UserError):
        return one_line(str(exc))
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return one_line(f"{exc.filename}: {exc.strerror}")
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # pragma: no cover - botocore is a dependency
        return None
    if isinstance(exc, BotoCoreError | ClientError):
        return one_line(f"AWS: {exc}")
    return None


def record_internal_error(exc: BaseException) -> tuple[str, Path | None]:
    """Write ``exc``'s traceback to a new file; return its reference and path (``None`` when
    the file could not be written)."""
    ref = secrets.token_hex(4)
    path = error_dir() / f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{ref}.txt"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
    except OSError:
        return ref, None
    return ref, path


def internal_message(exc: BaseException) -> str:
    """Record ``exc`` and return the line telling the user where its details went."""
    ref, path = record_internal_error(exc)
    where = f"details in {path}" if path else "its traceback could not be saved"
    return one_line(f"internal error ({type(exc).__name__}: {exc}) [ref {ref}]; {where}; "
                    "rerun with --debug to see the traceback", 600)  # fmt: skip
