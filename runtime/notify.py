"""Run-end messages: one message when a run ends (succeeded, failed, killed, interrupted), on
every backend.

:meth:`stnlp.runtime.runs.Run.transition` calls :func:`notify_run_end` once, when the run's
record enters ``cleanup`` (its ``result`` set), whoever ends it: the run itself, a kill or a
sweep. Where it goes:

- ``local`` backend: a JSON line appended to the local sink (:func:`sink_path`:
  ``notifications.jsonl`` beside the local store's buckets, ``.stnlp/store/`` by default; else
  ``$XDG_STATE_HOME/stnlp/``) and a log event;
- ``ec2`` backend: ``sns:Publish`` to the stack's topic, named by the stack manifest's
  ``notify_topic_arn`` (the training role and the launcher policy may publish to it, and only
  to it);
- ``sagemaker`` backend: nothing here. The stack's EventBridge rule already sends the job's end
  to the topic (infra/monitoring.py), so a second message would be a duplicate.

Notifying never changes the run's outcome: any error is logged and the run goes on.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from stnlp.common.names import manifest_parameter
from stnlp.runtime import logs
from stnlp.runtime.store import LocalStore, S3Store, Stores

log = logging.getLogger(__name__)

SINK_FILE = "notifications.jsonl"
LEFT_TO_EVENTBRIDGE = ("sagemaker",)


def message(record: dict[str, Any]) -> dict[str, Any]:
    """The message of an ended run: what ran, where, how it ended and why."""
    history = record.get("history") or []
    last = history[-2]["state"] if len(history) >= 2 else None
    return {"run_id": record["run_id"], "stack": record.get("stack"), "job": record.get("job"),
            "backend": record.get("backend"), "result": record.get("result"),
            "error": record.get("error"), "ended_from": last,
            "model_version": record.get("model_version"),
            "ended": record.get("updated")}  # fmt: skip


def subject(note: dict[str, Any]) -> str:
    """A one-line subject (SNS allows 100 printable ASCII characters)."""
    text = f"stnlp {note['stack']}: {note['job']} {note['result']} ({note['backend']})"
    return text.encode("ascii", "replace").decode()[:100]


def sink_path(stores: Stores) -> Path:
    """Where local runs' messages are appended."""
    if isinstance(stores.results, LocalStore):
        return stores.results.root.parent / SINK_FILE
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "stnlp" / SINK_FILE


def notify_run_end(stores: Stores, stack: str, record: dict[str, Any]) -> None:
    """Send the message of the run that just ended (see the module); never raises."""
    backend = record.get("backend")
    try:
        if backend in LEFT_TO_EVENTBRIDGE:
            return
        note = message(record)
        if backend == "local" or not isinstance(stores.results, S3Store):
            _append(sink_path(stores), note)
        else:
            _publish(stores.results, stack, note)
        logs.event(log, "run end notified", run_id=note["run_id"], result=note["result"],
                   backend=backend)  # fmt: skip
    except Exception as exc:  # a lost message must not change the run's outcome
        logs.event(log, "run end not notified", logging.WARNING, run_id=record.get("run_id"),
                   error=f"{type(exc).__name__}: {exc}")  # fmt: skip


def _append(path: Path, note: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as sink:
        sink.write(json.dumps(note, sort_keys=True) + "\n")


def _client(s3: S3Store, service: str) -> Any:
    """A client of ``service`` in the results bucket's region and, off AWS (a test endpoint),
    at the same endpoint."""
    import boto3

    meta = s3.client.meta
    endpoint = None if "amazonaws.com" in meta.endpoint_url else meta.endpoint_url
    return boto3.client(service, region_name=meta.region_name, endpoint_url=endpoint)


def _publish(s3: S3Store, stack: str, note: dict[str, Any]) -> None:
    parameter = _client(s3, "ssm").get_parameter(Name=manifest_parameter(stack))
    topic = json.loads(parameter["Parameter"]["Value"]).get("notify_topic_arn")
    if not topic:
        raise LookupError(f"stack {stack!r} manifest has no notify_topic_arn; run `pulumi up`")
    _client(s3, "sns").publish(TopicArn=topic, Subject=subject(note),
                               Message=json.dumps(note, sort_keys=True))  # fmt: skip
