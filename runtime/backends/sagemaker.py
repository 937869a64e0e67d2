"""The SageMaker backend: a training job running the same bootstrap and entrypoint as EC2.

``train_sagemaker`` checks the stopping condition (``MaxWaitTimeInSeconds`` must be at least
``MaxRuntimeInSeconds`` for managed spot) before anything is created, takes the job lock,
creates the run record, uploads the release (the project's wheel, plugin wheels and the
dependency lock, :mod:`stnlp.runtime.backends.package`) and calls ``CreateTrainingJob``: the
container installs the lock (hash-checked) and the wheels from its input channels and runs
``python -m stnlp.runtime.bootstrap --platform sagemaker``, which drives the same state machine as
on EC2 and publishes to the same registry. Managed spot keeps ``/opt/ml/checkpoints`` in the
run's ``checkpoints/`` S3 prefix, so a restarted container resumes from it.

:func:`mirror_status` copies the job's status into the run record and ends runs whose
container stopped without recording an end (failed, stopped, or never started).
"""

from __future__ import annotations

import logging
from typing import Any

from stnlp.common.errors import UserError
from stnlp.common.names import TAG_JOB, TAG_RUN, TAG_STACK
from stnlp.common.settings import Settings
from stnlp.plugins.spec import JobSpec
from stnlp.runtime import logs
from stnlp.runtime.backends.cloud import kill_run, launch_or_fail, start_run
from stnlp.runtime.backends.package import Release, build_release, upload_release
from stnlp.runtime.launchcheck import stack_spot
from stnlp.runtime.manifest import load_manifest
from stnlp.runtime.runs import Run, run_prefix
from stnlp.runtime.store import Stores, open_stores, s3_client

log = logging.getLogger(__name__)

CHECKPOINT_PATH = "/opt/ml/checkpoints"
DEFAULT_IMAGE = (
    "763104351884.dkr.ecr.{region}.amazonaws.com/"
    "pytorch-training:2.5.1-gpu-py311-cu124-ubuntu22.04-sagemaker"
)
ENTRY_SCRIPT = (
    "set -euo pipefail; D=/opt/ml/input/data; "
    'python -m pip install -q --no-deps --require-hashes --only-binary=:all: -r "$D"/lock/*; '
    'python -m pip install -q --no-deps --no-index "$D"/wheel*/*.whl; '
    'exec python -m stnlp.runtime.bootstrap "$@"'
)
ENDED = ("Completed", "Failed", "Stopped")


def stopping_condition(spec: JobSpec, spot: bool, max_wait_seconds: int | None) -> dict[str, int]:
    """``MaxRuntimeInSeconds`` (and ``MaxWaitTimeInSeconds`` for spot), checked.

    Spot waits default to twice the runtime; a wait shorter than the runtime is a UserError.
    """
    runtime = spec.max_runtime_minutes * 60
    condition = {"MaxRuntimeInSeconds": runtime}
    if not spot:
        if max_wait_seconds is not None:
            raise UserError("--max-wait only applies to managed spot training")
        return condition
    wait = 2 * runtime if max_wait_seconds is None else int(max_wait_seconds)
    if wait < runtime:
        raise UserError(
            f"job {spec.name!r}: MaxWaitTimeInSeconds ({wait}) must be at least "
            f"MaxRuntimeInSeconds ({runtime}) for managed spot training"
        )
    condition["MaxWaitTimeInSeconds"] = wait
    return condition


def job_name(run_id: str) -> str:
    """The SageMaker training job name of a run (at most 63 characters)."""
    return f"stnlp-{run_id}"[:63].rstrip("-")


def _channel(name: str, bucket: str, key: str) -> dict[str, Any]:
    """An input channel holding the one shipped file at ``key`` (its content-addressed folder)."""
    folder = key.rsplit("/", 1)[0] + "/"
    return {"ChannelName": name, "InputMode": "File", "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/{folder}",
        "S3DataDistributionType": "FullyReplicated"}}}  # fmt: skip


def training_job_request(
    spec: JobSpec,
    manifest: dict[str, Any],
    stack: str,
    run_id: str,
    *,
    spot: bool,
    release: Release,
    max_wait_seconds: int | None = None,
    image: str | None = None,
) -> dict[str, Any]:
    """The ``create_training_job`` arguments for one run of ``spec``, installing ``release``."""
    stopping = stopping_condition(spec, spot, max_wait_seconds)
    role = manifest.get("sagemaker_role_arn")
    if not role:
        raise UserError(f"stack {stack!r} manifest has no sagemaker_role_arn; run `pulumi up`")
    region = manifest["region"]
    results, models = manifest["buckets"]["results"], manifest["buckets"]["models"]
    prefix = run_prefix(stack, run_id)
    instance_type = spec.instance_type
    if not instance_type.startswith("ml."):
        instance_type = f"ml.{instance_type}"
    tags = {TAG_STACK: stack, TAG_JOB: spec.name, TAG_RUN: run_id}
    request: dict[str, Any] = {
        "TrainingJobName": job_name(run_id),
        "RoleArn": role,
        "AlgorithmSpecification": {
            "TrainingImage": image or DEFAULT_IMAGE.format(region=region),
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["bash", "-c", ENTRY_SCRIPT, "stnlp-bootstrap"],
            "ContainerArguments": ["--stack", stack, "--job", spec.name, "--run-id", run_id,
                                   "--platform", "sagemaker"],
        },
        "InputDataConfig": [
            _channel(name, models, item.key)
            for name, item in [*((f"wheel{i}", w) for i, w in enumerate(release.wheels)),
                               ("lock", release.lock)]
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{results}/{prefix}/sagemaker"},
        "ResourceConfig": {"InstanceType": instance_type, "InstanceCount": 1,
                           "VolumeSizeInGB": spec.root_volume_gb},
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": spot,
        "CheckpointConfig": {"S3Uri": f"s3://{results}/{prefix}/checkpoints/",
                             "LocalPath": CHECKPOINT_PATH},
        "Environment": {
            "STNLP_STORE": "s3", "STNLP_STACK": stack, "STNLP_REGION": region,
            "STNLP_WORKDIR": "/opt/ml/stnlp", "STNLP_CHECKPOINT_DIR": CHECKPOINT_PATH,
        },
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
    }  # fmt: skip
    if manifest.get("subnet_ids") and manifest.get("security_group_id"):
        request["VpcConfig"] = {"SecurityGroupIds": [manifest["security_group_id"]],
                                "Subnets": list(manifest["subnet_ids"])}
    return request


def train_sagemaker(
    spec: JobSpec,
    settings: Settings,
    *,
    stores: Stores | None = None,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    run_id: str | None = None,
    progress: bool = True,
    spot: bool | None = None,
    max_wait_seconds: int | None = None,
    image: str | None = None,
    sagemaker: Any = None,
) -> str:
    """Start a SageMaker training job for a new run of ``spec``; return the run id at once."""
    if not settings.uses_s3:
        raise UserError("the sagemaker backend needs a deployed stack: use --stack NAME")
    manifest = load_manifest(settings)
    use_spot = stack_spot(spec, manifest, spot)
    stopping_condition(spec, use_spot, max_wait_seconds)  # fail before anything is created
    stores = stores or open_stores(settings)
    sagemaker = sagemaker or s3_client(settings, "sagemaker")
    release = build_release(manifest)
    run = start_run(spec, stores, settings.stack, "sagemaker", spot=use_spot, preset=preset,
                    overrides=overrides, run_id=run_id)

    def create() -> dict[str, Any]:
        request = training_job_request(spec, manifest, settings.stack, run.run_id, spot=use_spot,
                                       release=release, max_wait_seconds=max_wait_seconds,
                                       image=image)
        upload_release(release, stores.models)
        sagemaker.create_training_job(**request)
        return request

    request = launch_or_fail(run, create, what="create_training_job")
    run.heartbeat(job_id=request["TrainingJobName"])
    logs.event(log, "training job created", run_id=run.run_id, job=request["TrainingJobName"])
    return run.run_id


def apply_status(run: Run, description: dict[str, Any]) -> str:
    """Mirror one ``describe_training_job`` answer into the run record; return the status.

    A job still running only updates ``sagemaker_status``. A job that ended while the run is
    still open means its container could not record the end: ``Stopped`` becomes ``killed``
    (from training), ``Failed`` and ``Completed`` become ``failed`` unless the run already
    reached ``results_sync``; then the run is cleaned up.
    """
    status = description["TrainingJobStatus"]
    secondary = description.get("SecondaryStatus")
    run.reload()
    if run.state == "cleanup":
        return status
    run.heartbeat(sagemaker_status=status, sagemaker_secondary_status=secondary)
    if status not in ENDED:
        return status
    if status == "Stopped":
        run.fail("SageMaker training job was stopped", killed=True)
    elif status == "Failed":
        run.fail(f"SageMaker training job failed: {description.get('FailureReason', '?')}")
    elif run.state != "results_sync":
        run.fail(f"SageMaker training job completed but the run stopped in {run.state!r}")
    run.cleanup()
    return status


def mirror_status(run: Run, sagemaker: Any) -> str:
    """Read the run's training job and :func:`apply_status` it."""
    name = run.record.get("job_id")
    if not name:
        raise UserError(f"run {run.run_id} has no SageMaker training job")
    return apply_status(run, sagemaker.describe_training_job(TrainingJobName=name))


def kill_sagemaker_run(
    settings: Settings, stores: Stores, run_id: str, sagemaker: Any = None
) -> Run:
    """Stop the run's training job, then record ``killed`` and clean up."""
    from botocore.exceptions import ClientError

    def stop(run: Run) -> str:
        name = run.record.get("job_id")
        if not name:
            return "it had no training job yet"
        try:
            (sagemaker or s3_client(settings, "sagemaker")).stop_training_job(TrainingJobName=name)
        except ClientError as exc:  # already ended: nothing left to stop
            logs.event(log, "stop_training_job refused", logging.WARNING, job=name,
                       error=str(exc))
        return "training job stopped"

    return kill_run(stores, settings.stack, run_id, stop)
