"""The SageMaker backend against moto's server, and its container's bootstrap in a sandbox."""

from __future__ import annotations

import pytest

from stnlp.common.errors import UserError
from stnlp.runtime.backends.sagemaker import (
    DEFAULT_IMAGE,
    apply_status,
    image_python,
    mirror_status,
    train_sagemaker,
)
from stnlp.runtime.registry import ModelRegistry
from stnlp.runtime.runs import Run, load_run
from tests.aws_rules import training_job_problems
from tests.cloud_stack import recording_client
from tests.sagemaker_sandbox import SageMakerSandbox

JOB = "example-linefit"


@pytest.fixture
def sagemaker(cloud):
    """A SageMaker client on moto that records every CreateTrainingJob request it sends."""
    return recording_client(cloud.settings, "sagemaker", "CreateTrainingJob")


IMAGE = "123.dkr.ecr.us-east-1.amazonaws.com/stnlp:1-py311"


def _start(cloud, sagemaker, **kwargs) -> str:
    spec = cloud.registry.job(JOB)
    kwargs.setdefault("image", IMAGE)
    return train_sagemaker(spec, cloud.settings, stores=cloud.stores, sagemaker=sagemaker,
                           **kwargs)


def test_training_job_request_runs_the_entry_script_with_managed_spot(cloud, sagemaker):
    run_id = _start(cloud, sagemaker, preset="tiny")
    (request,) = sagemaker.sent
    assert training_job_problems(request, cloud.facts(), stack_spot=True) == []
    stack, results = cloud.settings.stack, cloud.manifest["buckets"]["results"]
    prefix = f"s3://{results}/{stack}/runs/{run_id}"
    assert request["TrainingJobName"] == f"stnlp-{run_id}"
    assert request["RoleArn"] == cloud.manifest["sagemaker_role_arn"]
    assert request["AlgorithmSpecification"] == {"TrainingImage": IMAGE,
                                                 "TrainingInputMode": "File"}
    assert request["HyperParameters"]["sagemaker_program"] == "stnlp-entry.sh"
    assert request["Environment"]["STNLP_MODE"] == "train"
    assert request["Environment"]["STNLP_RUN_ID"] == run_id
    assert "VpcConfig" not in request, "SageMaker's own network reaches S3, SSM and PyPI"
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
                for c in request["InputDataConfig"]}  # fmt: skip
    models = cloud.manifest["buckets"]["models"]
    assert set(channels) == {"wheel0", "wheel1", "lock"}  # the project, the example plugin
    for uri in channels.values():  # each a content-addressed folder holding one shipped file
        key = uri.removeprefix(f"s3://{models}/")
        assert key.startswith("packages/sha256/") and len(cloud.stores.models.list(key)) == 1
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 600,
                                            "MaxWaitTimeInSeconds": 1200}
    assert request["CheckpointConfig"] == {"S3Uri": f"{prefix}/checkpoints/",
                                           "LocalPath": "/opt/ml/checkpoints"}
    assert request["ResourceConfig"]["InstanceType"] == "ml.g5.xlarge"
    record = cloud.record(run_id)
    assert record["backend"] == "sagemaker" and record["job_id"] == request["TrainingJobName"]
    assert record["hyperparameters"]["steps"] == 5
    described = sagemaker.describe_training_job(TrainingJobName=record["job_id"])
    assert described["CheckpointConfig"]["S3Uri"] == f"{prefix}/checkpoints/"
    assert described["EnableManagedSpotTraining"] is True


def test_the_image_python_decides_the_lock_and_an_unknown_one_is_asked_for(cloud, sagemaker):
    """The PyTorch training image runs Python 3.11: a lock for the AMI's 3.12 would not install
    there. An image whose tag says nothing needs --image-python."""
    assert image_python(DEFAULT_IMAGE) == "3.11"
    assert image_python("x/y:2.6.0-gpu-py312-cu126-ubuntu22.04-sagemaker") == "3.12"
    with pytest.raises(UserError, match="--image-python"):
        _start(cloud, sagemaker, image="123.dkr.ecr.us-east-1.amazonaws.com/mine:latest")
    assert sagemaker.sent == [] and cloud.lock_holder(JOB) is None


def test_the_container_installs_the_release_and_the_run_publishes(cloud, sagemaker, tmp_path):
    """The entry script the job ships, run as SageMaker and the image's toolkit run it: each
    release file checked and installed (pip --require-hashes, nothing by name), then the
    bootstrap: the run succeeds, publishes, and every call passes the SageMaker role's policy."""
    run_id = _start(cloud, sagemaker, preset="tiny")
    (request,) = sagemaker.sent
    done = SageMakerSandbox(cloud, tmp_path / "sm").train(request["TrainingJobName"], request)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = cloud.record(run_id)
    assert (record["state"], record["result"]) == ("cleanup", "succeeded"), record
    assert record["instance_id"] == record["job_id"]
    assert "stnlp-metric lines_seen=" in done.stdout
    registry = ModelRegistry(cloud.stores.models)
    assert registry.manifest("line-length", registry.latest("line-length"))["run_id"] == run_id
    assert mirror_status(load_run(cloud.stores, cloud.settings.stack, run_id),
                         sagemaker) == "Completed"
    assert cloud.lock_holder(JOB) is None


def test_max_wait_shorter_than_runtime_is_refused_before_the_call(cloud, sagemaker):
    with pytest.raises(UserError, match=r"MaxWaitTimeInSeconds \(300\) must be at least "
                                        r"MaxRuntimeInSeconds \(600\)"):
        _start(cloud, sagemaker, max_wait_seconds=300)
    assert sagemaker.sent == []
    assert cloud.lock_holder(JOB) is None
    assert cloud.stores.results.list(f"{cloud.settings.stack}/runs/") == []


def test_a_job_that_ended_without_its_container_reporting_ends_the_run(cloud, sagemaker):
    run_id = _start(cloud, sagemaker)  # moto completes the job at once; no container ran
    run = load_run(cloud.stores, cloud.settings.stack, run_id)
    assert mirror_status(run, sagemaker) == "Completed"
    record = cloud.record(run_id)
    assert (record["state"], record["result"]) == ("cleanup", "failed")
    assert record["sagemaker_status"] == "Completed"
    assert "completed but the run stopped in 'initialization'" in record["error"]
    assert cloud.lock_holder(JOB) is None


@pytest.mark.parametrize(
    ("status", "result", "error"),
    [("Failed", "failed", "SageMaker training job failed: CUDA out of memory"),
     ("Stopped", "killed", "SageMaker training job was stopped")],
)
def test_failed_and_stopped_jobs_map_to_run_results(cloud, status, result, error):
    run = Run.start(cloud.stores, cloud.settings.stack, JOB, "sagemaker")
    run.transition("data_sync")
    run.transition("training")
    apply_status(run, {"TrainingJobStatus": "InProgress", "SecondaryStatus": "Training"})
    assert cloud.record(run.run_id)["sagemaker_secondary_status"] == "Training"
    apply_status(run, {"TrainingJobStatus": status, "FailureReason": "CUDA out of memory"})
    record = cloud.record(run.run_id)
    assert (record["state"], record["result"], record["error"]) == ("cleanup", result, error)
    assert cloud.lock_holder(JOB) is None
