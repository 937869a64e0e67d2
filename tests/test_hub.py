"""Hub models on an instance (stnlp.runtime.hub), against a local hub over HTTP that serves real
files the way huggingface.co does (tests/hub_server.py), the token in an SSM SecureString and
the stack's models bucket on moto: the first run downloads and caches, the second asks the hub
for nothing."""

from __future__ import annotations

import json
import uuid

import pytest

from stnlp.common.errors import UserError
from stnlp.common.stackconfig import config_from_values
from stnlp.infra.identity import training_statements
from stnlp.runtime.hub import cache_prefix, fetch_hub_models, hub_models, ssm_token
from stnlp.runtime.store import S3Store, s3_client
from tests.aws_rules import ACCOUNT, denials, read_calls
from tests.conftest import new_bucket
from tests.hub_server import HubServer
from tests.recorder.sitecustomize import install, made_by_the_project

REPO = "meta-llama/Llama-3.2-3B-Instruct"
TOKEN = "hf_sandboxtoken0123456789"
CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
          "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 2,
          "num_key_value_heads": 2, "vocab_size": 256}
FILES = {"config.json": json.dumps(CONFIG).encode(),
         "generation_config.json": b'{"bos_token_id": 1, "eos_token_id": 2}',
         "model.safetensors": bytes(range(256)) * 64,
         "original/params.json": b'{"dim": 64}'}


@pytest.fixture
def hub(monkeypatch):
    """The gated repository on the local hub, ``HF_ENDPOINT`` pointing at it."""
    with HubServer({REPO: FILES}, gated={REPO: TOKEN}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        for name in ("HF_HOME", "HF_HUB_OFFLINE"):  # fetch_hub_models sets them for the worker
            monkeypatch.setenv(name, "")
        yield server


@pytest.fixture
def calls(tmp_path):
    """The AWS calls our code makes in the test (as the training role's, on an instance)."""
    record = tmp_path / "calls.jsonl"
    uninstall = install(record, "training", keep=made_by_the_project)
    yield record
    uninstall()


@pytest.fixture
def ssm(moto_settings, calls):
    """SSM on moto with the hub token as a SecureString (what `hubTokenParameter` names)."""
    client = s3_client(moto_settings, "ssm")
    name = f"/stnlp/t{uuid.uuid4().hex[:8]}/hf-token"
    client.put_parameter(Name=name, Value=TOKEN, Type="SecureString")
    return client, name


@pytest.fixture
def models(moto_settings, calls):
    """The stack's models bucket on moto."""
    client = s3_client(moto_settings)
    return S3Store(new_bucket(client, "models"), client)


def _refused(record, models: S3Store, parameter: str) -> list[str]:
    """What the training role the Pulumi program declares may not do of the recorded calls."""
    config = config_from_values("dev", "us-east-1", {"hubTokenParameter": parameter})
    buckets = {"datasets": "stnlp-dev-datasets", "models": models.bucket, "results": "r-dev"}
    return denials(read_calls(record), {"training": training_statements(
        config, ACCOUNT, buckets, ["chatbot-llama"])}, None)  # fmt: skip


def _snapshot(hf_home) -> dict[str, bytes]:
    folder = hf_home / "hub" / f"models--{REPO.replace('/', '--')}"
    revision = (folder / "refs" / "main").read_text()
    snapshot = folder / "snapshots" / revision
    return {p.relative_to(snapshot).as_posix(): p.read_bytes()
            for p in snapshot.rglob("*") if p.is_file()}


def test_first_run_downloads_with_the_token_second_run_asks_the_hub_nothing(
    hub, ssm, models, calls, tmp_path
):
    """Item 4: the gated base model comes with the SecureString's token, once per stack; the
    training role's declared policy allows every call (the token, the bucket's hub/ cache)."""
    repos = hub_models({"base_model": REPO, "lora_r": 8, "note_model": "not a repo id"})
    assert repos == [REPO]
    client, parameter = ssm
    first = fetch_hub_models(models, repos, tmp_path / "first", ssm_token(client, parameter))
    assert first == {REPO: "hub"}
    assert _snapshot(tmp_path / "first") == FILES
    asked_for = [carried for _, path, carried in hub.requests if REPO in path]
    assert asked_for and all(asked_for), "every request for the repo carried the token"
    cached = models.list(cache_prefix(REPO))
    assert f"{cache_prefix(REPO)}ref.json" in cached and len(cached) == len(FILES) + 1

    asked = len([r for r in hub.requests if REPO in r[1]])
    second = fetch_hub_models(models, repos, tmp_path / "second",
                              lambda: pytest.fail("the token is not needed from the cache"))
    assert second == {REPO: "bucket"}
    assert len([r for r in hub.requests if REPO in r[1]]) == asked, "nothing asked of the hub"
    assert _snapshot(tmp_path / "second") == FILES

    # the worker loads it offline from the restored cache, as from_pretrained does
    from huggingface_hub import snapshot_download

    folder = snapshot_download(REPO, cache_dir=tmp_path / "second" / "hub",
                               local_files_only=True)
    assert json.loads((tmp_path / "second" / "hub").joinpath(folder, "config.json")
                      .read_text())["model_type"] == "llama"
    made = {c["operation"] for c in read_calls(calls)}
    assert {"GetParameter", "PutObject", "GetObject"} <= made
    assert _refused(calls, models, parameter) == []
    assert _refused(calls, models, ""), "without hubTokenParameter the role may not read it"


def test_a_gated_model_without_a_token_is_one_line_naming_the_config_key(hub, models,
                                                                         tmp_path):
    with pytest.raises(UserError) as caught:
        fetch_hub_models(models, [REPO], tmp_path, ssm_token(None, None))
    message = str(caught.value)
    assert message.startswith(f"hub model {REPO!r} cannot be downloaded (GatedRepoError)")
    assert "hubTokenParameter" in message and "\n" not in message
    assert models.list(cache_prefix(REPO)) == [], "nothing half-cached"


def test_an_unreadable_token_parameter_is_one_line(ssm):
    client, parameter = ssm
    with pytest.raises(UserError, match=f"cannot read the hub token {parameter}x"):
        ssm_token(client, parameter + "x")()
