"""What a launch checks and what a failing run leaves behind, against moto and AWS's own rules:
a stack that says ``spot: false`` launches on-demand, the vCPU quota, stale checkpoints, and a
failure record that releases the lock even when the logs cannot be uploaded."""

from __future__ import annotations

import json

import pytest

from stnlp.common.errors import UserError
from stnlp.common.names import manifest_parameter
from stnlp.runtime.backends.ec2 import train_ec2
from stnlp.runtime.backends.sagemaker import train_sagemaker
from stnlp.runtime.bootstrap import Instance, prune_checkpoints
from stnlp.runtime.launchcheck import LaunchCheckError, quota_code, quota_problem
from stnlp.runtime.runs import Run
from stnlp.runtime.spot import Imds
from stnlp.runtime.store import s3_client
from tests.aws_rules import run_instances_problems, training_job_problems
from tests.cloud_stack import recording_client

JOB = "example-linefit"


def _on_demand_stack(cloud) -> None:
    """The stack's config says ``spot: false`` (prod): its manifest says so."""
    cloud.manifest["spot"] = False
    s3_client(cloud.settings, "ssm").put_parameter(
        Name=manifest_parameter(cloud.settings.stack), Value=json.dumps(cloud.manifest),
        Type="String", Overwrite=True)  # fmt: skip


def test_a_spot_job_on_an_on_demand_stack_launches_on_demand(cloud):
    """Item 8: the job allows spot, the stack config says no: no market options are sent."""
    _on_demand_stack(cloud)
    ec2 = recording_client(cloud.settings, "ec2", "RunInstances")
    spec = cloud.registry.job(JOB)
    assert spec.spot, "the example job allows spot"
    run_id = train_ec2(spec, cloud.settings, stores=cloud.stores, ec2=ec2)
    (request,) = [r for r in ec2.sent if not r.get("DryRun")]
    assert run_instances_problems(request, cloud.facts(), stack_spot=False) == []
    assert cloud.record(run_id)["spot"] is False
    with pytest.raises(LaunchCheckError, match="launches on-demand only"):
        train_ec2(spec, cloud.settings, stores=cloud.stores, ec2=ec2, spot=True)


def test_sagemaker_on_an_on_demand_stack_uses_no_managed_spot(cloud):
    _on_demand_stack(cloud)
    sagemaker = recording_client(cloud.settings, "sagemaker", "CreateTrainingJob")
    train_sagemaker(cloud.registry.job(JOB), cloud.settings, stores=cloud.stores,
                    sagemaker=sagemaker, image="123.dkr.ecr.us-east-1.amazonaws.com/stnlp:1-py311")
    (request,) = sagemaker.sent
    assert training_job_problems(request, cloud.facts(), stack_spot=False) == []
    assert not request.get("EnableManagedSpotTraining")


@pytest.mark.parametrize(("instance_type", "spot", "code"), [
    ("g5.xlarge", False, "L-DB2E81BA"),   # Running On-Demand G and VT instances
    ("g6e.12xlarge", True, "L-3819A6DF"),  # All G and VT Spot Instance Requests
    ("p4d.24xlarge", False, "L-417A185B"),  # Running On-Demand P instances
    ("m6i.xlarge", True, "L-34B43A08"),   # All Standard (A, C, D, H, I, M, R, T, Z) Spot
])  # fmt: skip
def test_vcpu_quota_codes_are_the_documented_ones(instance_type, spot, code):
    """Item 11: new accounts start at 0 vCPUs for G and P; the launch names the quota."""
    assert quota_code(instance_type, spot) == code
    problem = quota_problem(0.0, 4, instance_type, code)
    assert problem == (f"the account's vCPU quota {code} is 0 and one {instance_type} needs 4; "
                       "ask for an increase in Service Quotas (new accounts start at 0)")
    assert quota_problem(8.0, 4, instance_type, code) is None


def test_checkpoints_the_job_deleted_are_deleted_from_s3(cloud, tmp_path):
    """Item 11: a job keeping its last checkpoints only leaves only those in S3."""
    run = Run.start(cloud.stores, cloud.settings.stack, JOB, "ec2")
    folder = tmp_path / "checkpoints"
    for step in (1, 2, 3):
        (folder / f"step-{step}").mkdir(parents=True)
        (folder / f"step-{step}" / "adapter.safetensors").write_bytes(b"w" * step)
    run.upload_checkpoints(folder)
    for step in (1, 2):  # the job keeps the newest only
        (folder / f"step-{step}" / "adapter.safetensors").unlink()
        (folder / f"step-{step}").rmdir()
    gone = prune_checkpoints(cloud.stores, run.prefix, folder)
    assert sorted(k.rsplit("/", 2)[1] for k in gone) == ["step-1", "step-2"]
    left = cloud.stores.results.list(f"{run.prefix}/checkpoints/")
    assert left == [f"{run.prefix}/checkpoints/step-3/adapter.safetensors"]
    assert prune_checkpoints(cloud.stores, run.prefix, tmp_path / "empty") == []


def test_a_failure_record_releases_the_lock_even_when_the_logs_cannot_be_uploaded(cloud,
                                                                                 tmp_path):
    """Item 7: the watchdog's record step ends the run first, then tries the logs."""
    run = Run.start(cloud.stores, cloud.settings.stack, JOB, "ec2")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "bootstrap.log").symlink_to(tmp_path / "gone.log")  # an upload that fails
    instance = Instance(cloud.settings, cloud.stores, Imds("http://127.0.0.1:9"))
    instance.record_failure(JOB, run.run_id, "exceeded the job's maximum runtime", logs)
    record = cloud.record(run.run_id)
    assert (record["state"], record["result"]) == ("cleanup", "failed")
    assert cloud.lock_holder(JOB) is None
    with pytest.raises(UserError, match="belongs to job"):
        instance.record_failure("other-job", run.run_id, "x", logs)
