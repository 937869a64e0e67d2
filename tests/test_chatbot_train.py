"""Chatbot training (tiny preset) end to end: resume, artifacts, streaming, offline, eval."""

from __future__ import annotations

import json

import gradio as gr
import pytest
import torch

from stnlp.common.settings import Settings
from stnlp.plugins.chatbot import artifacts
from stnlp.plugins.chatbot.data import encode_all, load_split
from stnlp.plugins.chatbot.infer import (
    OFFLINE,
    ModelChat,
    describe_sources,
    offline_responder,
    resolve_sources,
    source_for,
    trim_history,
)
from stnlp.plugins.chatbot.tab import respond
from stnlp.plugins.chatbot.train import held_out_loss, train
from stnlp.plugins.manager import build_plugin_manager
from stnlp.runtime.cli import main
from stnlp.runtime.registry import ModelRegistry
from stnlp.runtime.store import open_stores
from stnlp.runtime.training import TrainingContext
from stnlp.runtime.ui import AppContext, build_app
from tests.test_chatbot_data import ELEVEN_LINES, OTHERS, write_dataset


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    settings = Settings(store=str(tmp_path_factory.mktemp("store")))
    return build_plugin_manager(settings)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"))


def _context(root, registry, data_dir, **overrides) -> TrainingContext:
    params = registry.job("chatbot-llama").resolved_hyperparameters("tiny", overrides)
    return TrainingContext.in_directory(root, "run-1", "chatbot-llama", params, data_dir)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, registry, data_dir):
    """Train 2 steps, then resume the same run to 4 steps."""
    root = tmp_path_factory.mktemp("run")
    first = train(_context(root, registry, data_dir, max_steps=2, min_lines=10, epochs=3))
    ctx = _context(root, registry, data_dir, max_steps=4, min_lines=10, epochs=3)
    outcome = train(ctx)
    return ctx, first, outcome


def test_resume_continues_the_step_count(trained):
    ctx, first, outcome = trained
    assert first.metrics["steps"] == 2 and outcome.metrics["steps"] == 4
    steps = [m["step"] for m in ctx.read_metrics() if "train_loss" in m and "character" not in m]
    assert steps == [1, 2, 3, 4]  # the resumed run went on from 3, not from 1
    assert [p.name for p in ctx.checkpoint_dir.glob("step-*.pt")] == ["step-00000004.pt"]
    assert all(m["tokens_per_s"] > 0 for m in ctx.read_metrics())
    assert outcome.base_model == "tiny"


def test_adapter_is_saved_unmerged_with_tokenizer_and_template(trained, data_dir):
    ctx, _, outcome = trained
    out = ctx.output_dir
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 8
    assert (out / "adapter_model.safetensors").exists()
    assert not (out / "model.safetensors").exists()  # not merged into the base
    assert (out / "chat_template.jinja").exists() or "chat_template" in (
        out / "tokenizer_config.json"
    ).read_text()
    model, tokenizer, info = artifacts.load(out)
    assert type(model).__name__ == "PeftModelForCausalLM" and info.character == "Eleven"
    split = load_split(
        data_dir / "transcripts",
        data_dir / "characters",
        "Eleven",
        min_lines=10,
        held_out_fraction=0.2,
    )
    loss = held_out_loss(model, encode_all(tokenizer, split.held_out, 512), 1024, "cpu")
    assert loss == pytest.approx(outcome.metrics["held_out_loss"], rel=1e-4)


def test_streaming_chat_from_the_trained_adapter(trained):
    ctx, _, _ = trained
    model, tokenizer, info = artifacts.load(ctx.output_dir)
    chat = ModelChat(model, tokenizer, info.max_context)
    messages = [
        {"role": "system", "content": info.system_prompt},
        {"role": "user", "content": "Mike: Are you okay?"},
    ]
    parts = list(chat.stream(messages, max_new_tokens=12, temperature=0.0))
    assert len(parts) >= 2 and all(b.startswith(a) for a, b in zip(parts, parts[1:], strict=False))
    again = list(chat.stream(messages, max_new_tokens=12, temperature=0.0))
    assert again[-1] == parts[-1]  # greedy decoding is deterministic


def test_history_is_trimmed_to_the_context_window(trained):
    ctx, _, _ = trained
    _, tokenizer, _ = artifacts.load(ctx.output_dir)
    history = []
    for i in range(40):
        history += [
            {"role": "user", "content": f"question {i} about the gate"},
            {"role": "assistant", "content": f"answer {i}: friends don't lie"},
        ]
    messages = [
        {"role": "system", "content": "You are Eleven."},
        *history,
        {"role": "user", "content": "last question"},
    ]
    trimmed = trim_history(tokenizer, messages, 120)
    text = tokenizer.apply_chat_template(trimmed, tokenize=False, add_generation_prompt=True)
    assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= 120
    assert trimmed[0] == messages[0] and trimmed[-1] == messages[-1]
    assert trimmed[1]["role"] == "user" and 3 <= len(trimmed) < len(messages)
    assert trim_history(tokenizer, messages[:3], 10_000) == messages[:3]


def test_offline_responder_answers_with_a_real_line(data_dir):
    responder = offline_responder(data_dir / "transcripts", data_dir / "characters", "Eleven")
    answer = responder.reply("Are you okay? Where is Will?")
    assert answer in ELEVEN_LINES
    # a scene context seen in the data retrieves the line that followed it
    context = next(t for t in responder.turns if t.reply == "Eggos. I want Eggos.")
    scene = context.messages[-1]["content"]
    followed = {t.reply for t in responder.turns if t.messages[-1]["content"] == scene}
    assert responder.reply(scene) in followed and len(followed) < len(set(ELEVEN_LINES))


def test_eval_report_for_adapter_and_offline(trained, registry, data_dir, capsys):
    ctx, _, _ = trained
    from stnlp.plugins.chatbot.evaluate import evaluate

    report = evaluate(
        registry.settings,
        registry.job("chatbot-llama"),
        data_dir,
        limit=5,
        model_dir=ctx.output_dir,
        preset="tiny",
    )
    assert report["summary"]["held_out_lines"] == 5
    assert report["adapter"]["perplexity"] == pytest.approx(
        torch.exp(torch.tensor(report["adapter"]["loss"])).item(), rel=1e-2
    )
    assert 0 <= report["adapter"]["bleu"] <= 100 and report["offline responder"]["loss"] is None
    main(
        [
            "eval",
            "chatbot-llama",
            "--data",
            str(data_dir),
            "--model-dir",
            str(ctx.output_dir),
            "--preset",
            "tiny",
            "--limit",
            "3",
            "--json",
        ]
    )
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"summary", "offline responder", "adapter"}


def test_tab_builds_and_says_the_offline_source_is_live(registry):
    app = AppContext(registry.settings, registry)
    [(_, tab)] = [(p, t) for p, t in registry.tabs if t.name == "chatbot"]
    assert "chatbot-llama: offline responder" in tab.model_source(app)
    blocks = build_app(app)
    assert isinstance(blocks, gr.Blocks)
    assert any(isinstance(b, gr.Chatbot) for b in blocks.blocks.values())


def test_the_adapter_speaks_only_as_its_character(trained, data_dir, tmp_path):
    ctx, _, _ = trained
    settings = Settings(store=str(tmp_path / "store"))
    version = ModelRegistry(open_stores(settings).models).publish(
        "chatbot-llama", ctx.output_dir, base_model="tiny"
    )
    chain = resolve_sources(settings, "chatbot-llama", "example/not-in-the-cache")
    assert [(s.kind, s.character) for s in chain] == [("registry", "Eleven"), ("offline", "")]
    assert source_for(chain, "eleven") is chain[0] and source_for(chain, "Mike") is OFFLINE
    assert describe_sources(chain) == (
        f"registry chatbot-llama version {version} (trained for Eleven); "
        f"other characters: {OFFLINE.label}"
    )
    folders = {name: data_dir / name for name in ("transcripts", "characters")}
    replies = list(respond(OFFLINE, folders, "Where is Will?", [], "Mike", 0.0, 0.9, 8))
    assert len(replies) == 1 and replies[0] in OTHERS["Mike"]


def test_jobs_are_valid_specs(registry):
    spec = registry.job("chatbot-qwen")
    assert spec.input_datasets == ("transcripts", "characters")
    assert spec.hyperparameters["base_model"] == "Qwen/Qwen2.5-3B-Instruct"
    assert spec.instance_type == "g5.xlarge" and spec.evaluator
    assert spec.resolved_hyperparameters("tiny")["base_model"] == "tiny"


def test_dataset_folder_prefers_the_stores_raw_copy(tmp_path, data_dir):
    from stnlp.plugins.chatbot.infer import dataset_folder
    from stnlp.runtime.data import SAMPLE_DIR
    from stnlp.runtime.store import open_stores

    settings = Settings(store=str(tmp_path / "store"))
    assert dataset_folder(settings, "characters") == SAMPLE_DIR / "characters"
    open_stores(settings).datasets.sync_up(data_dir / "characters", "raw/characters")
    folder = dataset_folder(settings, "characters")
    assert folder != SAMPLE_DIR / "characters" and (folder / "characters.jsonl").is_file()
