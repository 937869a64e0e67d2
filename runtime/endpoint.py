"""The hosted chat endpoint as a reply source for the interface's model chain.

:func:`endpoint_source` returns the :class:`EndpointChat` of a chatbot model when `stnlp deploy`
has put it on a SageMaker endpoint (its record ``endpoints/<model>.json`` in the models bucket),
else None; on the local backend it is always None and reads nothing. The chat tab puts it ahead
of the hub model and says so (its ``label``). Replies use the serving container's Messages API
(TGI: ``messages``, ``max_tokens``, ``temperature``, ``top_p``; ``model`` picks the LoRA
adapter) through ``sagemaker-runtime`` InvokeEndpoint.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from stnlp.common.settings import Settings
from stnlp.runtime import logs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EndpointChat:
    """Replies from a chatbot version served on a SageMaker endpoint."""

    endpoint: str
    adapter: str
    character: str
    version: str
    client: Any

    @property
    def label(self) -> str:
        """What the interface's header says about this source."""
        return (f"SageMaker endpoint {self.endpoint} (version {self.version}, trained for "
                f"{self.character})")

    def request(self, messages: list[dict], max_new_tokens: int, temperature: float,
                top_p: float) -> dict[str, Any]:  # fmt: skip
        """The InvokeEndpoint body for one reply."""
        body = {"model": self.adapter, "messages": messages, "max_tokens": int(max_new_tokens),
                "top_p": float(top_p)}  # fmt: skip
        if temperature > 0:  # TGI refuses a temperature of 0; leaving it out decodes greedily
            body["temperature"] = float(temperature)
        return body

    def stream(self, messages: list[dict], max_new_tokens: int, temperature: float,
               top_p: float, name: str = "") -> Iterator[str]:  # fmt: skip
        """Yield the reply (whole: one InvokeEndpoint call), as the tab's other sources do
        (``name``, the character, is already in the system prompt the adapter was trained on)."""
        answer = self.client.invoke_endpoint(
            EndpointName=self.endpoint, ContentType="application/json", Accept="application/json",
            Body=json.dumps(self.request(messages, max_new_tokens, temperature, top_p)))
        reply = json.loads(answer["Body"].read())
        yield reply["choices"][0]["message"]["content"]


def endpoint_source(settings: Settings, model: str) -> EndpointChat | None:
    """``model``'s endpoint as a reply source, or None (local backend, not deployed, damaged
    record: the last logged)."""
    if not settings.uses_s3:
        return None
    from stnlp.runtime.backends.sagemaker_deploy import record_key
    from stnlp.runtime.store import NotFoundError, open_stores, s3_client

    try:
        record = json.loads(open_stores(settings).models.get(record_key(model)))
        return EndpointChat(record["endpoint"], record["adapter"], record["character"],
                            record["version"], s3_client(settings, "sagemaker-runtime"))
    except NotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        logs.event(log, "damaged endpoint record", logging.WARNING, model=model, error=str(exc))
        return None
