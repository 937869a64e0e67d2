"""Benchmark: theme scoring by MiniLM embedding similarity vs NLI zero-shot, on this CPU.

Torch is pinned to ``--threads`` threads (2: this machine's cores). Measured:

- ``embedding``: :class:`stnlp.plugins.classifier.theme_scorers.EmbeddingThemeScorer` (the default)
  on the distinct sample sentences: one MiniLM pass per batch of sentences, the theme
  descriptions embedded once, no per-label model pass;
- ``nli``: the original project's method, the transformers zero-shot pipeline in batches of 20
  sentences with every theme as a candidate label (one NLI forward per (sentence, theme) pair,
  ``multi_label=True``), on the ``valhalla/distilbart-mnli-12-3`` architecture (``BartConfig``
  with its dimensions) with random weights: the hub weights are unreachable here, and random
  weights cost the same. BART's BPE tokenizer is unreachable too, so the MiniLM WordPiece
  tokenizer feeds it (English token counts are close). It is slow, so it runs on the first
  ``--nli-sentences`` sentences and is extrapolated (``--nli-sentences 0`` skips it);
- ``corpus``: :func:`stnlp.plugins.classifier.theme_scores.score_corpus` end to end (scores per
  sentence, per episode, per window) on a 34-episode corpus of ``--lines`` caption lines made
  from the sample captions, twice: ``repeated`` (sample lines cycled as they are, so repeats
  are embedded once) and ``distinct`` (each line's words shuffled with a seeded RNG, so nearly
  every sentence is new: the worst case). Each corpus is scored side by side in one run by the
  torch encoder in bf16 (``encoder=bf16``, the default ``auto`` on a CPU with native bf16), the
  ONNX Runtime fp32 encoder (``auto`` elsewhere), the torch fp32 encoder and the static encoder
  distilled from MiniLM (``encoder=static``), each with its fidelity against ONNX Runtime fp32:
  the largest difference of any episode's theme score, how many episodes keep their top and their
  most distinctive theme, and how many sentences vote the same way;
- ``static_sample``: the static encoder's sentence embeddings of the distinct sample sentences
  against fp32's (mean and min cosine), and the ``calibration`` they would get from
  them (``--fit-calibration`` prints it and stops: the mean and standard deviation of every
  sentence x theme cosine matched to fp32's).

Run: ``.venv/bin/python bench/classifier/bench_themes.py`` (add ``--json out.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, BartConfig, BartForSequenceClassification

from stnlp.plugins.classifier.onnx_encoder import ENCODER_KINDS, theme_encoder
from stnlp.plugins.classifier.theme_scorers import EmbeddingThemeScorer, NliThemeScorer
from stnlp.plugins.classifier.theme_scores import score_corpus
from stnlp.plugins.classifier.themes import (
    DEFAULT_THEMES,
    episodes_from_captions,
    theme_descriptions,
)
from stnlp.runtime.data import SAMPLE_DIR, load_subtitles
from stnlp.runtime.encoder import minilm_path, native_bf16, quiet_transformers, shared_encoder

THEMES = list(DEFAULT_THEMES)
VARIANTS = {"repeated": False, "distinct": True}
"""Corpus variant -> whether each caption's words are shuffled."""


def distilbart_mnli_shaped(tokenizer) -> BartForSequenceClassification:
    """``valhalla/distilbart-mnli-12-3``'s architecture with random weights; special token ids
    follow ``tokenizer`` (its ``[SEP]`` plays BART's ``</s>``, which classification pools on)."""
    config = BartConfig(
        vocab_size=50265,
        d_model=1024,
        encoder_layers=12,
        decoder_layers=3,
        encoder_attention_heads=16,
        decoder_attention_heads=16,
        encoder_ffn_dim=4096,
        decoder_ffn_dim=4096,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        id2label={0: "contradiction", 1: "neutral", 2: "entailment"},
        label2id={"contradiction": 0, "neutral": 1, "entailment": 2},
    )
    torch.manual_seed(0)
    return BartForSequenceClassification(config).eval()


def synthetic_captions(episodes: int, lines: int, shuffle_words: bool) -> list:
    """``lines`` captions over ``episodes`` episodes cycled from the sample captions; with
    ``shuffle_words`` each caption's words are shuffled so that lines rarely repeat."""
    sample = load_subtitles(SAMPLE_DIR / "subtitles").records
    rng = random.Random(0)
    per_episode = lines // episodes
    captions = []
    for number in range(episodes):
        for i in range(per_episode):
            source = sample[(number * 97 + i) % len(sample)]
            text = source.text
            if shuffle_words:
                words = text.split()
                rng.shuffle(words)
                text = " ".join(words)
            captions.append(
                replace(
                    source,
                    season=1 + number // 9,
                    episode=1 + number % 9,
                    index=i + 1,
                    text=text,
                )
            )
    return captions


def timed(fn):
    """``(result, seconds)`` of one call."""
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def run_nli(subset: list[str], results: dict) -> None:
    """Time the NLI zero-shot pipeline on ``subset`` and its speed-up against the embedding."""
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
    nli = NliThemeScorer(
        distilbart_mnli_shaped(tokenizer), tokenizer, "distilbart-mnli-12-3 (random)"
    )
    nli.score(subset[:2], THEMES)  # warm-up
    _, seconds = timed(lambda: nli.score(subset, THEMES))
    results["nli"] = {
        "sentences": len(subset),
        "pairs": len(subset) * len(THEMES),
        "seconds": round(seconds, 2),
        "sentences_per_s": round(len(subset) / seconds, 2),
    }
    speedup = results["embedding"]["sentences_per_s"] / results["nli"]["sentences_per_s"]
    results["speedup"] = round(speedup, 1)
    print("nli", results["nli"], "speedup", results["speedup"], flush=True)


def static_fidelity(sentences: list[str]) -> dict:
    """The static encoder against ONNX Runtime fp32 on ``sentences``: cosines of the sentence
    embeddings, and the linear map matching the static similarities' mean and standard
    deviation to fp32's (the calibration; the static similarities before ``calibration``)."""
    exact, static = theme_encoder("onnx"), theme_encoder("static")
    reference = exact.encode(sentences)
    vectors, seconds = timed(lambda: static.encode(sentences))
    cosine = (reference * vectors).sum(dim=1)
    themes = exact.encode(theme_descriptions(THEMES))
    target, raw = (reference @ themes.T).flatten(), (vectors @ themes.T).flatten()
    scale = float(target.std() / raw.std())
    shift = float(target.mean() - scale * raw.mean())
    return {"sentences": len(sentences), "seconds": round(seconds, 2),
            "cosine_mean": round(float(cosine.mean()), 4),
            "cosine_min": round(float(cosine.min()), 4),
            "fitted_calibration": [round(scale, 4), round(shift, 4)],
            "calibration_in_use": list(static.calibration)}  # fmt: skip


def fidelity(result, reference) -> dict:
    """How close ``result``'s theme scores are to ``reference``'s (ONNX Runtime fp32).

    ``reference_top_margin_median`` (the gap between the reference's first and second theme,
    median over episodes) says how much a kept top theme means: where episodes are alike (the
    generated corpora mix the same sample lines) a tiny shift flips every episode at once.
    """
    scores, exact = result.per_episode[THEMES], reference.per_episode[THEMES]
    votes = result.per_episode["relevant"] - reference.per_episode["relevant"]
    ranked = np.sort(exact.to_numpy(), axis=1)
    return {
        "max_abs_episode_score_diff": float((scores - exact).abs().max().max()),
        "episode_score_correlation": round(float(scores.T.corrwith(exact.T).mean()), 4),
        "reference_top_margin_median": round(float(np.median(ranked[:, -1] - ranked[:, -2])), 4),
        "same_top_theme_episodes": int((scores.idxmax(axis=1) == exact.idxmax(axis=1)).sum()),
        "same_distinctive_theme_episodes": int(
            (result.distinctive.idxmax(axis=1) == reference.distinctive.idxmax(axis=1)).sum()
        ),
        "relevant_sentences": int(result.per_episode["relevant"].sum()),
        "reference_relevant_sentences": int(reference.per_episode["relevant"].sum()),
        "max_abs_episode_relevant_diff": int(votes.abs().max()),
    }


def main() -> None:
    """Run the measurements and print (and optionally save) the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--nli-sentences", type=int, default=200)
    parser.add_argument("--episodes", type=int, default=34)
    parser.add_argument("--lines", type=int, default=40_000)
    parser.add_argument("--fit-calibration", action="store_true")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument(
        "--encoders",
        nargs="+",
        choices=ENCODER_KINDS,
        default=["bf16", "onnx", "torch", "static"],
        help="timed in this order; onnx is the fidelity reference",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: dict = {
        "threads": args.threads,
        "themes": THEMES,
        "load_before": os.getloadavg(),
        "cpu": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": native_bf16(),
    }

    sample = episodes_from_captions(load_subtitles(SAMPLE_DIR / "subtitles").records)
    sentences = list(dict.fromkeys(s for e in sample for s in e.sentences))
    results["static_sample"] = static_fidelity(sentences)
    print("static_sample", results["static_sample"], flush=True)
    if args.fit_calibration:
        return
    embedding = EmbeddingThemeScorer(shared_encoder())
    embedding.score(sentences[:64], THEMES)  # warm-up
    _, seconds = timed(lambda: embedding.score(sentences, THEMES))
    results["embedding"] = {"sentences": len(sentences), "seconds": round(seconds, 2)}
    results["embedding"]["sentences_per_s"] = round(len(sentences) / seconds, 1)
    print("embedding", results["embedding"], flush=True)

    if args.nli_sentences:
        run_nli(sentences[: args.nli_sentences], results)

    kinds = list(dict.fromkeys([*args.encoders, "onnx"]))
    scorers = {k: embedding if k == "torch" else EmbeddingThemeScorer(theme_encoder(k))
               for k in kinds}  # fmt: skip
    for variant in args.variants:
        captions = synthetic_captions(args.episodes, args.lines, VARIANTS[variant])
        episodes = episodes_from_captions(captions)
        n = sum(len(e.sentences) for e in episodes)
        distinct = len({s for e in episodes for s in e.sentences})
        row = {"episodes": len(episodes), "lines": len(captions), "sentences": n,
               "distinct_sentences": distinct, "load_before": os.getloadavg()}  # fmt: skip
        scored = {}
        for name, scorer in scorers.items():
            scored[name], seconds = timed(
                lambda eps=episodes, sc=scorer: score_corpus(eps, THEMES, sc, 20)
            )
            row[f"{name}_seconds"] = round(seconds, 2)
            row[f"{name}_load_after"] = os.getloadavg()
            print(f"corpus {variant} {name}", round(seconds, 2), os.getloadavg(), flush=True)
            if args.json:  # what is measured so far survives a stopped run
                args.json.write_text(json.dumps({**results, variant: row}, indent=1))
        row["fidelity"] = {n: fidelity(scored[n], scored["onnx"]) for n in kinds if n != "onnx"}
        row["windows"] = len(scored["onnx"].per_window)
        results[f"corpus_{variant}"] = row
        print(f"corpus {variant}", row, flush=True)
    results["load_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
