"""Training backends. Each is a function with the shape of
:func:`stnlp.runtime.backends.local.train_local`::

    train(spec, settings, *, stores=None, preset=None, overrides=None, run_id=None,
          progress=True) -> run_id

It runs ``spec`` through the run state machine (:mod:`stnlp.runtime.runs`) and publishes the output
to the model registry; the outcome is in the run record (``result``: ``succeeded``, ``failed``
or ``killed``). Backends are imported when chosen, so a missing cloud dependency only matters
to whoever picks that backend.
"""

from __future__ import annotations

from collections.abc import Callable

from stnlp.common.errors import UserError
from stnlp.runtime.training import import_entrypoint

# Backend name -> "module:function". Add a backend here.
BACKENDS: dict[str, str] = {
    "local": "stnlp.runtime.backends.local:train_local",
    "ec2": "stnlp.runtime.backends.ec2:train_ec2",
    "sagemaker": "stnlp.runtime.backends.sagemaker:train_sagemaker",
}


def get_backend(name: str) -> Callable[..., str]:
    """The training function of backend ``name``."""
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")
    return import_entrypoint(BACKENDS[name])
