"""Hub models on a training instance: fetched once per stack, then from the models bucket.

A job names the hub models it loads in its hyperparameters: a key ending in ``_model`` whose
value is a hub repository id (``owner/name``, e.g. ``base_model =
"meta-llama/Llama-3.2-3B-Instruct"``), or ``models.<component>`` in the settings. Before the
entrypoint runs, :func:`fetch_hub_models` puts each one in the instance's Hugging Face cache
(``HF_HOME``), where the plugins load it with ``local_files_only=True``:

- when the stack's models bucket holds the model (``hub/<owner>--<name>/ref.json`` naming a
  revision, and the files under ``hub/<owner>--<name>/<revision>/``), it comes from there and
  nothing is asked of the hub;
- otherwise it is downloaded from the hub (``huggingface_hub.snapshot_download``) with the
  token in the SSM SecureString the stack config names (``hubTokenParameter``; gated models
  such as Llama need one), uploaded to the bucket, and ``ref.json`` written last, so a cache
  entry is only ever complete.

The worker then runs with ``HF_HUB_OFFLINE=1``: training never reaches the hub itself.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from stnlp.common.errors import UserError
from stnlp.common.names import HUB_PREFIX
from stnlp.runtime import logs
from stnlp.runtime.store import ObjectStore

log = logging.getLogger(__name__)

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def hub_models(params: Mapping[str, Any], configured: str | None = None) -> list[str]:
    """The hub repository ids a run loads: ``*_model`` hyperparameters and ``configured``."""
    found = [value for key, value in params.items()
             if key.endswith("_model") and isinstance(value, str) and REPO_ID.match(value)]
    if configured and REPO_ID.match(configured):
        found.append(configured)
    return sorted(set(found))


def cache_prefix(repo_id: str) -> str:
    """Where the stack caches ``repo_id`` in its models bucket."""
    return f"{HUB_PREFIX}{repo_id.replace('/', '--')}/"


def hub_cache_dir(hf_home: Path) -> Path:
    """The Hugging Face hub cache under ``hf_home`` (what ``HF_HOME`` points at)."""
    return hf_home / "hub"


def _restore(store: ObjectStore, repo_id: str, revision: str, hf_home: Path) -> int:
    """Lay the cached files out as the hub cache does: ``snapshots/<rev>/`` and ``refs/main``."""
    folder = hub_cache_dir(hf_home) / f"models--{repo_id.replace('/', '--')}"
    store.sync_down(f"{cache_prefix(repo_id)}{revision}/", folder / "snapshots" / revision)
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(revision, encoding="utf-8")
    return sum(1 for p in (folder / "snapshots" / revision).rglob("*") if p.is_file())


def _download(repo_id: str, hf_home: Path, token: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:  # HF_ENDPOINT read now (huggingface_hub reads it once, at import): a mirror, a test hub
        return Path(snapshot_download(repo_id, cache_dir=hub_cache_dir(hf_home), token=token,
                                      endpoint=os.environ.get("HF_ENDPOINT") or None))
    except (GatedRepoError, RepositoryNotFoundError) as exc:
        hint = "set hubTokenParameter to an SSM SecureString holding a token with access"
        raise UserError(f"hub model {repo_id!r} cannot be downloaded ({type(exc).__name__}): "
                        f"{hint}") from exc
    except HfHubHTTPError as exc:
        raise UserError(f"hub model {repo_id!r}: {exc}") from exc


def fetch_hub_model(
    store: ObjectStore, repo_id: str, hf_home: Path, token: Callable[[], str | None]
) -> str:
    """Put ``repo_id`` in the local hub cache; return ``"bucket"`` or ``"hub"`` (its source)."""
    pointer = f"{cache_prefix(repo_id)}ref.json"
    if store.exists(pointer):
        revision = json.loads(store.get(pointer))["revision"]
        files = _restore(store, repo_id, revision, hf_home)
        logs.event(log, "hub model from the stack's cache", model=repo_id, files=files)
        return "bucket"
    snapshot = _download(repo_id, hf_home, token())
    revision = snapshot.name
    uploaded = store.sync_up(snapshot, f"{cache_prefix(repo_id)}{revision}")
    store.put(pointer, json.dumps({"repo_id": repo_id, "revision": revision}).encode())
    logs.event(log, "hub model cached for the stack", model=repo_id, files=len(uploaded))
    return "hub"


def fetch_hub_models(
    store: ObjectStore, repos: list[str], hf_home: Path, token: Callable[[], str | None]
) -> dict[str, str]:
    """:func:`fetch_hub_model` for each of ``repos``; set ``HF_HOME`` and go offline after."""
    sources = {repo: fetch_hub_model(store, repo, hf_home, token) for repo in repos}
    os.environ["HF_HOME"] = str(hf_home)
    os.environ["HF_HUB_OFFLINE"] = "1"
    return sources


def ssm_token(client: Any, parameter: str | None) -> Callable[[], str | None]:
    """A function reading the hub token from the SecureString ``parameter`` (None: no token)."""

    def read() -> str | None:
        if not parameter:
            return None
        try:
            answer = client.get_parameter(Name=parameter, WithDecryption=True)
        except Exception as exc:
            raise UserError(f"cannot read the hub token {parameter}: {exc}") from exc
        return answer["Parameter"]["Value"].strip()

    return read
