"""Benchmark: do per-episode themes discriminate? Against the hand-labelled theme scenes.

Measured for each encoder (``--encoders``: ONNX Runtime fp32, the torch model in bf16, and the
static one distilled from MiniLM) and each ``min_similarity`` (0 is the old method: every
sentence a full vote; the static encoder's similarities are calibrated onto fp32's scale first):

- ``scenes``: on ``data/eval/theme_scenes.jsonl`` (44 scenes, 6-8 lines each), how often a
  scene's top theme (the mean of its lines' scores) is its labelled ``primary`` theme, and how
  often it is one of its labelled ``themes`` (chance: 1/8 for the primary);
- ``episodes``: 8 made-up episodes, one per primary theme, each its scenes' lines interleaved
  with as many short lines (three words or fewer) drawn from the sample subtitles, as in real
  subtitles where half the sentences are that short: how often the episode's *most
  distinctive* theme (score minus the series mean) and its *top* absolute theme are the
  primary, and the spread of each theme's score across the episodes (max - min, mean over
  themes);
- ``sample``: the same spread on the sample's episodes, and how many different themes top them
  (absolute and distinctive).

Run: ``.venv/bin/python bench/classifier/bench_theme_discrimination.py [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
from pathlib import Path

import torch

from stnlp.plugins.classifier.onnx_encoder import ENCODER_KINDS, theme_encoder
from stnlp.plugins.classifier.theme_scorers import EmbeddingThemeScorer
from stnlp.plugins.classifier.theme_scores import score_corpus
from stnlp.plugins.classifier.themes import DEFAULT_THEMES, Episode, episodes_from_captions
from stnlp.runtime.data import SAMPLE_DIR, load_subtitles

THEMES = list(DEFAULT_THEMES)
SCENES = Path(__file__).resolve().parents[2] / "data" / "eval" / "theme_scenes.jsonl"
_LABEL = re.compile(r"^[A-Z][\w .'’]*:\s*")


def load_scenes() -> list[dict]:
    """The labelled scenes, each with ``lines`` (speaker labels removed)."""
    scenes = [json.loads(line) for line in SCENES.read_text(encoding="utf-8").splitlines()]
    for scene in scenes:
        scene["lines"] = [_LABEL.sub("", line) for line in scene["text"].split("\n")]
    return scenes


def made_up_episodes(scenes: list[dict], short: list[str], seed: int = 0) -> list[Episode]:
    """One episode per primary theme: its scenes' lines, each followed by one short line."""
    rng = random.Random(seed)
    episodes = []
    for number, theme in enumerate(THEMES, start=1):
        lines = [line for s in scenes if s["primary"] == theme for line in s["lines"]]
        mixed = [x for line in lines for x in (line, rng.choice(short))]
        episodes.append(Episode(f"S09E{number:02d}|{theme}", tuple(mixed)))
    return episodes


def spread(result) -> float:
    """Mean over themes of (max - min) of the theme's score across episodes."""
    scores = result.per_episode[result.themes]
    return round(float((scores.max() - scores.min()).mean()), 4)


def measure(scorer, scenes, episodes, sample) -> dict:
    """The three measurements for one scorer."""
    primary = any_theme = 0
    for scene in scenes:
        top = THEMES[int(scorer.score(scene["lines"], THEMES).mean(dim=0).argmax())]
        primary += top == scene["primary"]
        any_theme += top in scene["themes"]
    made = score_corpus(episodes, THEMES, scorer, window=20)
    truth = [e.key.split("|")[1] for e in episodes]
    distinct = made.distinctive.idxmax(axis=1).tolist()
    absolute = made.per_episode[THEMES].idxmax(axis=1).tolist()
    real = score_corpus(sample, THEMES, scorer, window=20)
    return {
        "scenes_primary": round(primary / len(scenes), 3),
        "scenes_any": round(any_theme / len(scenes), 3),
        "episodes_distinctive_correct": sum(map(str.__eq__, distinct, truth)),
        "episodes_top_correct": sum(map(str.__eq__, absolute, truth)),
        "episodes_spread": spread(made),
        "episodes_relevant_share": round(
            float(made.per_episode["relevant"].sum() / made.per_episode["sentences"].sum()), 3
        ),
        "sample_spread": spread(real),
        "sample_top_themes": sorted(set(real.per_episode[THEMES].idxmax(axis=1))),
        "sample_distinctive": real.distinctive.idxmax(axis=1).to_dict(),
        "sample_relevant_share": round(
            float(real.per_episode["relevant"].sum() / real.per_episode["sentences"].sum()), 3
        ),
    }


class Memo:
    """An encoder that embeds each distinct text once across the thresholds (what embeds
    the theme descriptions, and the calibration, are the wrapped encoder's)."""

    def __init__(self, encoder):
        self.encoder, self.name, self.dim, self.seen = encoder, encoder.name, encoder.dim, {}
        self.queries = getattr(encoder, "queries", encoder)
        self.calibrate = getattr(encoder, "calibrate", None)

    def encode(self, texts, progress=None):
        new = [t for t in dict.fromkeys(texts) if t not in self.seen]
        if new:
            self.seen.update(zip(new, self.encoder.encode(new), strict=True))
        return torch.stack([self.seen[t] for t in texts]) if texts else torch.empty(0, self.dim)


def main() -> None:
    """Measure each threshold and print (and optionally save) the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.0, 0.1, 0.15, 0.2, 0.25])
    parser.add_argument(
        "--encoders", nargs="+", choices=ENCODER_KINDS, default=["onnx", "bf16", "static"]
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    scenes = load_scenes()
    sample = episodes_from_captions(load_subtitles(SAMPLE_DIR / "subtitles").records)
    short = sorted({s for e in sample for s in e.sentences if len(s.split()) <= 3})
    episodes = made_up_episodes(scenes, short)
    results = {"load_before": os.getloadavg(), "short_lines": len(short)}
    for kind in args.encoders:
        encoder = Memo(theme_encoder(kind))
        for threshold in args.thresholds:
            scorer = EmbeddingThemeScorer(encoder, min_similarity=threshold)
            key = f"{kind}:min_similarity={threshold}"
            results[key] = measure(scorer, scenes, episodes, sample)
            print(key, json.dumps(results[key]), os.getloadavg(), flush=True, file=sys.stderr)
    results["load_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
