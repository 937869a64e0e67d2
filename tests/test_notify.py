"""Run-end messages: a local run appends one line to the local sink, an EC2 run publishes one
message to the stack's topic (which the training role and launcher may do, and only there),
a SageMaker run leaves it to EventBridge; a failing sink never changes the outcome."""

from __future__ import annotations

import json

from stnlp.runtime.notify import sink_path
from stnlp.runtime.runs import Run, load_run
from stnlp.runtime.store import LocalStore, Stores, s3_client
from tests.aws_rules import Need, decide

JOB = "example-linefit"


def _local_stores(tmp_path) -> Stores:
    return Stores(*(LocalStore(tmp_path / "store" / name) for name in
                    ("datasets", "models", "results")))  # fmt: skip


def _end(run: Run, how: str) -> None:
    run.transition("data_sync")
    run.transition("training")
    if how == "killed":
        run.fail("killed by request", killed=True)
    elif how == "failed":
        run.fail("ValueError: bad batch")
    run.cleanup()


def _lines(stores: Stores) -> list[dict]:
    path = sink_path(stores)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_each_local_run_end_is_one_line_in_the_sink(tmp_path):
    stores = _local_stores(tmp_path)
    ids = []
    for how in ("failed", "killed"):
        run = Run.start(stores, "test", JOB, "local")
        _end(run, how)
        run.cleanup()  # a second cleanup sends nothing more
        ids.append(run.run_id)
    assert sink_path(stores) == tmp_path / "store" / "notifications.jsonl"
    lines = _lines(stores)
    assert [(n["run_id"], n["result"]) for n in lines] == [(ids[0], "failed"), (ids[1], "killed")]
    assert lines[0]["error"] == "ValueError: bad batch" and lines[0]["ended_from"] == "failed"
    assert lines[0]["job"] == JOB and lines[0]["stack"] == "test"


def test_sagemaker_runs_are_left_to_eventbridge(tmp_path):
    stores = _local_stores(tmp_path)
    _end(Run.start(stores, "test", JOB, "sagemaker"), "failed")
    assert _lines(stores) == []


def test_a_sink_that_cannot_be_written_changes_nothing(tmp_path):
    stores = _local_stores(tmp_path)
    sink_path(stores).mkdir(parents=True)  # a folder where the file should be
    run = Run.start(stores, "test", JOB, "local")
    _end(run, "failed")
    record = load_run(stores, "test", run.run_id).record
    assert (record["state"], record["result"]) == ("cleanup", "failed")
    assert stores.results.list("test/locks/") == []


def test_an_ec2_run_end_is_published_to_the_stack_topic(cloud):
    settings, stack = cloud.settings, cloud.settings.stack
    sns, sqs, ssm = (s3_client(settings, s) for s in ("sns", "sqs", "ssm"))
    topic = sns.create_topic(Name=f"stnlp-{stack}-alarms")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"{stack}-ends")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic, Protocol="sqs",
                  Endpoint=queue_arn["Attributes"]["QueueArn"])  # fmt: skip
    parameter = f"/stnlp/{stack}/manifest"
    ssm.put_parameter(Name=parameter, Type="String", Overwrite=True,
                      Value=json.dumps({**cloud.manifest, "notify_topic_arn": topic}))
    run = Run.start(cloud.stores, stack, JOB, "ec2")
    _end(run, "failed")
    received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    (envelope,) = [json.loads(m["Body"]) for m in received]
    note = json.loads(envelope["Message"])
    assert (note["run_id"], note["result"], note["backend"]) == (run.run_id, "failed", "ec2")
    assert envelope["Subject"] == f"stnlp {stack}: {JOB} failed (ec2)"
    policies = cloud.policies()  # exactly this topic, for the instances and the launcher
    for principal in ("training", "launcher"):
        assert decide(policies[principal], Need("sns:Publish", topic)) == "allow"
        assert decide(policies[principal], Need("sns:Publish", topic + "-x")) != "allow"
    assert decide(policies["sagemaker"], Need("sns:Publish", topic)) != "allow"


def test_a_stack_without_a_topic_still_ends_the_run(cloud):
    run = Run.start(cloud.stores, cloud.settings.stack, JOB, "ec2")
    _end(run, "killed")
    assert cloud.record(run.run_id)["result"] == "killed"
    assert cloud.lock_holder(JOB) is None
