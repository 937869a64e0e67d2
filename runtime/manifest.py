"""The stack manifest: what the Pulumi program created, readable by stack name.

For S3 stacks it lives in the SSM parameter ``/stnlp/<stack>/manifest`` (a JSON string); the
local store keeps the same document in ``<store>/manifest.json``. See docs/architecture.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stnlp.common.errors import UserError
from stnlp.common.names import BUCKET_KINDS, manifest_parameter
from stnlp.common.settings import Settings


def local_manifest(settings: Settings) -> dict[str, Any]:
    """The manifest of the embedded local stack: buckets are folders of the store directory."""
    return {
        "stack": settings.stack,
        "region": settings.region,
        "buckets": {name: name for name in BUCKET_KINDS},
        "launch_templates": {},
        "log_groups": {},
        "plugins": {},
    }


def validate_manifest(manifest: Any, where: str) -> dict[str, Any]:
    """Check the fields every reader relies on; raise :class:`UserError` naming ``where``."""
    if not isinstance(manifest, dict):
        raise UserError(f"stack manifest {where} is not a JSON object")
    buckets = manifest.get("buckets")
    if not isinstance(buckets, dict):
        raise UserError(f"stack manifest {where}: field 'buckets' is missing or not an object")
    missing = [name for name in BUCKET_KINDS if not buckets.get(name)]
    if missing:
        raise UserError(f"stack manifest {where}: buckets.{missing[0]} is missing")
    return manifest


def _parse(text: str, where: str) -> dict[str, Any]:
    try:
        return validate_manifest(json.loads(text), where)
    except json.JSONDecodeError as exc:
        raise UserError(f"stack manifest {where} is not valid JSON: {exc}") from exc


def load_manifest(settings: Settings) -> dict[str, Any]:
    """The stack manifest for ``settings``.

    S3 stacks: the SSM parameter ``/stnlp/<stack>/manifest``. Local store: ``<store>/manifest.json``
    when written, else :func:`local_manifest`.
    """
    if not settings.uses_s3:
        path = Path(settings.store) / "manifest.json"
        if not path.exists():
            return local_manifest(settings)
        return _parse(path.read_text(encoding="utf-8"), str(path))

    from botocore.exceptions import BotoCoreError, ClientError

    from stnlp.runtime.store import s3_client

    name = manifest_parameter(settings.stack)
    where = f"SSM parameter {name} ({settings.region})"
    try:
        response = s3_client(settings, "ssm").get_parameter(Name=name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ParameterNotFound":
            raise UserError(
                f"stack {settings.stack!r} has no manifest: {where} not found "
                "(deploy the stack with `pulumi up` first)"
            ) from exc
        raise UserError(f"cannot read {where}: {exc}") from exc
    except BotoCoreError as exc:
        raise UserError(f"cannot read {where}: {exc}") from exc
    return _parse(response["Parameter"]["Value"], where)


def write_local_manifest(store_root: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest`` (validated) to ``<store_root>/manifest.json``; return the path."""
    validate_manifest(manifest, str(store_root / "manifest.json"))
    store_root.mkdir(parents=True, exist_ok=True)
    path = store_root / "manifest.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(path)
    return path
