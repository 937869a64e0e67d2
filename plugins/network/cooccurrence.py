"""Co-occurrence of characters inside a sliding window of sentences.

Definition (the one the tests check): an episode is a list of sentences ``s_0 .. s_{n-1}``, each
with the set ``C_j`` of characters named in it. For a window of ``N`` sentences, let ``W_j`` be
the union of ``C_k`` for ``max(0, j - N + 1) <= k <= j`` (sentence ``j`` and the ``N - 1``
sentences before it). Two different characters ``a`` and ``b`` co-occur at sentence ``j`` when
one of them is named in ``s_j`` and the other in ``W_j``. The weight of the pair is the number of
sentences ``j`` at which they co-occur: each pair counts at most once per sentence, however often
they are named. With ``N = 1`` only characters named in the same sentence are linked.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Collection, Iterable

from stnlp.common.errors import UserError

Pair = tuple[str, str]


def pair(a: str, b: str) -> Pair:
    """The unordered pair ``{a, b}`` as a sorted tuple."""
    return (a, b) if a <= b else (b, a)


def cooccurrences(sentences: Iterable[Collection[str]], window: int) -> Counter[Pair]:
    """Weights of the character pairs of one episode, as defined in this module's docstring.

    ``sentences`` holds the characters named in each sentence, in order. Returns a Counter from
    sorted ``(a, b)`` pairs to weights; pairs that never co-occur are absent.
    """
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise UserError(f"window must be a whole number of sentences >= 1, got {window!r}")
    counts: Counter[Pair] = Counter()
    recent: deque[frozenset[str]] = deque(maxlen=window)
    for names in sentences:
        current = frozenset(names)
        recent.append(current)
        if not current:
            continue
        in_window = frozenset().union(*recent)
        counts.update({pair(a, b) for a in current for b in in_window if a != b})
    return counts
