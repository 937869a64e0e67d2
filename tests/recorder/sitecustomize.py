"""Record the AWS calls a process makes (botocore event hooks), for tests/aws_rules.py.

On ``PYTHONPATH`` with ``STNLP_AWS_RECORD=<file>`` and ``STNLP_AWS_PRINCIPAL=<role>``, every
API call of the process is appended to the file as one JSON line: principal, service,
operation, parameters and the HTTP status of the answer. A process that unsets
``STNLP_AWS_RECORD`` before making a client (the `shutdown` shim, acting for EC2 itself) is
not recorded.

In the test process itself, :func:`install` records only the calls the project's code makes
(``keep=made_by_the_project``), not the test's own set-up and inspection.
"""

import copy
import json
import os
import sys
import threading

try:
    import botocore.session
except ImportError:  # a python without boto (the venv before its packages): nothing to record
    botocore = None

LIBRARIES = ("botocore", "boto3", "s3transfer", "urllib3", "concurrent", "threading",
             "sitecustomize", "tests.recorder")  # fmt: skip


def made_by_the_project(frame) -> bool:
    """Whether the call being made comes from ``stnlp`` code (the first frame outside the AWS
    libraries), or from a transfer thread the project's code started."""
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not name.startswith(LIBRARIES):
            return name.startswith("stnlp.")
        frame = frame.f_back
    return True


def install(path, principal, keep=None):
    """Record the calls of every client made from now on to ``path`` as ``principal``;
    ``keep(frame)`` picks which calls count. Returns a function that stops the recording."""
    active = threading.Event()
    active.set()
    create = botocore.session.Session.create_client
    lock = threading.Lock()

    def stash(params, model, context, **_):
        if active.is_set() and (keep is None or keep(sys._getframe(1))):
            context["stnlp_params"] = {k: v if k == "Body" else copy.deepcopy(v)
                                       for k, v in params.items()}

    def after(http_response, model, context, **_):
        if not active.is_set() or "stnlp_params" not in context:
            return
        params = {k: v for k, v in context["stnlp_params"].items() if k != "Body"}
        line = {"principal": principal, "service": model.service_model.service_name,
                "operation": model.name, "params": params,
                "status": getattr(http_response, "status_code", None)}
        with lock, open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line, default=str) + "\n")

    def create_client(self, *args, **kwargs):
        client = create(self, *args, **kwargs)
        if os.environ.get("STNLP_AWS_RECORD") or keep is not None:
            client.meta.events.register("before-parameter-build", stash)
            client.meta.events.register("after-call", after)
        return client

    def uninstall():
        active.clear()
        botocore.session.Session.create_client = create

    botocore.session.Session.create_client = create_client
    return uninstall


if os.environ.get("STNLP_AWS_RECORD") and botocore is not None:
    install(os.environ["STNLP_AWS_RECORD"], os.environ.get("STNLP_AWS_PRINCIPAL", "unknown"))
