"""Record every AWS call this process makes (botocore event hooks), for tests/aws_rules.py.

On ``PYTHONPATH`` with ``STNLP_AWS_RECORD=<file>`` and ``STNLP_AWS_PRINCIPAL=<role>``, each
API call is appended to the file as one JSON line: principal, service, operation, parameters and
the HTTP status of the answer. A process that unsets ``STNLP_AWS_RECORD`` before making a client
(the `shutdown` shim, acting for EC2 itself) is not recorded.
"""

import copy
import json
import os

try:
    import botocore.session
except ImportError:  # a python without boto (the venv before its packages): nothing to record
    botocore = None

if os.environ.get("STNLP_AWS_RECORD") and botocore is not None:
    _create = botocore.session.Session.create_client

    def _record(path, principal):
        def stash(params, model, context, **_):
            context["stnlp_params"] = {k: v if k == "Body" else copy.deepcopy(v)
                                       for k, v in params.items()}

        def after(http_response, model, context, **_):
            params = {k: v for k, v in context.get("stnlp_params", {}).items() if k != "Body"}
            line = {"principal": principal, "service": model.service_model.service_name,
                    "operation": model.name, "params": params,
                    "status": getattr(http_response, "status_code", None)}
            with open(path, "a", encoding="utf-8") as out:
                out.write(json.dumps(line, default=str) + "\n")

        return stash, after

    def create_client(self, *args, **kwargs):
        client = _create(self, *args, **kwargs)
        if not os.environ.get("STNLP_AWS_RECORD"):  # unset since start: not the principal's call
            return client
        stash, after = _record(os.environ["STNLP_AWS_RECORD"],
                               os.environ.get("STNLP_AWS_PRINCIPAL", "unknown"))
        client.meta.events.register("before-parameter-build", stash)
        client.meta.events.register("after-call", after)
        return client

    botocore.session.Session.create_client = create_client
