"""Train the static encoder's token vectors to regress fp32 MiniLM sentence embeddings.

Model2Vec's "tokenlearn" recipe on the sample data: the student is
:class:`stnlp.plugins.classifier.static_encoder.StaticSentenceEncoder` (weighted mean of token
vectors, ``sqrt(rank)`` weights), its vectors initialised from the distilled ones; the teacher
is the ONNX Runtime fp32 MiniLM. Loss: ``1 - cosine(student, teacher)`` plus the squared
difference of their cosines with the default theme descriptions (``--theme-weight``). Adam,
full batches, seeded: the same inputs give the same file.

Training text: the sample data's sentences (subtitles, transcripts, scene files, character and
location descriptions; never ``data/eval``), episodes in ``--holdout`` left out (they measure
the fit on unseen text), plus ``--synthetic`` sentences recombined from them (halves of two
sentences joined; words shuffled) so more token combinations are seen. Only the vectors of
tokens seen are written (float16), with the calibration fitted on the training sentences.

Run: ``.venv/bin/python bench/classifier/train_static.py [--out FILE] [--evaluate]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from stnlp.plugins.classifier import static_encoder  # noqa: E402
from stnlp.plugins.classifier.onnx_encoder import theme_encoder  # noqa: E402
from stnlp.plugins.classifier.themes import (  # noqa: E402
    DEFAULT_THEMES,
    episodes_from_captions,
    split_sentences,
    theme_descriptions,
)
from stnlp.runtime.data import (  # noqa: E402
    SAMPLE_DIR,
    load_characters,
    load_locations,
    load_subtitles,
    load_transcripts,
)

THEMES = list(DEFAULT_THEMES)
_LABEL = re.compile(r"^[A-Z][\w .'’]*:\s*")


def sample_sentences(root: Path, holdout: set[str]) -> tuple[list[str], list[str]]:
    """``(training, held_out)`` distinct sentences of the sample data set at ``root``."""
    by_episode: dict[str, list[str]] = {}
    subtitles = episodes_from_captions(load_subtitles(root / "subtitles").records)
    for episode in subtitles:
        by_episode.setdefault(episode.key[:6], []).extend(episode.sentences)
    for line in load_transcripts(root / "transcripts").records:
        key = f"S{line.season:02d}E{line.episode:02d}"
        by_episode.setdefault(key, []).extend(split_sentences(line.line))
    for path in sorted((root / "scenes").glob("*.txt")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith(("#", "[")):
                by_episode.setdefault(path.stem, []).extend(split_sentences(_LABEL.sub("", line)))
    shared = [s for c in load_characters(root / "characters").records
              for s in split_sentences(c.description)]  # fmt: skip
    shared += [s for loc in load_locations(root / "locations").records
               for s in split_sentences(loc.description)]  # fmt: skip
    train = shared + [s for k, v in sorted(by_episode.items()) if k not in holdout for s in v]
    held = [s for k, v in sorted(by_episode.items()) if k in holdout for s in v]
    train = list(dict.fromkeys(train))
    seen = set(train)
    return train, [s for s in dict.fromkeys(held) if s not in seen]


def synthetic_sentences(sentences: list[str], count: int, seed: int = 0) -> list[str]:
    """``count`` new sentences: halves of two random sentences joined, or one's words shuffled."""
    rng = random.Random(seed)
    out: set[str] = set(sentences)
    made: list[str] = []
    while len(made) < count:
        a, b = rng.choice(sentences).split(), rng.choice(sentences).split()
        if rng.random() < 0.5:
            words = a[: max(1, len(a) // 2)] + b[len(b) // 2 :]
        else:
            words = a[:]
            rng.shuffle(words)
        text = " ".join(words)
        if text not in out:
            out.add(text)
            made.append(text)
    return made


def token_batches(tokenizer, texts: list[str], max_length: int):
    """Flat token ids and per-text offsets, as the static encoder tokenises."""
    ids = tokenizer(texts, add_special_tokens=False, truncation=True,
                    max_length=max_length - 2)["input_ids"]  # fmt: skip
    flat = np.fromiter((t for row in ids for t in row), dtype=np.int64)
    lengths = np.array([len(row) for row in ids])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return flat, torch.from_numpy(offsets), lengths > 0


def train(student, texts: list[str], teacher: torch.Tensor, themes: torch.Tensor, args) -> dict:
    """Fit a linear map of every distilled vector and a correction of the vectors of the
    tokens ``texts`` use; returns ``{"ids", "deltas", "matrix"}``."""
    torch.manual_seed(args.seed)
    flat, offsets, keep = token_batches(student.tokenizer, texts, student.max_length)
    student.table.ensure(flat)
    ids, local = np.unique(flat, return_inverse=True)
    distilled = torch.from_numpy(student.table.vectors[ids].copy())
    matrix = torch.nn.Parameter(torch.eye(student.dim))
    deltas = torch.nn.Parameter(torch.zeros_like(distilled))
    local = torch.from_numpy(local)
    weights = student.weights[torch.from_numpy(flat)]
    keep = torch.from_numpy(keep)
    target, target_themes = teacher[keep], (teacher @ themes.T)[keep]
    optimiser = torch.optim.Adam([matrix, deltas], lr=args.lr)
    for epoch in range(args.epochs):
        vectors = distilled @ matrix.T + deltas
        pooled = torch.nn.functional.embedding_bag(local, vectors, offsets, mode="sum",
                                                   per_sample_weights=weights)[keep]  # fmt: skip
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        cosine = (pooled * target).sum(dim=1).mean()
        theme_gap = ((pooled @ themes.T) - target_themes).pow(2).mean()
        drift = deltas.pow(2).sum(dim=1).mean()
        loss = 1 - cosine + args.theme_weight * theme_gap + args.drift_weight * drift
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if epoch % 50 == 0 or epoch == args.epochs - 1:
            print(f"epoch {epoch} cosine {float(cosine.detach()):.4f} "
                  f"theme_gap {float(theme_gap.detach()):.5f}", file=sys.stderr, flush=True)
    return {"ids": ids.astype(np.int32), "deltas": deltas.detach().numpy(),
            "matrix": matrix.detach().numpy()}  # fmt: skip


def fit_calibration(student, texts, teacher, themes) -> tuple[float, float]:
    """``(scale, shift)`` matching the student's sentence x theme cosines' mean and std to
    the teacher's on ``texts``."""
    raw = (student.encode(texts) @ themes.T).flatten()
    target = (teacher @ themes.T).flatten()
    scale = float(target.std() / raw.std())
    return scale, float(target.mean() - scale * raw.mean())


def main() -> None:
    """Train, write the vectors, and optionally measure the result against fp32."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holdout", nargs="*", default=["S01E04"])
    parser.add_argument("--synthetic", type=int, default=12_000)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--theme-weight", type=float, default=1.0)
    parser.add_argument("--drift-weight", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--teacher-cache", type=Path, default=Path("/tmp/static_teacher.pt"))
    parser.add_argument("--out", type=Path, default=static_encoder.TRAINED_PATH)
    parser.add_argument("--evaluate", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    real, held = sample_sentences(SAMPLE_DIR, set(args.holdout))
    texts = real + synthetic_sentences(real, args.synthetic, args.seed)
    print(f"{len(real)} real + {args.synthetic} synthetic training, {len(held)} held out",
          file=sys.stderr)  # fmt: skip
    exact = theme_encoder("onnx")
    cached = torch.load(args.teacher_cache) if args.teacher_cache.exists() else {}
    new = [t for t in texts + held if t not in cached]
    if new:
        started = time.perf_counter()
        cached.update(zip(new, exact.encode(new), strict=True))
        print(f"teacher: {len(new)} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        torch.save(cached, args.teacher_cache)
    teacher = torch.stack([cached[t] for t in texts])
    themes = exact.encode(theme_descriptions(THEMES))
    student = static_encoder.StaticSentenceEncoder(exact_base(), queries=exact, trained=None)
    started = time.perf_counter()
    trained = train(student, texts, teacher, themes, args)
    seconds = time.perf_counter() - started
    student.matrix = torch.from_numpy(trained["matrix"])
    student.deltas[trained["ids"]] = torch.from_numpy(trained["deltas"])
    scale, shift = fit_calibration(student, real, torch.stack([cached[t] for t in real]), themes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, ids=trained["ids"], deltas=trained["deltas"].astype(np.float16),
                        matrix=trained["matrix"].astype(np.float16),
                        calibration=np.array([scale, shift]))  # fmt: skip
    report = {"train_sentences": len(texts), "tokens": len(trained["ids"]),
              "train_seconds": round(seconds, 1), "calibration": [scale, shift],
              "bytes": args.out.stat().st_size}  # fmt: skip
    print(json.dumps(report), flush=True)
    if args.evaluate:
        reference = torch.stack([cached[t] for t in held])
        fresh = static_encoder.StaticSentenceEncoder(exact_base(), queries=exact, trained=args.out)
        cos = (fresh.encode(held) * reference).sum(dim=1)
        print(json.dumps({"heldout_sentences": len(held), "heldout_cosine": float(cos.mean())}))


def exact_base():
    """The packaged MiniLM (torch), whose tokenizer and weights the static encoder uses."""
    from stnlp.runtime.encoder import shared_encoder

    return shared_encoder()


if __name__ == "__main__":
    main()
