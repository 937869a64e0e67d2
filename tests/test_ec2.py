"""The EC2 backend against moto's server: the launch request, the lock, kill and sweep."""

from __future__ import annotations

import base64
import json

import pytest

from stnlp.common.errors import UserError
from stnlp.common.names import TAG_JOB, TAG_STACK
from stnlp.runtime.backends.ec2 import (
    SPOT_OPTIONS,
    TAG_RUN,
    kill_ec2_run,
    sweep_instances,
    train_ec2,
)
from stnlp.runtime.runs import JobLockedError, Run
from stnlp.runtime.store import s3_client
from tests.cloud_stack import recording_client

JOB = "example-linefit"


@pytest.fixture
def ec2(cloud):
    """An EC2 client on moto that records every RunInstances request it sends."""
    return recording_client(cloud.settings, "ec2", "RunInstances")


def _launches(ec2) -> list[dict]:
    """The RunInstances requests that launched (not the DryRun permission checks)."""
    return [r for r in ec2.sent if not r.get("DryRun")]


def _launch(cloud, ec2, **kwargs) -> str:
    return train_ec2(cloud.registry.job(JOB), cloud.settings, stores=cloud.stores, ec2=ec2,
                     **kwargs)


def _tags(instance: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


@pytest.mark.parametrize("spot", [True, False])
def test_launch_request_carries_template_tags_user_data_and_market(cloud, ec2, spot):
    run_id = _launch(cloud, ec2, preset="tiny", spot=spot)
    (request,) = _launches(ec2)
    assert [r["DryRun"] for r in ec2.sent if r.get("DryRun")] == [True]
    stack = cloud.settings.stack
    tags = [{"Key": TAG_STACK, "Value": stack}, {"Key": TAG_JOB, "Value": JOB},
            {"Key": TAG_RUN, "Value": run_id}]
    expected = {
        "LaunchTemplate": {"LaunchTemplateId": cloud.manifest["launch_templates"][JOB]["id"],
                           "Version": "$Latest"},
        "MinCount": 1, "MaxCount": 1, "ClientToken": f"{run_id}-1",
        "SubnetId": cloud.manifest["subnet_ids"][0],
        "TagSpecifications": [{"ResourceType": "instance", "Tags": tags},
                              {"ResourceType": "volume", "Tags": tags}],
    }  # fmt: skip
    if spot:
        expected["InstanceMarketOptions"] = SPOT_OPTIONS
    user_data = request.pop("UserData")
    assert request == expected
    command = f"-m stnlp.runtime.bootstrap --stack {stack} --job {JOB} --run-id {run_id}\n"
    assert command in user_data
    assert "shutdown -h +25" in user_data  # max runtime 10 min + grace
    record = cloud.record(run_id)
    instance_id = record["instance_id"]
    assert record["backend"] == "ec2" and record["state"] == "initialization"
    assert record["hyperparameters"]["steps"] == 5 and record["spot"] is spot
    assert record["max_runtime_seconds"] == 600
    assert cloud.lock_holder(JOB) == run_id
    instance = cloud.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0][
        "Instances"][0]
    template_id = cloud.manifest["launch_templates"][JOB]["id"]
    assert _tags(instance) == {TAG_STACK: stack, TAG_JOB: JOB, TAG_RUN: run_id,
                               "aws:ec2launchtemplate:id": template_id,
                               "aws:ec2launchtemplate:version": "1"}
    stored = cloud.ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    assert base64.b64decode(stored["UserData"]["Value"]).decode() == user_data
    shipped = cloud.stores.models.list("packages/sha256/")
    assert any(key.endswith("-py3-none-any.whl") for key in shipped)
    assert all(f"--key {key} " in user_data for key in shipped)


def test_second_launch_of_a_running_job_is_refused(cloud, ec2):
    first = _launch(cloud, ec2)
    with pytest.raises(JobLockedError, match=first):
        _launch(cloud, ec2)
    assert len(_launches(ec2)) == 1


def test_stack_without_the_jobs_template_fails_the_run_cleanly(cloud, ec2):
    cloud.manifest["launch_templates"].pop(JOB)
    s3_client(cloud.settings, "ssm").put_parameter(
        Name=f"/stnlp/{cloud.settings.stack}/manifest", Value=json.dumps(cloud.manifest),
        Type="String", Overwrite=True,
    )
    with pytest.raises(UserError, match=f"no launch template for job '{JOB}'"):
        _launch(cloud, ec2)
    assert ec2.sent == []
    assert cloud.lock_holder(JOB) is None


def test_relaunching_an_ended_run_is_refused(cloud, ec2):
    run_id = _launch(cloud, ec2)
    kill_ec2_run(cloud.settings, cloud.stores, run_id, ec2)
    with pytest.raises(UserError, match="cannot be resumed"):
        _launch(cloud, ec2, run_id=run_id)


def test_kill_records_killed_and_terminates_the_instance(cloud, ec2):
    run_id = _launch(cloud, ec2)
    run = Run(cloud.stores, cloud.settings.stack, cloud.record(run_id), "")
    run.reload()
    run.transition("data_sync")
    run.transition("training")
    kill_ec2_run(cloud.settings, cloud.stores, run_id, ec2)
    record = cloud.record(run_id)
    assert (record["state"], record["result"]) == ("cleanup", "killed")
    assert cloud.instance_state(record["instance_id"]) in ("shutting-down", "terminated")
    assert cloud.lock_holder(JOB) is None


def test_sweep_terminates_instances_of_ended_and_stale_runs_only(cloud, ec2):
    live = _launch(cloud, ec2)
    orphan = ec2.run_instances(
        LaunchTemplate={"LaunchTemplateId": cloud.manifest["launch_templates"][JOB]["id"]},
        MinCount=1, MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": TAG_STACK, "Value": cloud.settings.stack},
            {"Key": TAG_RUN, "Value": "example-linefit-gone"}]}],
    )["Instances"][0]["InstanceId"]  # fmt: skip
    live_instance = cloud.record(live)["instance_id"]
    swept = sweep_instances(cloud.settings, cloud.stores, ec2)
    assert [(s["instance_id"], s["reason"]) for s in swept] == [(orphan, "no run record")]
    assert cloud.instance_state(live_instance) == "running"

    swept = sweep_instances(cloud.settings, cloud.stores, ec2, stale_after=-1)
    assert [s["instance_id"] for s in swept] == [live_instance]
    record = cloud.record(live)
    assert (record["state"], record["result"]) == ("cleanup", "failed")
    assert record["error"].startswith("swept: no heartbeat since")
    assert cloud.instance_state(live_instance) in ("shutting-down", "terminated")
    assert cloud.lock_holder(JOB) is None


def _cli(monkeypatch, tmp_path, cloud, *args: str):
    from click.testing import CliRunner

    from stnlp.runtime.cli.base import cli

    monkeypatch.setenv("STNLP_ENDPOINT_URL", cloud.settings.endpoint_url)
    monkeypatch.setenv("STNLP_REGION", cloud.settings.region)
    monkeypatch.setenv("STNLP_DISABLED_PLUGINS", ",".join(cloud.settings.disabled_plugins))
    monkeypatch.delenv("STNLP_SETTINGS", raising=False)
    monkeypatch.chdir(tmp_path)
    return CliRunner().invoke(cli, [*args, "--stack", cloud.settings.stack])


def test_runs_wait_streams_states_and_logs_until_the_end(cloud, ec2, monkeypatch, tmp_path):
    run_id = _launch(cloud, ec2)
    run = Run(cloud.stores, cloud.settings.stack, cloud.record(run_id), "")
    run.reload()
    run.transition("data_sync")
    log = tmp_path / "bootstrap.log"
    log.write_text("preflight ok\ndata synced\n")
    run.upload_logs(log)
    run.fail("RuntimeError: boom")
    run.cleanup()
    result = _cli(monkeypatch, tmp_path, cloud, "runs", "wait", run_id, "--poll", "0.1")
    assert isinstance(result.exception, UserError)
    assert str(result.exception) == f"run {run_id} failed: RuntimeError: boom"
    assert f"{run_id}: cleanup" in result.output
    assert "bootstrap.log: preflight ok\nbootstrap.log: data synced" in result.output


def test_runs_wait_reports_a_run_without_heartbeats_and_how_to_end_it(cloud, ec2, monkeypatch,
                                                                     tmp_path):
    """Item 7: an instance that died before its bootstrap ever beat leaves the run open; `runs
    wait` says so (and which command ends it) instead of waiting forever."""
    run_id = _launch(cloud, ec2)
    cloud.ec2.terminate_instances(InstanceIds=[cloud.record(run_id)["instance_id"]])
    result = _cli(monkeypatch, tmp_path, cloud, "runs", "wait", run_id, "--poll", "0.1",
                  "--stale-after", "0")
    assert isinstance(result.exception, UserError), result.output
    message = str(result.exception)
    assert message.startswith(f"run {run_id} has sent no heartbeat since ")
    assert f"`stnlp runs sweep --stack {cloud.settings.stack}` ends it" in message
    sweep = _cli(monkeypatch, tmp_path, cloud, "runs", "sweep")
    assert sweep.exit_code == 0, sweep.output
    assert _ended_failed(cloud, run_id)["error"].startswith("swept: its instance is ")


def test_runs_wait_stops_at_its_timeout_and_says_how_to_follow_again(cloud, ec2, monkeypatch,
                                                                    tmp_path):
    run_id = _launch(cloud, ec2)
    result = _cli(monkeypatch, tmp_path, cloud, "runs", "wait", run_id, "--poll", "0.1",
                  "--timeout", "0.3")
    assert isinstance(result.exception, UserError), result.output
    assert str(result.exception) == (
        f"stopped waiting for run {run_id} after 0.3 s; it is still in initialization: "
        f"`stnlp runs wait {run_id} --stack {cloud.settings.stack}` follows it again, "
        f"`stnlp runs kill {run_id} --stack {cloud.settings.stack}` stops it")
    assert cloud.record(run_id)["state"] == "initialization", "waiting changes nothing"


def test_wait_timeout_defaults_to_the_jobs_maximum_runtime_plus_grace(cloud, ec2):
    from stnlp.runtime.cli.cloud import WAIT_GRACE_SECONDS, wait_timeout

    record = cloud.record(_launch(cloud, ec2))
    assert wait_timeout(record) == 10 * 60 + WAIT_GRACE_SECONDS  # the job's 10 minutes


def _ended_failed(cloud, run_id: str) -> dict:
    record = cloud.record(run_id)
    assert (record["state"], record["result"]) == ("cleanup", "failed"), record
    assert cloud.lock_holder(JOB) is None
    return record


def test_runs_sweep_command_terminates_stale_instances(cloud, ec2, monkeypatch, tmp_path):
    run_id = _launch(cloud, ec2)
    instance_id = cloud.record(run_id)["instance_id"]
    result = _cli(monkeypatch, tmp_path, cloud, "runs", "sweep", "--stale-after", "-1")
    assert result.exit_code == 0, result.output
    assert f"terminated {instance_id} (run {run_id}): no heartbeat since" in result.output
    assert cloud.record(run_id)["result"] == "failed"


def test_cli_helpers_launch_and_kill_a_cloud_run(cloud):
    from stnlp.runtime.cli.cloud import kill_cloud_run, launch

    record = launch("ec2", cloud.registry.job(JOB), cloud.settings, cloud.stores, wait=False,
                    preset="tiny")
    assert record["state"] == "initialization" and record["instance_id"]
    ended = kill_cloud_run(cloud.settings, cloud.stores, record["run_id"])
    assert (ended["state"], ended["result"]) == ("cleanup", "failed")
    assert ended["error"] == "killed by `stnlp runs kill`; instance terminated"
    assert cloud.instance_state(record["instance_id"]) in ("shutting-down", "terminated")


def test_runs_resume_relaunches_an_interrupted_run(cloud, ec2, monkeypatch, tmp_path):
    run_id = _launch(cloud, ec2)
    first = cloud.record(run_id)["instance_id"]
    run = Run(cloud.stores, cloud.settings.stack, cloud.record(run_id), "")
    run.reload()
    run.transition("data_sync")
    run.transition("training")
    cloud.ec2.terminate_instances(InstanceIds=[first])  # the spot interruption
    result = _cli(monkeypatch, tmp_path, cloud, "runs", "resume", run_id)
    assert result.exit_code == 0, result.output
    record = cloud.record(run_id)
    assert record["launches"][0] == first and len(record["launches"]) == 2
    assert record["instance_id"] == record["launches"][1] != first
    assert cloud.instance_state(record["instance_id"]) == "running"
    assert record["state"] == "training" and cloud.lock_holder(JOB) == run_id


def test_stnlp_train_ec2_launches_and_stnlp_runs_kill_terminates(cloud, monkeypatch, tmp_path):
    """The user's commands: `stnlp train JOB --backend ec2 --stack S`, then `stnlp runs kill`."""
    result = _cli(monkeypatch, tmp_path, cloud, "train", JOB, "--backend", "ec2",
                  "--preset", "tiny")  # fmt: skip
    assert result.exit_code == 0, result.output
    (run_id,) = [r for r in cloud.stores.results.list(f"{cloud.settings.stack}/runs/")
                 if r.endswith("/state.json")]  # fmt: skip
    run_id = run_id.split("/")[2]
    assert run_id in result.output
    instance_id = cloud.record(run_id)["instance_id"]
    assert cloud.instance_state(instance_id) == "running"
    result = _cli(monkeypatch, tmp_path, cloud, "runs", "kill", run_id)
    assert result.exit_code == 0, result.output
    assert cloud.record(run_id)["result"] == "failed"
    assert cloud.instance_state(instance_id) in ("shutting-down", "terminated")
    assert cloud.lock_holder(JOB) is None


def test_the_region_falls_back_to_aws_default_region(tmp_path):
    """Item 11: a user whose shell sets only AWS_DEFAULT_REGION (what the AWS CLI reads) gets
    that region, not us-east-1; AWS_REGION and STNLP_REGION still come first."""
    from stnlp.common.settings import load_settings

    assert load_settings(env={"AWS_DEFAULT_REGION": "eu-west-1"}, cwd=tmp_path).region == (
        "eu-west-1")
    both = {"AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "ap-south-1"}
    assert load_settings(env=both, cwd=tmp_path).region == "ap-south-1"
    assert load_settings(env={**both, "STNLP_REGION": "us-west-2"}, cwd=tmp_path).region == (
        "us-west-2")
