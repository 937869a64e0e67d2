"""Hosted chat: a chatbot's latest version on a SageMaker real-time endpoint, and its removal.

:func:`deploy` serves the latest version of a chatbot job's model with Hugging Face's TGI
serving container (``huggingface-pytorch-tgi-inference``), which loads LoRA adapters next to
their base model (``LORA_ADAPTERS``): the base model comes, uncompressed, from the stack's hub
cache in the models bucket (``hub/<owner>--<name>/<revision>/``, filled by the first training
run on the stack) as the model's ``ModelDataSource`` (``/opt/ml/model``), the adapter version as
an ``AdditionalModelDataSources`` channel. It creates the model, the endpoint config and the
endpoint (names ``stnlp-<stack>-<model>-<version hex>``) and then writes the endpoint record
``endpoints/<model>.json`` in the models bucket, which the interface reads
(:mod:`stnlp.runtime.endpoint`). A crash part way leaves named resources that
:func:`undeploy` removes: it deletes the record first (the interface stops using the
endpoint), then the endpoint, its config and its model, skipping whatever is already gone.

The endpoint is one always-on GPU instance: SageMaker's serverless inference runs no GPU, and
scaling to zero needs inference components (not done here), so :func:`idle_cost_line` shows its
hourly and monthly cost before anything is created.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stnlp.common.errors import UserError
from stnlp.common.names import HUB_PREFIX, TAG_JOB, TAG_STACK, ml_instance_type
from stnlp.common.settings import Settings
from stnlp.plugins.spec import JobSpec
from stnlp.runtime import logs
from stnlp.runtime.backends.sagemaker import sagemaker_role
from stnlp.runtime.cost import hosting_cost, load_prices
from stnlp.runtime.hub import cache_prefix
from stnlp.runtime.manifest import load_manifest
from stnlp.runtime.registry import ModelRegistry
from stnlp.runtime.store import NotFoundError, Stores, encode_json, s3_client

log = logging.getLogger(__name__)

SERVING_IMAGE = ("763104351884.dkr.ecr.{region}.amazonaws.com/huggingface-pytorch-tgi-inference:"
                 "2.4.0-tgi2.4.0-gpu-py311-cu124-ubuntu22.04")
DEFAULT_INSTANCE = "ml.g5.2xlarge"  # one A10G (24 GB): a 3B model in bf16 plus its adapter
ADAPTER_CHANNEL = "adapter"
ADAPTER_PATH = f"/opt/ml/additional-model-data-sources/{ADAPTER_CHANNEL}"
ENDPOINT_PREFIX = "endpoints/"


def record_key(model: str) -> str:
    """Where the endpoint record of ``model`` lives in the models bucket."""
    return f"{ENDPOINT_PREFIX}{model}.json"


@dataclass(frozen=True)
class Deployment:
    """What one deploy creates: its names and the version it serves."""

    model: str
    version: str
    character: str
    name: str  # the SageMaker model, endpoint config and endpoint share it
    instance_type: str
    base_model: str


def resource_name(stack: str, model: str, version: str) -> str:
    """``stnlp-<stack>-<model>-<version hex>``, cut to SageMaker's 63 characters."""
    tail = version.rsplit("-", 1)[-1]
    head = f"stnlp-{stack}-{model}"[: 63 - len(tail) - 1].rstrip("-")
    return f"{head}-{tail}".replace("_", "-").replace(".", "-")


def plan(spec: JobSpec, settings: Settings, stores: Stores, instance_type: str) -> Deployment:
    """The deployment of ``spec``'s latest version, or a UserError saying what is missing."""
    registry = ModelRegistry(stores.models)
    version = registry.latest(spec.output_model)
    if version is None:
        raise UserError(f"model {spec.output_model!r} has no published version to deploy; "
                        f"train it first: stnlp train {spec.name} --stack {settings.stack}")
    manifest = registry.manifest(spec.output_model, version)
    paths = {entry["path"] for entry in manifest["files"]}
    if "adapter_config.json" not in paths:
        raise UserError(f"model {spec.output_model} {version} holds no LoRA adapter "
                        "(adapter_config.json): only chatbot adapters deploy")
    info = json.loads(stores.models.get(f"models/{spec.output_model}/{version}/chatbot.json"))
    base = manifest.get("base_model") or info.get("base_model")
    if not base or not stores.models.exists(f"{cache_prefix(base)}ref.json"):
        raise UserError(f"stack {settings.stack!r} has no cached copy of base model {base!r} "
                        f"({HUB_PREFIX}...): a training run on the stack caches it")
    return Deployment(spec.output_model, version, info.get("character", ""),
                      resource_name(settings.stack, spec.output_model, version),
                      ml_instance_type(instance_type), base)


def idle_cost_line(instance_type: str) -> str:
    """What the endpoint costs while nobody chats (it does not scale to zero)."""
    prices = load_prices()
    hourly = hosting_cost(instance_type, prices)
    return (f"endpoint cost: ${hourly:.3f}/hour = ${hourly * prices['hours_per_month']:.0f}/month "
            f"on {ml_instance_type(instance_type)}, idle or not, until `stnlp undeploy`")


def _s3_prefix(bucket: str, prefix: str) -> dict[str, Any]:
    return {"S3DataSource": {"S3Uri": f"s3://{bucket}/{prefix}", "S3DataType": "S3Prefix",
                             "CompressionType": "None"}}  # fmt: skip


def model_request(deployment: Deployment, manifest: dict[str, Any], stack: str,
                  revision: str) -> dict[str, Any]:  # fmt: skip
    """The ``create_model`` arguments: TGI over the cached base model with the adapter."""
    models = manifest["buckets"]["models"]
    return {
        "ModelName": deployment.name,
        "ExecutionRoleArn": sagemaker_role(manifest, stack),
        "PrimaryContainer": {
            "Image": SERVING_IMAGE.format(region=manifest["region"]),
            "ModelDataSource": _s3_prefix(models, f"{cache_prefix(deployment.base_model)}"
                                                  f"{revision}/"),
            "AdditionalModelDataSources": [{
                "ChannelName": ADAPTER_CHANNEL,
                **_s3_prefix(models, f"models/{deployment.model}/{deployment.version}/")}],
            "Environment": {"HF_MODEL_ID": "/opt/ml/model", "SM_NUM_GPUS": "1",
                            "LORA_ADAPTERS": f"{adapter_id(deployment)}={ADAPTER_PATH}",
                            "MAX_INPUT_TOKENS": "1024", "MAX_TOTAL_TOKENS": "1536",
                            "HF_HUB_OFFLINE": "1"},
        },
        "Tags": _tags(stack, deployment),
    }  # fmt: skip


def adapter_id(deployment: Deployment) -> str:
    """The name the serving container knows the adapter by (requests pick it with it)."""
    return deployment.character.lower().replace(" ", "-") or "adapter"


def _tags(stack: str, deployment: Deployment) -> list[dict[str, str]]:
    return [{"Key": TAG_STACK, "Value": stack}, {"Key": TAG_JOB, "Value": deployment.model}]


def deploy(spec: JobSpec, settings: Settings, stores: Stores, *, instance_type: str =
           DEFAULT_INSTANCE, sagemaker: Any = None) -> dict[str, Any]:  # fmt: skip
    """Serve ``spec``'s latest version on an endpoint; return the endpoint record written."""
    if not settings.uses_s3:
        raise UserError("deploy needs a deployed stack: use --stack NAME")
    manifest = load_manifest(settings)
    deployment = plan(spec, settings, stores, instance_type)
    try:
        previous = json.loads(stores.models.get(record_key(deployment.model)))
    except NotFoundError:
        previous = None
    if previous and previous["endpoint"] == deployment.name:
        raise UserError(f"{deployment.model} {deployment.version} is already on endpoint "
                        f"{deployment.name}")
    if previous:
        raise UserError(f"{deployment.model} is on endpoint {previous['endpoint']} (version "
                        f"{previous['version']}): `stnlp undeploy {spec.name}` first")
    revision = json.loads(stores.models.get(f"{cache_prefix(deployment.base_model)}ref.json"))
    client = sagemaker or s3_client(settings, "sagemaker")
    tags = _tags(settings.stack, deployment)
    try:
        client.create_model(**model_request(deployment, manifest, settings.stack,
                                            revision["revision"]))
        client.create_endpoint_config(EndpointConfigName=deployment.name, Tags=tags,
                                      ProductionVariants=[{
                                          "VariantName": "chat", "ModelName": deployment.name,
                                          "InstanceType": deployment.instance_type,
                                          "InitialInstanceCount": 1,
                                          "ContainerStartupHealthCheckTimeoutInSeconds": 900}])
        client.create_endpoint(EndpointName=deployment.name,
                               EndpointConfigName=deployment.name, Tags=tags)
    except Exception:  # leave nothing half made (and billed): remove what was created
        delete_resources(client, deployment.name)
        raise
    record = {"model": deployment.model, "version": deployment.version,
              "endpoint": deployment.name, "character": deployment.character,
              "adapter": adapter_id(deployment),
              "instance_type": deployment.instance_type, "base_model": deployment.base_model,
              "created": datetime.now(UTC).isoformat()}  # fmt: skip
    stores.models.put(record_key(deployment.model), encode_json(record), if_none_match=True)
    logs.event(log, "endpoint created", endpoint=deployment.name, version=deployment.version)
    return record


def undeploy(spec: JobSpec, settings: Settings, stores: Stores, *, sagemaker: Any = None,
             name: str | None = None) -> list[str]:  # fmt: skip
    """Remove ``spec``'s endpoint (the one its record names, or ``name`` when a deploy
    stopped before writing the record); return what was deleted."""
    key = record_key(spec.output_model)
    try:
        name = name or json.loads(stores.models.get(key))["endpoint"]
    except NotFoundError:
        raise UserError(f"{spec.output_model} has no endpoint record; name the endpoint with "
                        "--name (see `aws sagemaker list-endpoints`)") from None
    if stores.models.exists(key):
        stores.models.delete(key)
    return delete_resources(sagemaker or s3_client(settings, "sagemaker"), name)


def delete_resources(client: Any, name: str) -> list[str]:
    """Delete endpoint, endpoint config and model ``name``, skipping what is gone; return
    what was deleted."""
    from botocore.exceptions import ClientError

    deleted = []
    for what, call, field in (("endpoint", client.delete_endpoint, "EndpointName"),
                              ("endpoint config", client.delete_endpoint_config,
                               "EndpointConfigName"),
                              ("model", client.delete_model, "ModelName")):  # fmt: skip
        try:
            call(**{field: name})
            deleted.append(f"{what} {name}")
        except ClientError as exc:  # already gone: nothing to remove
            logs.event(log, f"no {what} to delete", logging.INFO, name=name, error=str(exc))
    return deleted
