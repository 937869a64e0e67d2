"""Mention precision and recall on the hand-labelled set ``data/eval/mentions.jsonl``.

A predicted mention is a true positive when it overlaps a labelled mention of the same
character that no other prediction has matched (one-to-one, in text order). Precision is true
positives over predictions, recall true positives over labelled mentions. Sentences are
scored one by one (the set is shuffled, so neighbours are no context); the corpus figures
(lower-case use of words, dominant owner of a shared name) come from the whole set.

Run: ``.venv/bin/python bench/network/eval_mentions.py [--errors]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stnlp.plugins.network.mentions import Mention, MentionFinder
from stnlp.plugins.network.ner import load_ner
from stnlp.runtime.data import load_characters
from stnlp.runtime.data.names import CharacterNames

EVAL = Path(__file__).resolve().parents[2] / "data" / "eval"


def load_eval(folder: Path = EVAL) -> tuple[CharacterNames, list[dict]]:
    """The eval set's name index and its labelled sentences."""
    names = CharacterNames.from_records(load_characters(folder / "characters.jsonl").records)
    with (folder / "mentions.jsonl").open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return names, rows


def match(predicted: list[Mention], gold: list[dict]) -> tuple[int, list, list]:
    """``(true positives, false positives, missed)`` for one sentence."""
    unmatched = list(gold)
    wrong = []
    for mention in predicted:
        hit = next(
            (g for g in unmatched if g["character"] == mention.character
             and g["start"] < mention.end and mention.start < g["end"]),
            None,
        )  # fmt: skip
        if hit is None:
            wrong.append(mention)
        else:
            unmatched.remove(hit)
    return len(predicted) - len(wrong), wrong, unmatched


def score(finder: MentionFinder, rows: list[dict]) -> dict:
    """Precision, recall and the errors of ``finder`` on ``rows``."""
    predicted = finder.find([r["text"] for r in rows])
    tp = fp = fn = 0
    errors = []
    for row, found in zip(rows, predicted, strict=True):
        hits, wrong, missed = match(found, row["mentions"])
        tp, fp, fn = tp + hits, fp + len(wrong), fn + len(missed)
        if wrong or missed:
            errors.append({"id": row["id"], "text": row["text"],
                           "false": [(m.text, m.character) for m in wrong],
                           "missed": [(g["text"], g["character"]) for g in missed]})  # fmt: skip
    return {
        "sentences": len(rows),
        "labelled": tp + fn,
        "predicted": tp + fp,
        "precision": round(tp / (tp + fp), 4) if tp + fp else 0.0,
        "recall": round(tp / (tp + fn), 4) if tp + fn else 0.0,
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--errors", action="store_true", help="print every error")
    args = parser.parse_args()
    names, rows = load_eval()
    result = score(MentionFinder(names, load_ner("en_core_web_sm")), rows)
    if args.errors:
        for error in result["errors"]:
            print(json.dumps(error, ensure_ascii=False))
    print(json.dumps({k: v for k, v in result.items() if k != "errors"}))


if __name__ == "__main__":
    main()
