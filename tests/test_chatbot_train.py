"""Chatbot training (tiny preset) end to end: resume, artifacts, streaming, offline, eval,
the held-out comparison that decides the source, failures, and `stnlp chat`."""

from __future__ import annotations

import io
import json
import math

import gradio as gr
import pytest
import torch

from stnlp.common.errors import UserError
from stnlp.common.settings import Settings
from stnlp.plugins.chatbot import artifacts
from stnlp.plugins.chatbot.data import encode_all, load_split
from stnlp.plugins.chatbot.infer import (
    OFFLINE,
    ModelChat,
    clean_reply,
    for_generation,
    may_become_label,
    offline_responder,
    reply_stream,
    resolve_sources,
    trim_history,
)
from stnlp.plugins.chatbot.loss import held_out_loss
from stnlp.plugins.chatbot.packing import ATTENTION, causal_lm
from stnlp.plugins.chatbot.prompt_cache import PromptCache
from stnlp.plugins.chatbot.train import train
from stnlp.plugins.manager import build_plugin_manager
from stnlp.runtime.baseline import judge
from stnlp.runtime.cli import main
from stnlp.runtime.registry import ModelRegistry, fetch_latest
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


def test_batched_replies_share_the_prompt_prefix_and_equal_each_reply_alone(trained):
    ctx, _, _ = trained
    model, tokenizer, info = artifacts.load(ctx.output_dir)
    chat = ModelChat(model.eval(), tokenizer, info.max_context)
    users = ["Mike: Are you okay?", "Will: Where is the gate? Tell me now.", "Dustin: Eggos?"]
    conversations = [
        [{"role": "system", "content": info.system_prompt}, {"role": "user", "content": u}]
        for u in users
    ]
    batched = chat.replies(conversations, max_new_tokens=10, name="Eleven")
    alone = [
        list(chat.stream(c, max_new_tokens=10, temperature=0.0, name="Eleven"))[-1]
        for c in conversations
    ]  # stock generate on one unpadded prompt: the truth the shared cache must match
    assert batched == alone
    assert chat.replies(conversations[:1], max_new_tokens=10, name="Eleven") == alone[:1]


def test_replies_start_from_the_loss_pass_keys_and_values_and_equal_each_reply_alone(
    trained, data_dir
):
    ctx, _, _ = trained
    model, tokenizer, info = artifacts.load(ctx.output_dir, torch.float32, ATTENTION)
    split = load_split(data_dir / "transcripts", data_dir / "characters", "Eleven", min_lines=10)
    turns = split.held_out[:5]
    samples = encode_all(tokenizer, turns, 512)
    known = PromptCache()
    loss = held_out_loss(model, samples, 256, "cpu", keep=known)  # several packed rows
    assert loss == held_out_loss(model, samples, 256, "cpu")
    chat = ModelChat(for_generation(model), tokenizer, info.max_context)
    widths = []  # how many tokens each forward pass runs
    hook = causal_lm(model).model.embed_tokens.register_forward_hook(
        lambda _, args, out: widths.append(args[0].shape[1])
    )
    conversations = [t.messages for t in turns]
    new = [*conversations[:2], [*conversations[0][:1], {"role": "user", "content": "Eggos?"}]]
    try:
        fused = chat.replies(conversations, max_new_tokens=10, name="Eleven", known=known)
        computed, widths[:] = widths[:], []
        fallback = chat.replies(new, max_new_tokens=10, name="Eleven", known=known)
    finally:
        hook.remove()
    assert max(computed) == 1  # no prompt token ran again: only the last one, then decoding
    assert max(widths) > 1  # a prompt the cache does not hold is computed
    alone = [
        list(chat.stream(c, max_new_tokens=10, temperature=0.0, name="Eleven"))[-1]
        for c in [*conversations, new[-1]]
    ]  # stock generate on one unpadded prompt: the truth both must match
    assert fused == alone[:5]
    assert fallback == [*alone[:2], alone[5]]


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


def test_training_records_the_judge_comparison_with_the_untuned_base(trained):
    _, _, outcome = trained
    record, rows = outcome.metrics["heldout"], outcome.metrics["quality"]
    assert record["metric"] == "judge_score" and record["baseline"] == "untuned base"
    assert record["value"] == rows["adapter"]["judge_score"]
    assert record["baseline_value"] == rows["untuned base"]["judge_score"]
    assert record["split"].startswith("held-out episodes S01E04") and record["examples"] == 8
    offline = rows["offline responder"]
    assert 0 <= offline["judge_score"] <= 1 and offline["loss"] is None and "bleu" in offline
    assert outcome.metrics["held_out_loss"] == rows["adapter"]["loss"]
    base = rows["untuned base"]  # its loss too: the pass that starts its replies gives it
    assert base["loss"] > 0 and base["perplexity"] == pytest.approx(math.exp(base["loss"]), 1e-3)


def test_eval_report_compares_base_adapter_retrieval_and_offline(trained, registry, data_dir,
                                                                 capsys):  # fmt: skip
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
    rows = ["untuned base", "untuned base + retrieval", "adapter", "adapter + retrieval"]
    assert set(report) == {"summary", *rows, "offline responder", "actual line"}
    assert report["summary"]["split"] == "held-out episodes S01E04 (5 lines of Eleven)"
    for row in rows:
        assert report[row]["perplexity"] == pytest.approx(
            torch.exp(torch.tensor(report[row]["loss"])).item(), rel=1e-2
        )
        assert 0 <= report[row]["bleu"] <= 100 and 0 <= report[row]["rouge_l"] <= 100
        assert 0 <= report[row]["judge_score"] <= 1
    # the prompt with retrieved lines is another prompt: the adapter's loss differs with it
    assert report["adapter"]["loss"] != report["adapter + retrieval"]["loss"]
    assert report["offline responder"]["loss"] is None
    from rich.console import Console

    from stnlp.runtime.cli.evaluate import report_table

    console = Console(width=200, record=True, file=io.StringIO())
    console.print(report_table("chatbot-llama", report))
    text = console.export_text().splitlines()
    [header] = [line.split("┃")[1:-1] for line in text if line.startswith("┃")]
    assert [cell.strip() for cell in header] == [
        "source", "loss", "perplexity", "rouge_l", "bleu", "judge_score"
    ]  # fmt: skip
    names = [line.split("│")[1].strip() for line in text if line.startswith("│")]
    assert names == [*rows, "offline responder", "actual line"]
    main(["eval", "chatbot-llama", "--data", str(data_dir), "--model-dir", str(ctx.output_dir),
          "--preset", "tiny", "--limit", "2", "--json"])  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    assert printed["summary"]["split"] == "held-out episodes S01E04 (2 lines of Eleven)"


def test_tab_builds_and_says_the_offline_source_is_live(registry):
    app = AppContext(registry.settings, registry)
    [(_, tab)] = [(p, t) for p, t in registry.tabs if t.name == "chatbot"]
    assert "chatbot-llama: offline responder" in tab.model_source(app)
    blocks = build_app(app)
    assert isinstance(blocks, gr.Blocks)
    assert any(isinstance(b, gr.Chatbot) for b in blocks.blocks.values())


def _publish(settings, folder, heldout_record):
    models = ModelRegistry(open_stores(settings).models)
    return models.publish(
        "chatbot-llama", folder, base_model="tiny", metrics={"heldout": heldout_record}
    )


def _record(value, base_value):
    return {"metric": "judge_score", "value": value, "baseline": "untuned base",
            "baseline_value": base_value, "higher_is_better": True, "split": "S01E04"}  # fmt: skip


def test_the_adapter_is_used_only_where_it_beats_the_base_and_only_as_its_character(
    trained, data_dir, tmp_path
):
    ctx, _, _ = trained
    settings = Settings(store=str(tmp_path / "store"))
    version = _publish(settings, ctx.output_dir, _record(0.5, 0.25))
    chain = resolve_sources(settings, "chatbot-llama", "example/not-in-the-cache")
    assert [(s.kind, s.character) for s in chain.sources] == [
        ("registry", "Eleven"),
        ("offline", ""),
    ]
    assert chain.for_character("Eleven") is chain.sources[0]
    assert chain.for_character("Mike") is OFFLINE
    assert chain.describe() == (
        f"registry chatbot-llama version {version} (trained for Eleven); "
        f"other characters: {OFFLINE.label}"
    )
    folders = {name: data_dir / name for name in ("transcripts", "characters")}
    replies = list(reply_stream(OFFLINE, folders, "Mike", "Where is Will?"))
    assert len(replies) == 1 and replies[0] in OTHERS["Mike"]
    # a newer version that loses to the untuned base on the judge score is passed over
    worse = _publish(settings, ctx.output_dir, _record(0.25, 0.5))
    chain = resolve_sources(settings, "chatbot-llama", "example/not-in-the-cache")
    assert chain.sources == (OFFLINE,)  # the tiny base is no base to chat with
    manifest = fetch_latest(settings, "chatbot-llama").manifest
    assert manifest["version"] == worse and not judge(manifest).use
    assert "does not beat untuned base's 0.5 on S01E04" in chain.describe()
    assert chain.describe().startswith(OFFLINE.label + "; not using registry chatbot-llama")


def test_replies_are_one_line_without_the_speaker_label():
    assert clean_reply("Eleven: Friends don't lie.\nMike: Okay.", "Eleven") == "Friends don't lie."
    assert clean_reply("  eleven:  Promise? ", "Eleven") == "Promise?"
    assert clean_reply("Mike Wheeler: Yes.", "Mike Wheeler") == "Yes."
    assert clean_reply("Mike: Yes.", "Mike Wheeler") == "Yes."
    assert clean_reply("Mike: Yes.", "Eleven") == "Mike: Yes."  # another's label stays
    assert clean_reply("\n\n", "Eleven") == ""
    assert may_become_label("Ele", "Eleven") and may_become_label(" mike", "Mike Wheeler")
    assert not may_become_label("Eleven: I", "Eleven") and not may_become_label("Eggos", "Eleven")


def test_a_run_that_trains_on_nothing_fails_and_publishes_nothing(registry, data_dir, tmp_path):
    """Before: every sample was dropped, 0 steps, NaN loss, "succeeded", an untrained adapter
    published as latest."""
    from stnlp.runtime.backends import get_backend
    from stnlp.runtime.runs import load_run

    settings = Settings(store=str(tmp_path / "store"))
    stores = open_stores(settings)
    for name in ("transcripts", "characters"):
        stores.datasets.sync_up(data_dir / name, f"raw/{name}")
    overrides = {"max_sample_tokens": 8, "min_lines": 10}
    run_id = get_backend("local")(
        registry.job("chatbot-llama"), settings, stores=stores, preset="tiny", overrides=overrides
    )
    record = load_run(stores, settings.stack, run_id).record
    assert record["result"] == "failed"
    assert "no training samples of 'Eleven' fit max_sample_tokens=8" in record["error"]
    assert "\n" not in record["error"]
    assert ModelRegistry(stores.models).latest("chatbot-llama") is None


def test_a_loss_that_is_not_a_number_fails_the_run(registry, data_dir, tmp_path):
    ctx = _context(tmp_path, registry, data_dir, learning_rate=1e30, min_lines=10, max_steps=3,
                   epochs=3)  # fmt: skip
    with pytest.raises(UserError, match=r"^training loss is nan at step 2 \(learning_rate=1e\+30"):
        train(ctx)
    assert not (ctx.output_dir / "adapter_config.json").exists()


@pytest.fixture
def chat_store(tmp_path, monkeypatch, data_dir):
    """`stnlp` settings on a store whose datasets are the test's (no trained chatbot)."""
    settings = Settings(store=str(tmp_path / "store"))
    stores = open_stores(settings)
    for name in ("transcripts", "characters"):
        stores.datasets.sync_up(data_dir / name, f"raw/{name}")
    monkeypatch.setenv("STNLP_STORE", settings.store)
    monkeypatch.chdir(tmp_path)
    return settings


def test_stnlp_chat_answers_once_through_the_source_chain(chat_store, capsys):
    main(["chat", "eleven", "Where", "is", "Will?"])
    captured = capsys.readouterr()
    assert captured.out.strip() in ELEVEN_LINES  # the offline responder: a line she said
    assert captured.err.startswith("chatbot-llama: Eleven: offline responder")


def test_stnlp_chat_keeps_a_conversation_until_quit(chat_store, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("Are you okay?\nWhere is Will?\n/quit\n"))
    main(["chat", "Mike", "--job", "chatbot-qwen", "--no-retrieval"])
    replies = capsys.readouterr().out.strip().splitlines()
    assert len(replies) == 2 and all(reply in OTHERS["Mike"] for reply in replies)


def test_stnlp_chat_with_an_unknown_character_names_the_close_match(chat_store, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["chat", "Elevn", "hello"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: character 'Elevn' is not in the characters file (did you mean Eleven?)"
    )


def test_jobs_are_valid_specs(registry):
    spec = registry.job("chatbot-qwen")
    assert spec.input_datasets == ("transcripts", "characters")
    assert spec.hyperparameters["base_model"] == "Qwen/Qwen2.5-3B-Instruct"
    assert spec.instance_type == "g5.xlarge" and spec.evaluator and spec.chat
    assert spec.resolved_hyperparameters("tiny")["base_model"] == "tiny"
    local = spec.resolved_hyperparameters("local")
    assert local["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_dataset_folder_prefers_the_stores_raw_copy(tmp_path, data_dir):
    from stnlp.plugins.chatbot.infer import dataset_folder
    from stnlp.runtime.data import SAMPLE_DIR
    from stnlp.runtime.store import open_stores

    settings = Settings(store=str(tmp_path / "store"))
    assert dataset_folder(settings, "characters") == SAMPLE_DIR / "characters"
    open_stores(settings).datasets.sync_up(data_dir / "characters", "raw/characters")
    folder = dataset_folder(settings, "characters")
    assert folder != SAMPLE_DIR / "characters" and (folder / "characters.jsonl").is_file()


def test_the_tab_says_when_every_chatbot_runs_on_the_same_local_base():
    from stnlp.plugins.chatbot.catalog import SMOLLM2
    from stnlp.plugins.chatbot.infer import Chain, Source
    from stnlp.plugins.chatbot.tab import shared_base_note

    adapter = Source("registry", "registry chatbot-llama", "/x", "Eleven", SMOLLM2)
    base = Source("base", f"untuned base {SMOLLM2} (packaged)", SMOLLM2, "", SMOLLM2)
    live = {
        "chatbot-llama": Chain((adapter, base, OFFLINE)),
        "chatbot-qwen": Chain((base, OFFLINE)),
    }
    assert f"same base here, {SMOLLM2}" in shared_base_note(live)
    assert shared_base_note({job: Chain((OFFLINE,)) for job in live}) == ""
