"""LoRA SFT throughput of the chatbot trainer against the plain approaches (issue 6).

Random-weight models shaped like Llama-3.2-3B and Qwen2.5-3B (built from configs, nothing
downloaded), LoRA r=16 on all linear layers, bf16, dialogue samples of 20-120 tokens with the
loss on the reply part. Side by side, in one process:

- ``plain``: every sample padded to 512 tokens, batch 8, gradient checkpointing, SDPA, the
  model's own loss over full logits;
- ``packing``: samples packed into 8,192-token rows, position ids restarting per sample
  (transformers builds a block-diagonal SDPA mask from them), the model's own loss;
- ``ours``: the trainer's path: flash-attention varlen kernel over packed rows, a micro-batch
  sized by ``fit_tokens`` for the GPU, loss only on reply tokens in recomputed chunks;
- ``ours-compiled``: the trainer's default on a GPU: the same with each decoder layer and the
  loss chunk compiled (``torch.compile``);
- ``ours-autotune``: as ``ours-compiled`` with ``mode="max-autotune-no-cudagraphs"``;
- ``ours-24gb``: the trainer's default with the process capped to 24 GiB
  (``torch.cuda.set_per_process_memory_fraction``), sized by the same probe.

Throughput is useful (non-padding) tokens per second; MFU counts 4 x parameters FLOPs per
token (forward 2N, backward through frozen weights 2N) against ``--peak-tflops``. Modes ``chat`` and
``chat-merged``: latency for one stream with the LoRA model loaded once (bf16, SDPA, not
compiled; the adapter kept apart, or merged in memory as the interface serves it): time to
first token and decode tokens/s.

    python bench/chatbot/bench_lora.py --out docs/benchmarks-chatbot.json
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from stnlp.plugins.chatbot.fit import fit_tokens, prepare_allocator  # noqa: E402
from stnlp.plugins.chatbot.infer import merge_for_serving  # noqa: E402
from stnlp.plugins.chatbot.loss import loss_sum  # noqa: E402
from stnlp.plugins.chatbot.packing import (  # noqa: E402
    ATTENTION,
    IGNORE,
    Sample,
    collate,
    model_inputs,
    pack,
)
from stnlp.plugins.chatbot.tiny import TINY_SHAPE  # noqa: E402
from stnlp.plugins.chatbot.train import compile_layers, lora, optimizer_step  # noqa: E402

SHAPES = {
    "llama-3.2-3b": dict(
        model_type="llama",
        vocab_size=128256,
        hidden_size=3072,
        intermediate_size=8192,
        num_hidden_layers=28,
        num_attention_heads=24,
        num_key_value_heads=8,
        head_dim=128,
        tie_word_embeddings=True,
        max_position_embeddings=8192,
    ),
    "qwen2.5-3b": dict(
        model_type="qwen2",
        vocab_size=151936,
        hidden_size=2048,
        intermediate_size=11008,
        num_hidden_layers=36,
        num_attention_heads=16,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        max_position_embeddings=8192,
    ),
    # a CPU smoke test of this script, on the tiny preset's dimensions
    "tiny": dict(model_type="llama", vocab_size=512, **TINY_SHAPE),
}
LORA = {"lora_r": 16, "lora_alpha": 32, "target_modules": "all-linear"}
GIB = 2**30


def dialogue_samples(count: int, vocab: int, seed: int = 0) -> list[Sample]:
    """Samples of 20-120 tokens; the last 40% (the reply) carries labels."""
    rng = random.Random(seed)
    samples = []
    for _ in range(count):
        length = rng.randint(20, 120)
        ids = [rng.randrange(vocab) for _ in range(length)]
        prompt = int(length * 0.6)
        samples.append(Sample(ids, [IGNORE] * prompt + ids[prompt:]))
    return samples


def build(shape: str, attn: str, device: torch.device):
    """A random-weight LoRA model of ``shape`` in bf16 (fp32 on CPU) on ``device``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(**SHAPES[shape])
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with device:
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn)
    params = sum(p.numel() for p in model.parameters())
    return lora(model, LORA), params


def hf_padded(batch: list[Sample], width: int, device) -> dict:
    """Right-padded batch with attention mask and labels, as the plain approach feeds it."""
    ids = torch.zeros(len(batch), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, IGNORE)
    for row, s in enumerate(batch):
        ids[row, : len(s)] = torch.tensor(s.input_ids)
        mask[row, : len(s)] = 1
        labels[row, : len(s)] = torch.tensor(s.labels)
    return {
        k: v.to(device)
        for k, v in {"input_ids": ids, "attention_mask": mask, "labels": labels}.items()
    }


def hf_packed(batch: list[Sample], device) -> dict:
    """One packed row with restarting position ids and per-sample labels (first one masked)."""
    ids, pos, labels = [], [], []
    for s in batch:
        ids += s.input_ids
        pos += range(len(s))
        labels += [IGNORE, *s.labels[1:]]
    return {
        k: torch.tensor([v], device=device)
        for k, v in {"input_ids": ids, "position_ids": pos, "labels": labels}.items()
    }


def timed(step, batches, warmup: int, device) -> tuple[float, float]:
    """Median seconds per step and its useful tokens/s over ``batches`` after ``warmup`` steps."""
    times, tokens = [], []
    for index, (batch, useful) in enumerate(batches):
        sync(device)
        started = time.perf_counter()
        step(batch)
        sync(device)
        if index >= warmup:
            times.append(time.perf_counter() - started)
            tokens.append(useful)
    return statistics.median(times), sum(tokens) / sum(times)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_mode(mode: str, shape: str, args, device) -> dict:
    """Measure one configuration; returns its row of results."""
    if mode in ("chat", "chat-merged"):
        model, params = build(shape, "sdpa", device)
        if mode == "chat-merged":
            model = merge_for_serving(model)
        return {
            "shape": shape,
            "mode": mode,
            "params": params,
            **chat_latency(model, SHAPES[shape]["vocab_size"], device),
        }
    attn = "sdpa" if mode in ("plain", "packing") else ATTENTION
    model, params = build(shape, attn, device)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    samples = dialogue_samples(args.samples, SHAPES[shape]["vocab_size"])
    steps = args.warmup + args.steps
    extra: dict = {}

    def hf_step(batch):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    if mode == "plain":
        model.gradient_checkpointing_enable({"use_reentrant": False})
        groups = [samples[i : i + 8] for i in range(0, 8 * steps, 8)]
        batches = [(hf_padded(g, 512, device), sum(map(len, g))) for g in groups]
        step, extra["tokens_per_step"] = hf_step, 8 * 512
    elif mode == "packing":
        groups = pack(samples, args.packing_tokens)[:steps]
        batches = [(hf_packed(g, device), sum(map(len, g))) for g in groups]
        step, extra["tokens_per_step"] = hf_step, args.packing_tokens
    else:
        if mode == "ours-24gb":
            total = torch.cuda.get_device_properties(0).total_memory
            torch.cuda.set_per_process_memory_fraction(24 * GIB / total, 0)
        if mode in ("ours-compiled", "ours-24gb"):
            compile_layers(model)
        elif mode == "ours-autotune":
            compile_layers(model, "max-autotune-no-cudagraphs")

        def probe(batch):
            loss_sum(model, batch)[0].backward()

        fit = fit_tokens(model, probe, args.max_tokens, device)
        extra.update(tokens_per_step=fit.tokens, gradient_checkpointing=fit.checkpointing)
        fixed = None if mode == "ours" else 512
        groups = pack(samples, fit.tokens)[:steps]
        batches = [([collate(g, device, fixed)], sum(map(len, g))) for g in groups]

        def step(micro):
            optimizer_step(model, optimizer, micro)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step_s, rate = timed(step, batches, args.warmup, device)
    peak = torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None
    row = {
        "shape": shape,
        "mode": mode,
        "useful_tokens_per_s": round(rate),
        "step_s": round(step_s, 4),
        "peak_gib": peak and round(peak, 2),
        "params": params,
        "mfu": round(rate * 4 * params / (args.peak_tflops * 1e12), 4),
        "steps_timed": len(batches) - args.warmup,
        **extra,
    }
    if mode == "ours-24gb":
        torch.cuda.set_per_process_memory_fraction(1.0, 0)
    return row


def chat_latency(model, vocab: int, device, prompt_tokens: int = 96, new_tokens: int = 128):
    """One stream, model loaded once: time to first token and decode tokens/s (median of 3)."""
    from transformers.generation.streamers import BaseStreamer

    class Clock(BaseStreamer):
        def __init__(self):
            self.times: list[float] = []

        def put(self, value):
            self.times.append(time.perf_counter())

        def end(self):
            pass

    model.eval()
    prompt = torch.randint(0, vocab, (1, prompt_tokens), device=device)
    runs = []
    for _ in range(4):
        clock = Clock()
        started = time.perf_counter()
        worker = threading.Thread(
            target=model.generate,
            kwargs=dict(
                input_ids=prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                streamer=clock,
                pad_token_id=0,
            ),
        )
        worker.start()
        worker.join()
        first, last = clock.times[1], clock.times[-1]  # times[0] is the prompt itself
        runs.append((first - started, (len(clock.times) - 2) / (last - first)))
    runs = runs[1:]  # the first is warm-up
    return {
        "prompt_tokens": prompt_tokens,
        "new_tokens": new_tokens,
        "ttft_s": round(statistics.median(r[0] for r in runs), 4),
        "decode_tokens_per_s": round(statistics.median(r[1] for r in runs), 1),
    }


def varlen_check(device) -> dict:
    """Hidden states of a sample packed among others against the sample alone (relative error)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    shape = dict(SHAPES["tiny"], hidden_size=256, intermediate_size=512, head_dim=64)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with device:
        model = AutoModelForCausalLM.from_config(
            AutoConfig.for_model(**shape), dtype=dtype, attn_implementation=ATTENTION
        )
    samples = dialogue_samples(6, shape["vocab_size"], seed=1)
    with torch.no_grad():
        packed = model.model(**model_inputs(collate(samples, device))).last_hidden_state[0]
        start = sum(len(s) for s in samples[:3])
        alone = model.model(**model_inputs(collate(samples[3:4], device))).last_hidden_state[0]
    part = packed[start : start + len(samples[3])].float()
    return {"relative_error": float((part - alone.float()).norm() / alone.float().norm())}


def environment(device) -> dict:
    """Versions and the device, for the results file."""
    import peft
    import transformers

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "device": gpu,
        "python": platform.python_version(),
    }


def main(argv=None) -> None:
    """Run the selected shapes and modes, writing results to ``--out`` after each one."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="llama-3.2-3b,qwen2.5-3b")
    parser.add_argument(
        "--modes", default="plain,packing,ours,ours-compiled,ours-24gb,chat,chat-merged"
    )
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks-chatbot.json"))
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--samples", type=int, default=16000)
    parser.add_argument("--packing-tokens", type=int, default=8192)
    parser.add_argument("--max-tokens", type=int, default=65536)
    parser.add_argument("--peak-tflops", type=float, default=795.0)
    args = parser.parse_args(argv)
    prepare_allocator()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = {
        "command": "python bench/chatbot/bench_lora.py " + " ".join(argv or sys.argv[1:]),
        "flops_per_token": "4 x parameters",
        "peak_tflops": args.peak_tflops,
        "environment": environment(device),
        "varlen_check": varlen_check(device),
        "results": [],
    }
    print(json.dumps(results["varlen_check"]), flush=True)
    for shape in args.shapes.split(","):
        for mode in args.modes.split(","):
            try:
                row = run_mode(mode, shape, args, device)
            except Exception as exc:  # one failing configuration must not lose the others
                row = {"shape": shape, "mode": mode, "error": f"{type(exc).__name__}: {exc}"[:400]}
            results["results"].append(row)
            print(json.dumps(row), flush=True)
            args.out.write_text(json.dumps(results, indent=1))
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    print(f"{'shape':14} {'mode':14} {'tokens/s':>9} {'MFU':>6} {'peak GiB':>8} {'tok/step':>8}")
    for r in results["results"]:
        if "ttft_s" in r:
            print(
                f"{r['shape']:14} {r['mode']:14} ttft {r['ttft_s']} s, "
                f"{r['decode_tokens_per_s']} tok/s"
            )
            continue
        print(
            f"{r['shape']:14} {r['mode']:14} {r.get('useful_tokens_per_s', 'ERR'):>9} "
            f"{r.get('mfu', ''):>6} {r.get('peak_gib') or '':>8} "
            f"{r.get('tokens_per_step', ''):>8}"
        )


if __name__ == "__main__":
    main()
