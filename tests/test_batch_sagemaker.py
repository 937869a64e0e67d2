"""Batch shards as SageMaker processing jobs on moto's server: each CreateProcessingJob passes
AWS's documented rules and the stack's policies; the shard's container entry (mode ``shard``)
runs in this process once its job is created, as SageMaker would start it; a shard whose job
ended without results fails the batch, publishing nothing."""

from __future__ import annotations

import json

import pytest

from stnlp.common.settings import Settings
from stnlp.plugins.manager import build_plugin_manager
from stnlp.runtime.backends.sagemaker import processing_shards
from stnlp.runtime.batch import ShardError, run_batch, shard_job
from stnlp.runtime.registry import ModelRegistry
from stnlp.runtime.runs import list_runs
from stnlp.runtime.upload import upload_path
from tests.aws_rules import processing_job_problems
from tests.cloud_stack import recording_client
from tests.test_batch import SAMPLE

IMAGE = "123.dkr.ecr.us-east-1.amazonaws.com/stnlp:1-py311"
JOB = "classifier-theme"


@pytest.fixture
def theme(cloud, tmp_path):
    """The theme job's spec, and the subtitles uploaded to the stack's datasets bucket."""
    upload_path(SAMPLE / "subtitles", cloud.stores.datasets, progress=False)
    return build_plugin_manager(Settings(store=str(tmp_path / "s"), stack="x")).job(JOB)


def _client(cloud, spec, tmp_path, lost: set[int] = frozenset()):
    """SageMaker on moto; each shard's container runs when its job is created (moto marks
    the job Completed at once), except the ``lost`` ones."""
    client = recording_client(cloud.settings, "sagemaker", "CreateProcessingJob")
    create = client.create_processing_job

    def create_and_run(**request):
        answer = create(**request)
        env = request["Environment"]
        if int(env["STNLP_SHARD"]) not in lost:
            workdir = tmp_path / request["ProcessingJobName"]
            shard_job({**env, "STNLP_WORKDIR": str(workdir)}, spec, cloud.settings.stack,
                      cloud.stores)  # fmt: skip
        return answer

    client.create_processing_job = create_and_run
    return client


def test_shards_run_as_processing_jobs_and_publish_one_version(cloud, theme, tmp_path):
    client = _client(cloud, theme, tmp_path)
    runner = processing_shards(theme, cloud.settings, sagemaker=client, image=IMAGE, poll=0)
    run_id = run_batch(theme, cloud.settings, shards=2, backend="sagemaker", runner=runner,
                       stores=cloud.stores, preset="tiny", progress=False)  # fmt: skip
    assert len(client.sent) == 2
    for index, request in enumerate(client.sent):
        assert processing_job_problems(request, cloud.facts()) == []
        assert request["RoleArn"] == cloud.manifest["sagemaker_role_arn"]
        assert request["ProcessingJobName"].startswith(f"stnlp-batch-{index}-")
        assert request["Environment"]["STNLP_MODE"] == "shard"
        described = client.describe_processing_job(ProcessingJobName=request["ProcessingJobName"])
        assert described["ProcessingJobStatus"] == "Completed"
    record = cloud.record(run_id)
    assert (record["backend"], record["result"]) == ("sagemaker", "succeeded"), record
    registry = ModelRegistry(cloud.stores.models)
    manifest = registry.manifest(theme.output_model, registry.latest(theme.output_model))
    assert manifest["run_id"] == run_id and manifest["sharding"]["backend"] == "sagemaker"
    folder = registry.fetch(theme.output_model, dest=tmp_path / "model").path
    episodes = json.loads(json.loads((folder / "themes.json").read_text())["per_episode"])
    assert episodes["index"] == ["S01E01", "S01E02", "S01E03", "S01E04"]
    assert cloud.lock_holder(JOB) is None


def test_a_shard_ending_without_results_fails_the_batch(cloud, theme, tmp_path):
    client = _client(cloud, theme, tmp_path, lost={1})
    runner = processing_shards(theme, cloud.settings, sagemaker=client, image=IMAGE, poll=0)
    with pytest.raises(ShardError, match="shard.s. 1 ended without their results"):
        run_batch(theme, cloud.settings, shards=2, backend="sagemaker", runner=runner,
                  stores=cloud.stores, preset="tiny", progress=False)  # fmt: skip
    (record,) = list_runs(cloud.stores, cloud.settings.stack, JOB)
    assert (record["state"], record["result"]) == ("cleanup", "failed")
    assert ModelRegistry(cloud.stores.models).latest(theme.output_model) is None
    assert cloud.lock_holder(JOB) is None
