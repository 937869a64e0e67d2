"""The SageMaker backend: a training job running the same bootstrap and entrypoint as EC2.

``train_sagemaker`` checks the stopping condition (``MaxWaitTimeInSeconds`` must be at least
``MaxRuntimeInSeconds`` for managed spot) before anything is created, takes the job lock,
creates the run record, uploads the *container release* (:func:`container_release`: the
project's wheel, plugin wheels and the dependency lock resolved for the image's Python, plus an
archive holding the entry script) and calls ``CreateTrainingJob`` in SageMaker's script mode:
the image's training toolkit (the AWS PyTorch training image's ``sagemaker-training``) fetches
``sagemaker_submit_directory`` and runs ``sagemaker_program``, the entry script
(:func:`stnlp.common.userdata.render_container_entry`). It checks and installs the release from
the job's input channels as an EC2 instance does, then runs
:mod:`stnlp.runtime.backends.container`, which drives the same state machine as on EC2 and
publishes to the same registry. Managed spot keeps ``/opt/ml/checkpoints`` in the run's
``checkpoints/`` S3 prefix, so a restarted container resumes from it.

No ``VpcConfig`` is sent: the job runs in SageMaker's own network, which reaches S3, SSM and
PyPI (the lock is installed from the index) without the stack's NAT gateway, and the stack's
subnets (public or NAT-less private) would reach none of those from a training container.

:func:`mirror_status` copies the job's status into the run record and ends runs whose
container stopped without recording an end (failed, stopped, or never started).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import re
import tarfile
from dataclasses import dataclass
from typing import Any

from stnlp.common.cache import cache_root
from stnlp.common.errors import UserError
from stnlp.common.names import TAG_JOB, TAG_RUN, TAG_STACK, ml_instance_type
from stnlp.common.settings import Settings
from stnlp.common.userdata import ShippedFile, release_channels, render_container_entry
from stnlp.plugins.spec import JobSpec
from stnlp.runtime import logs
from stnlp.runtime.backends.cloud import kill_run, launch_or_fail, start_run
from stnlp.runtime.backends.package import (
    Release,
    Shipped,
    build_release,
    upload_release,
)
from stnlp.runtime.launchcheck import check_datasets, stack_spot
from stnlp.runtime.manifest import load_manifest
from stnlp.runtime.runs import Run, run_prefix
from stnlp.runtime.store import ObjectStore, Stores, open_stores, s3_client

log = logging.getLogger(__name__)

CHECKPOINT_PATH = "/opt/ml/checkpoints"
WORKDIR = "/opt/ml/stnlp"
DEFAULT_IMAGE = (
    "763104351884.dkr.ecr.{region}.amazonaws.com/"
    "pytorch-training:2.5.1-gpu-py311-cu124-ubuntu22.04-sagemaker"
)
ENTRY_PROGRAM = "stnlp-entry.sh"
ENTRY_ARCHIVE = "stnlp-entry.tar.gz"
ENDED = ("Completed", "Failed", "Stopped")
_IMAGE_PYTHON = re.compile(r"[-:]py3(\d{1,2})(?:-|$)")


@dataclass(frozen=True)
class ContainerRelease:
    """What a SageMaker job ships: the release for the image's Python and the entry archive."""

    image: str
    python: str
    release: Release
    entry: Shipped

    @property
    def files(self) -> tuple[Shipped, ...]:
        """Every file the models bucket must hold before the job starts."""
        return (*self.release.files, self.entry)


def image_python(image: str, given: str | None = None) -> str:
    """The Python (``3.11``) of ``image``: ``given``, else the ``py3NN`` of its tag."""
    if given:
        if not re.fullmatch(r"3\.\d{1,2}", given):
            raise UserError(f"--image-python {given!r} must look like 3.11")
        return given
    found = _IMAGE_PYTHON.search(image.rsplit("/", 1)[-1])
    if not found:
        raise UserError(f"cannot tell the Python version of image {image!r} from its tag; "
                        "name it with --image-python 3.11")
    return f"3.{found.group(1)}"


def _shipped(item: Shipped) -> ShippedFile:
    return ShippedFile(item.key, item.filename, item.digest)


def entry_archive(release: Release) -> Shipped:
    """The ``sagemaker_submit_directory`` archive: the entry script alone, built reproducibly
    (fixed times and owners), so the same release gives the same file."""
    script = render_container_entry([_shipped(w) for w in release.wheels],
                                    _shipped(release.lock)).encode()
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped, \
            tarfile.open(fileobj=zipped, mode="w") as archive:  # fmt: skip
        info = tarfile.TarInfo(ENTRY_PROGRAM)
        info.size, info.mode, info.mtime = len(script), 0o755, 0
        archive.addfile(info, io.BytesIO(script))
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()
    path = cache_root() / "sagemaker" / digest / ENTRY_ARCHIVE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buffer.getvalue())
    return Shipped.of(path)


def container_release(
    manifest: dict[str, Any], image: str | None = None, python: str | None = None
) -> ContainerRelease:
    """Build (or reuse) the release a job on ``image`` installs (default: the AWS PyTorch
    training image of the stack's region), locked for the image's Python."""
    image = image or DEFAULT_IMAGE.format(region=manifest["region"])
    python = image_python(image, python)
    release = build_release(manifest, python=python)
    return ContainerRelease(image, python, release, entry_archive(release))


def upload_container_release(container: ContainerRelease, models: ObjectStore) -> int:
    """Upload what the models bucket lacks of ``container``; return how many files were sent."""
    sent = upload_release(container.release, models)
    if not models.exists(container.entry.key):
        models.upload_file(container.entry.key, container.entry.path)
        sent += 1
    return sent


def s3_folder(bucket: str, key: str) -> str:
    """The ``s3://`` URI of the content-addressed folder holding ``key``."""
    return f"s3://{bucket}/{key.rsplit('/', 1)[0]}/"


def release_inputs(container: ContainerRelease, bucket: str) -> list[tuple[str, str]]:
    """``(channel, S3 folder URI)`` of each release file, named as the entry script reads."""
    release = container.release
    wheels = [_shipped(w) for w in release.wheels]
    return [(name, s3_folder(bucket, item.key))
            for name, item in release_channels(wheels, _shipped(release.lock))]


def _channel(name: str, uri: str) -> dict[str, Any]:
    return {"ChannelName": name, "InputMode": "File", "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}}}


def script_mode(container: ContainerRelease, bucket: str, region: str) -> dict[str, str]:
    """The hyperparameters making the image's training toolkit run the entry script."""
    return {"sagemaker_program": ENTRY_PROGRAM,
            "sagemaker_submit_directory": s3_folder(bucket, container.entry.key) + ENTRY_ARCHIVE,
            "sagemaker_region": region}  # fmt: skip


def container_environment(stack: str, region: str, mode: str, **values: str) -> dict[str, str]:
    """What :mod:`stnlp.runtime.backends.container` reads: the stack and what to run."""
    return {"STNLP_STORE": "s3", "STNLP_STACK": stack, "STNLP_REGION": region,
            "STNLP_WORKDIR": WORKDIR, "STNLP_MODE": mode, **values}  # fmt: skip


def sagemaker_role(manifest: dict[str, Any], stack: str) -> str:
    """The stack's SageMaker execution role, or a UserError saying to deploy."""
    role = manifest.get("sagemaker_role_arn")
    if not role:
        raise UserError(f"stack {stack!r} manifest has no sagemaker_role_arn; run `pulumi up`")
    return role


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


def tags(stack: str, job: str, **more: str) -> list[dict[str, str]]:
    """SageMaker ``Tags`` naming the stack and the job (and ``more``)."""
    values = {TAG_STACK: stack, TAG_JOB: job, **more}
    return [{"Key": k, "Value": v} for k, v in values.items()]


def job_definition(
    spec: JobSpec, manifest: dict[str, Any], stack: str, output: str, *, spot: bool,
    container: ContainerRelease, max_wait_seconds: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """What a training job and a tuning job's ``TrainingJobDefinition`` share: the role, image,
    release channels, output folder (``output``, under the stack's results), instance and
    stopping condition."""
    models = manifest["buckets"]["models"]
    return {
        "RoleArn": sagemaker_role(manifest, stack),
        "AlgorithmSpecification": {"TrainingImage": container.image,
                                   "TrainingInputMode": "File"},
        "InputDataConfig": [_channel(n, uri) for n, uri in release_inputs(container, models)],
        "OutputDataConfig": {"S3OutputPath": f"s3://{manifest['buckets']['results']}/{output}"},
        "ResourceConfig": {"InstanceType": ml_instance_type(spec.instance_type),
                           "InstanceCount": 1, "VolumeSizeInGB": spec.root_volume_gb},
        "StoppingCondition": stopping_condition(spec, spot, max_wait_seconds),
        "EnableManagedSpotTraining": spot,
    }  # fmt: skip


def training_job_request(
    spec: JobSpec,
    manifest: dict[str, Any],
    stack: str,
    run_id: str,
    *,
    spot: bool,
    container: ContainerRelease,
    max_wait_seconds: int | None = None,
) -> dict[str, Any]:
    """The ``create_training_job`` arguments for one run of ``spec``, installing ``container``."""
    region = manifest["region"]
    results, models = manifest["buckets"]["results"], manifest["buckets"]["models"]
    prefix = run_prefix(stack, run_id)
    return {
        "TrainingJobName": job_name(run_id),
        **job_definition(spec, manifest, stack, f"{prefix}/sagemaker", spot=spot,
                         container=container, max_wait_seconds=max_wait_seconds),
        "HyperParameters": script_mode(container, models, region),
        "CheckpointConfig": {"S3Uri": f"s3://{results}/{prefix}/checkpoints/",
                             "LocalPath": CHECKPOINT_PATH},
        "Environment": container_environment(
            stack, region, "train", STNLP_JOB=spec.name, STNLP_RUN_ID=run_id,
            STNLP_CHECKPOINT_DIR=CHECKPOINT_PATH),
        "Tags": tags(stack, spec.name, **{TAG_RUN: run_id}),
    }  # fmt: skip


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
    image_python: str | None = None,
    sagemaker: Any = None,
) -> str:
    """Start a SageMaker training job for a new run of ``spec``; return the run id at once."""
    if not settings.uses_s3:
        raise UserError("the sagemaker backend needs a deployed stack: use --stack NAME")
    manifest = load_manifest(settings)
    use_spot = stack_spot(spec, manifest, spot)
    stopping_condition(spec, use_spot, max_wait_seconds)  # fail before anything is created
    stores = stores or open_stores(settings)
    check_datasets(spec, stores)
    sagemaker = sagemaker or s3_client(settings, "sagemaker")
    container = container_release(manifest, image, image_python)
    run = start_run(spec, stores, settings.stack, "sagemaker", spot=use_spot, preset=preset,
                    overrides=overrides, run_id=run_id)

    def create() -> dict[str, Any]:
        request = training_job_request(spec, manifest, settings.stack, run.run_id, spot=use_spot,
                                       container=container, max_wait_seconds=max_wait_seconds)
        upload_container_release(container, stores.models)
        sagemaker.create_training_job(**request)
        return request

    request = launch_or_fail(run, create, what="create_training_job")
    run.heartbeat(job_id=request["TrainingJobName"])
    logs.event(log, "training job created", run_id=run.run_id, job=request["TrainingJobName"])
    return run.run_id


def end_run(run: Run, status: str, reason: str | None, what: str = "training job") -> None:
    """End an open run whose SageMaker job ended with ``status`` without the run recording it:
    ``Stopped`` -> ``killed`` (from training), ``Failed`` and ``Completed`` -> ``failed``
    (unless the run already reached ``results_sync``); then clean up."""
    if status == "Stopped":
        run.fail(f"SageMaker {what} was stopped", killed=True)
    elif status == "Failed":
        run.fail(f"SageMaker {what} failed: {reason or '?'}")
    elif run.state != "results_sync":
        run.fail(f"SageMaker {what} completed but the run stopped in {run.state!r}")
    run.cleanup()


def apply_status(run: Run, description: dict[str, Any]) -> str:
    """Mirror one ``describe_training_job`` answer into the run record; return the status.

    A job still running only updates ``sagemaker_status``. A job that ended while the run is
    still open means its container could not record the end (:func:`end_run`).
    """
    status = description["TrainingJobStatus"]
    secondary = description.get("SecondaryStatus")
    run.reload()
    if run.state == "cleanup":
        return status
    run.heartbeat(sagemaker_status=status, sagemaker_secondary_status=secondary)
    if status in ENDED:
        end_run(run, status, description.get("FailureReason"))
    return status


def mirror_status(run: Run, sagemaker: Any) -> str:
    """Read the run's training job and mirror it."""
    name = run.record.get("job_id")
    if not name:
        raise UserError(f"run {run.run_id} has no SageMaker job")
    return apply_status(run, sagemaker.describe_training_job(TrainingJobName=name))


def kill_sagemaker_run(
    settings: Settings, stores: Stores, run_id: str, sagemaker: Any = None
) -> Run:
    """Stop the run's training job, then record ``killed`` and clean up."""
    from botocore.exceptions import ClientError

    def stop(run: Run) -> str:
        name = run.record.get("job_id")
        if not name:
            return "it had no SageMaker job yet"
        client = sagemaker or s3_client(settings, "sagemaker")
        try:
            client.stop_training_job(TrainingJobName=name)
        except ClientError as exc:  # already ended: nothing left to stop
            logs.event(log, "stopping the SageMaker job was refused", logging.WARNING,
                       job=name, error=str(exc))
        return "SageMaker job stopped"

    return kill_run(stores, settings.stack, run_id, stop)


PROCESSING_INPUT = "/opt/ml/processing/input"
SHARD_WORKDIR = "/opt/ml/processing/stnlp"


def shard_job_name(run_id: str, index: int) -> str:
    """The processing job of shard ``index`` of a batch run (``stnlp-batch-...``, at most 63
    characters: the run id's unique tail is kept)."""
    head = f"stnlp-batch-{index}-"
    return head + run_id[-(63 - len(head)):].lstrip("-")


def processing_job_request(spec: JobSpec, manifest: dict[str, Any], stack: str, run_id: str,
                           index: int, *, container: ContainerRelease) -> dict[str, Any]:
    """The ``create_processing_job`` arguments for shard ``index`` of batch run ``run_id``:
    the release files and the entry archive downloaded under ``/opt/ml/processing/input/``,
    the entry script run from the archive, the container in ``shard`` mode."""
    models, region = manifest["buckets"]["models"], manifest["region"]
    inputs = [*release_inputs(container, models),
              ("entry", s3_folder(models, container.entry.key))]
    entry = f"{PROCESSING_INPUT}/entry/{ENTRY_ARCHIVE}"
    return {
        "ProcessingJobName": shard_job_name(run_id, index),
        "RoleArn": sagemaker_role(manifest, stack),
        "AppSpecification": {"ImageUri": container.image, "ContainerEntrypoint": [
            "/bin/bash", "-c", f"mkdir -p /tmp/stnlp-entry && tar -xzf {entry} -C "
            f"/tmp/stnlp-entry && exec /tmp/stnlp-entry/{ENTRY_PROGRAM}"]},
        "ProcessingInputs": [{"InputName": name, "S3Input": {
            "S3Uri": uri, "LocalPath": f"{PROCESSING_INPUT}/{name}", "S3DataType": "S3Prefix",
            "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"}}
            for name, uri in inputs],
        "ProcessingResources": {"ClusterConfig": {
            "InstanceCount": 1, "InstanceType": ml_instance_type(spec.instance_type),
            "VolumeSizeInGB": spec.root_volume_gb}},
        "StoppingCondition": {"MaxRuntimeInSeconds": spec.max_runtime_minutes * 60},
        "Environment": container_environment(
            stack, region, "shard", STNLP_JOB=spec.name, STNLP_RUN_ID=run_id,
            STNLP_SHARD=str(index), STNLP_RELEASE_DIR=PROCESSING_INPUT,
            STNLP_WORKDIR=SHARD_WORKDIR),
        "Tags": tags(stack, spec.name, **{TAG_RUN: run_id}),
    }  # fmt: skip


def processing_shards(spec: JobSpec, settings: Settings, *, sagemaker: Any = None,
                      image: str | None = None, image_python: str | None = None,
                      poll: float = 15.0):  # fmt: skip
    """A :data:`stnlp.runtime.batch.ShardRunner` starting one processing job per shard and
    waiting until every one has ended; a job that failed or stopped fails the batch, naming
    the shard and SageMaker's reason."""
    import time

    from stnlp.runtime.batch import ShardError

    manifest = load_manifest(settings)
    client = sagemaker or s3_client(settings, "sagemaker")
    container = container_release(manifest, image, image_python)

    def runner(run: Run, todo: list[int], data_dir) -> None:
        upload_container_release(container, run.stores.models)
        names = {}
        for index in todo:
            request = processing_job_request(spec, manifest, settings.stack, run.run_id, index,
                                             container=container)  # fmt: skip
            client.create_processing_job(**request)
            names[index] = request["ProcessingJobName"]
        run.heartbeat(job_id=",".join(names.values()))
        logs.event(log, "shard jobs created", run_id=run.run_id, jobs=len(names))
        ended: dict[int, dict[str, Any]] = {}
        while len(ended) < len(names):
            for index, name in names.items():
                if index not in ended:
                    found = client.describe_processing_job(ProcessingJobName=name)
                    if found["ProcessingJobStatus"] in ENDED:
                        ended[index] = found
            if run.reload().get("kill_requested"):
                for index in set(names) - set(ended):
                    client.stop_processing_job(ProcessingJobName=names[index])
                raise KeyboardInterrupt("killed by request (stnlp runs kill)")
            if len(ended) < len(names):
                time.sleep(poll)
        failed = [f"shard {i} ({names[i]}): {d['ProcessingJobStatus']} "
                  f"{d.get('FailureReason') or ''}".strip()
                  for i, d in sorted(ended.items()) if d["ProcessingJobStatus"] != "Completed"]
        if failed:
            raise ShardError("; ".join(failed))

    return runner
