"""`stnlp deploy` / `undeploy`: a chatbot version on a SageMaker endpoint (moto), its requests
judged by SageMaker's documented rules and every call by the stack's declared roles."""

from __future__ import annotations

import json

import pytest
import requests

from stnlp.common.errors import UserError
from stnlp.common.settings import Settings
from stnlp.runtime.backends.sagemaker_deploy import deploy, idle_cost_line, undeploy
from stnlp.runtime.endpoint import endpoint_source
from stnlp.runtime.hub import cache_prefix
from stnlp.runtime.registry import ModelRegistry
from stnlp.runtime.store import s3_client
from tests.aws_rules import hosting_problems
from tests.cloud_stack import judged_cloud, recording_client

JOB, BASE = "chatbot-llama", "meta-llama/Llama-3.2-3B-Instruct"


@pytest.fixture
def cloud(moto_endpoint, release_cache, tmp_path, monkeypatch):
    with judged_cloud(moto_endpoint, tmp_path, monkeypatch, disabled="classifier,network") as c:
        yield c


def _publish_adapter(cloud, tmp_path) -> str:
    """A chatbot version as the chatbot job publishes one, and the stack's base model cache."""
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": 16, "base_model_name_or_path": BASE}))
    (folder / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    (folder / "chatbot.json").write_text(json.dumps({"character": "Eleven", "base_model": BASE}))
    registry = ModelRegistry(cloud.stores.models)
    version = registry.stage(JOB, folder, base_model=BASE, run_id="r1")
    registry.move_latest(JOB, version, "test")
    s3, bucket = s3_client(cloud.settings), cloud.manifest["buckets"]["models"]
    # what a training run on the stack caches (as the training role, not the launcher)
    s3.put_object(Bucket=bucket, Key=f"{cache_prefix(BASE)}rev1/config.json", Body=b"{}")
    s3.put_object(Bucket=bucket, Key=f"{cache_prefix(BASE)}ref.json",
                  Body=json.dumps({"revision": "rev1"}).encode())
    return version


def test_deploy_serves_the_latest_adapter_and_the_chat_tab_finds_it(cloud, tmp_path, moto_endpoint):
    version = _publish_adapter(cloud, tmp_path)
    spec = cloud.registry.job(JOB)
    sent = {op: recording_client(cloud.settings, "sagemaker", op) for op in ("CreateModel",)}
    sagemaker = sent["CreateModel"]
    requests_seen = []
    for op in ("CreateModel", "CreateEndpointConfig", "CreateEndpoint"):
        sagemaker.meta.events.register(f"provide-client-params.sagemaker.{op}",
                                       lambda params, **_: requests_seen.append(dict(params)))
    # moto's enum of hosting types predates ml.g5 (the default): a T4 one stands in
    record = deploy(spec, cloud.settings, cloud.stores, sagemaker=sagemaker,
                    instance_type="ml.g4dn.xlarge")
    model, config, endpoint = requests_seen
    assert hosting_problems(model, config, endpoint, cloud.facts()) == []
    assert record["version"] == version and record["adapter"] == "eleven"
    assert model["PrimaryContainer"]["Environment"]["LORA_ADAPTERS"] == \
        "eleven=/opt/ml/additional-model-data-sources/adapter"
    status = sagemaker.describe_endpoint(EndpointName=record["endpoint"])["EndpointStatus"]
    assert status == "InService"
    with pytest.raises(UserError, match="is already on endpoint"):
        deploy(spec, cloud.settings, cloud.stores, sagemaker=sagemaker,
               instance_type="ml.g4dn.xlarge")

    chat = endpoint_source(cloud.settings, JOB)
    assert chat is not None and record["endpoint"] in chat.label and "Eleven" in chat.label
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Friends "
                                                   "don't lie."}, "finish_reason": "stop"}]}
    requests.post(f"{moto_endpoint}/moto-api/static/sagemaker/endpoint-results", timeout=10,
                  json={"results": [{"Body": json.dumps(answer),
                                     "ContentType": "application/json"}]})
    messages = [{"role": "system", "content": "You are Eleven."},
                {"role": "user", "content": "Do friends lie?"}]
    assert list(chat.stream(messages, 32, 0.0, 0.9)) == ["Friends don't lie."]
    body = chat.request(messages, 32, 0.0, 0.9)  # TGI's Messages API: no temperature 0
    assert body == {"model": "eleven", "messages": messages, "max_tokens": 32, "top_p": 0.9}
    invoke = {"principal": "interface", "service": "sagemaker-runtime",
              "operation": "InvokeEndpoint", "params": {"EndpointName": record["endpoint"]}}
    assert cloud.denials([invoke]) == []  # the interface host may call it

    deleted = undeploy(spec, cloud.settings, cloud.stores, sagemaker=sagemaker)
    assert deleted == [f"{kind} {record['endpoint']}" for kind in
                       ("endpoint", "endpoint config", "model")]
    assert endpoint_source(cloud.settings, JOB) is None
    assert sagemaker.list_endpoints()["Endpoints"] == []
    with pytest.raises(UserError, match="has no endpoint record"):
        undeploy(spec, cloud.settings, cloud.stores, sagemaker=sagemaker)


def test_nothing_to_deploy_is_named_before_any_call_and_the_cost_is_shown(cloud):
    sagemaker = recording_client(cloud.settings, "sagemaker", "CreateModel")
    with pytest.raises(UserError, match="has no published version to deploy"):
        deploy(cloud.registry.job(JOB), cloud.settings, cloud.stores, sagemaker=sagemaker)
    assert sagemaker.sent == []
    assert idle_cost_line("ml.g5.2xlarge").startswith("endpoint cost: $1.515/hour = $1106/month")


def test_the_endpoint_source_is_a_no_op_on_the_local_backend(tmp_path):
    assert endpoint_source(Settings(store=str(tmp_path / "store")), JOB) is None
    assert not (tmp_path / "store").exists()
