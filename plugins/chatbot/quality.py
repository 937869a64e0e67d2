"""Reply quality against the character's real next line: ROUGE-L and BLEU.

ROUGE-L is the F-measure of the longest common subsequence of words (Lin, 2004), on the
tokens the reference implementation (``rouge-score``) uses: lower case, runs of letters and
digits. It is averaged over replies. BLEU is sacrebleu's corpus BLEU. Both are on a 0-100
scale.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import sacrebleu

_NOT_WORD = re.compile(r"[^a-z0-9]+")


def words(text: str) -> list[str]:
    """ROUGE's tokens of ``text``: lower case, letters and digits only."""
    return _NOT_WORD.sub(" ", text.lower()).split()


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """The length of the longest common subsequence of ``a`` and ``b``."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l_f(hypothesis: str, reference: str) -> float:
    """ROUGE-L F1 of one reply against one reference, in 0..1."""
    hyp, ref = words(hypothesis), words(reference)
    common = lcs_length(hyp, ref)
    if not common:
        return 0.0
    precision, recall = common / len(hyp), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_l(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F1 (0-100) of replies against one reference each."""
    if not references:
        return float("nan")
    scores = [rouge_l_f(h, r) for h, r in zip(hypotheses, references, strict=True)]
    return round(100 * sum(scores) / len(scores), 2)


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu) of replies against one reference each."""
    return round(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score, 2)
