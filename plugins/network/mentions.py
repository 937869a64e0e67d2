"""Character mentions in subtitle and transcript text: the statistical model decides what is a
person, the characters file (:class:`stnlp.runtime.data.names.CharacterNames`) resolves names.

For each text, in order:

1. **Masking.** Markup (``<i>``, ``{\\an8}``) and speaker labels (``MIKE:``, ``- DUSTIN:``,
   ``Joyce:``, ``MAN 2:``, ``[ROBIN]``, ``(MAN ON RADIO)``) become spaces, so offsets stay those
   of the original text and a label never counts as a mention.
2. **Candidates.** The longest runs of up to four words that the name index knows (``Mike``,
   ``Chief Hopper``, ``Mrs. Wheeler``, ``Maxine Mayfield``, ``Mike's``), written with a capital
   (``will`` and ``grain hopper`` are words), and the PERSON entities of the NER made only of
   name words.
3. **Vetoes.** A candidate is dropped when it is part of another proper name (``Nancy Drew``,
   ``Mad Max``, ``7-Eleven``, an entity spanning more capitalised words: ``George Lucas``),
   when a surname stands for a household (``the Byers house``), when a number word is counting
   (``Eight, nine, ten``), or when a common word opens a question (``Will you stop?``).
4. **Agreement.** A *hazardous* name counts only when the statistical model agrees it names
   someone. Hazardous are a one-word name that is a number (``Two``, ``Eleven``) or a common
   word (a stop word, or a word the texts also write in lower case: ``will``, ``hop``, ``max``),
   and the name of a role or group record (``Principal``, ``Tech``, ``Freak!``). Agreement is:
   the NER marks it as a name (PERSON, or ORG/NORP, which the small model confuses with
   PERSON, but never a number, date or place), or it is written with a capital inside a
   sentence of mixed case (``stay with Will``), or it is possessive (``Will's``), or it is
   said to someone (``Will? Baby``, ``Hop, pick up``), or the tagger reads it as the subject
   of the finite verb that follows it (``Hopper wants``, not ``Hop in``). A role record's name
   needs the NER's PERSON. Other names count as written.
5. **Ambiguity.** A name several characters share (``Henderson``, ``Wheeler``) goes to the one
   of them named in the same text or the ``context`` texts before it; else to the one holding at
   least :data:`DOMINANT` of their unambiguous mentions in the batch; else to nobody.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field

from stnlp.plugins.network.ner import english_words, pipes_for
from stnlp.plugins.network.text import (
    Word,
    gap,
    is_number,
    joined,
    lower_of,
    mask,
    opens_clause,
    shouting,
    words_of,
)  # fmt: skip
from stnlp.runtime.data.names import HONORIFICS, CharacterNames, name_key

PERSON = "PERSON"
NAME_LABELS = frozenset({"PERSON", "ORG", "NORP"})
"""Entity labels that agree a hazardous word is a name (en_core_web_sm labels many first names
ORG: 51 of the 332 labelled mentions of ``data/eval/mentions.jsonl``)."""
DOMINANT = 0.75
"""Share of a shared name's unambiguous mentions one owner needs to take its ambiguous ones."""
MAX_WORDS = 4
_SAID_TO = (",", "!", "?", "…", "...")
_QUESTION_SUBJECTS = frozenset({"i", "you", "he", "she", "we", "they", "it", "this", "that"})
FINITE_VERBS = frozenset({"VBD", "VBZ", "VBP", "MD"})


@dataclass(frozen=True)
class Mention:
    """One character named in a text: the span ``text[start:end]`` and the canonical name."""

    start: int
    end: int
    text: str
    character: str


@dataclass
class _Candidate:
    start: int
    end: int
    owners: tuple[str, ...]
    key: str
    possessive: bool = False
    pending: bool = False  # hazardous: kept only if the tagger sees a finite verb after it
    proper_before: int | None = None  # dropped if the tagger reads the word here as a name
    exact: set[str] = field(default_factory=set)  # labels of entities that are just it


@dataclass
class _Text:
    """One masked text and what the passes found in it."""

    masked: str
    words: list[Word]
    shouting: bool
    candidates: list[_Candidate] = field(default_factory=list)


class MentionFinder:
    """Finds character mentions with a spaCy pipeline that has ``ner`` (and ideally ``tagger``)."""

    def __init__(self, names: CharacterNames, nlp, stop_words: Collection[str] | None = None):
        self.names = names
        self.nlp = nlp
        self.stop_words = frozenset(
            stop_words if stop_words is not None else nlp.Defaults.stop_words
        )
        self.name_words = frozenset(w for key in names.keys for w in key.split())
        self.ner_pipes = pipes_for(nlp, "ner")
        self.tagger_pipes = pipes_for(nlp, "tagger") if "tagger" in nlp.pipe_names else []
        self.english = english_words(nlp)

    def may_name(self, text: str) -> bool:
        """False when ``text`` holds no capitalised word of any name, so nothing in it can name
        anyone (every mention starts with a capital)."""
        return any(w.capitalised and name_key(w.text) in self.name_words for w in words_of(text))

    def find(
        self,
        texts: Sequence[str],
        context: int = 0,
        keep_unknown: bool = False,
        batch_size: int = 256,
        n_process: int = 1,
        on_progress: Callable[[int], None] | None = None,
    ) -> list[list[Mention]]:
        """The mentions of each text, in order.

        ``context`` texts before each one are its context for a shared name; the whole batch
        gives the corpus figures (words also written in lower case, the dominant owner of a
        shared name). With ``keep_unknown`` a PERSON entity naming nobody known is kept, under
        its own name. ``on_progress(n)`` is called as texts are done.
        """
        found = self.candidates(texts, texts, keep_unknown, batch_size, n_process, on_progress)
        return resolve(texts, found, context)

    def candidates(
        self,
        texts: Sequence[str],
        corpus: Iterable[str],
        keep_unknown: bool = False,
        batch_size: int = 256,
        n_process: int = 1,
        on_progress: Callable[[int], None] | None = None,
    ) -> list[list[Candidate]]:
        """The expensive pass (NER and tagger) over ``texts``: each text's candidates.

        ``corpus`` holds every text of the corpus ``texts`` belong to (its words written in
        lower case decide the hazardous names), so a shard of a corpus finds what the whole
        would; :func:`resolve` then names the owners over the whole corpus at once.
        """
        items = [_text(text) for text in texts]
        lower = lower_words(corpus)
        todo = [i for i, item in enumerate(items) if keep_unknown or self.may_name(item.masked)]
        if on_progress is not None:
            on_progress(len(texts) - len(todo))
        with self.nlp.select_pipes(enable=self.ner_pipes):
            docs = self.nlp.pipe((items[i].masked for i in todo), batch_size=batch_size,
                                 n_process=n_process)  # fmt: skip
            for done, (i, doc) in enumerate(zip(todo, docs, strict=True), start=1):
                items[i].candidates = self._candidates(items[i], doc, lower, keep_unknown)
                if on_progress is not None and (done % batch_size == 0 or done == len(todo)):
                    on_progress(done % batch_size or batch_size)
        self._ask_tagger(items, batch_size)
        return [[(c.start, c.end, c.owners) for c in item.candidates] for item in items]

    # -- candidates ------------------------------------------------------------------------

    def _candidates(self, item: _Text, doc, lower: Counter, keep_unknown: bool) -> list:
        """The candidates of one text that survive the vetoes and have the agreement they need
        (hazardous ones opening a sentence may still wait for the tagger)."""
        entities = [(e.start_char, e.end_char, e.label_) for e in doc.ents]
        found, seen = [], []
        i = 0
        while i < len(item.words):
            size, candidate = self._match(item, i)
            if candidate is None:
                i += 1
                continue
            seen.append((candidate.start, candidate.end))
            candidate.exact = {lab for s, e, lab in entities
                               if _same_span(item.masked, (s, e), candidate)}  # fmt: skip
            if not self._vetoed(item, i, size, candidate, entities, lower) and self._agreed(
                item, i, candidate, lower
            ):
                found.append(candidate)
            i += size
        for start, end, label in entities:  # forms only the NER finds: "Maxine Mayfield"
            if label != PERSON or any(s < end and start < e for s, e in seen):
                continue
            span = [w for w in item.words if start <= w.start < end]
            owners = self.names.owners(item.masked[start:end]) if span else ()
            if owners and not all(o in self.names.persons for o in owners):
                owners = ()  # a role's name needs its whole form, found above
            if owners and all(w.capitalised for w in span) and self._known_words(span):
                key = name_key(item.masked[start:end])
                found.append(_Candidate(start, span[-1].end, owners, key, span[-1].possessive))
            elif keep_unknown and not owners and span:
                found.append(_Candidate(start, span[-1].end, (), ""))
        return sorted(found, key=lambda c: c.start)

    def _known_words(self, span: list[Word]) -> bool:
        keys = [name_key(w.text) for w in span]
        return all(k in self.name_words or k in HONORIFICS for k in keys)

    def _match(self, item: _Text, i: int) -> tuple[int, _Candidate | None]:
        """The longest known name starting at word ``i`` (a title before it included)."""
        words = item.words
        for n in range(min(MAX_WORDS, len(words) - i), 0, -1):
            span = words[i : i + n]
            if not (span[0].capitalised and span[-1].capitalised):
                continue
            if any(
                a.possessive or gap(item.masked, a, b) for a, b in zip(span, span[1:], strict=False)
            ):
                continue
            written = item.masked[span[0].start : span[-1].end]
            key = name_key(written)
            if n == 1 and key in HONORIFICS and key not in self.names.explicit:
                continue
            owners = self.names.keys.get(key, ())
            if not owners and n > 1:
                owners = self.names.owners(written)
                if not all(o in self.names.persons for o in owners):
                    owners = ()  # "Starcourt Mall" is no part of a person's name
            if owners:
                return n, _Candidate(span[0].start, span[-1].end, owners, key, span[-1].possessive)
        return 1, None

    def _vetoed(self, item: _Text, i, size, candidate: _Candidate, entities, lower) -> bool:
        """True when the candidate is part of another name, a household, counting or a question."""
        text, words = item.masked, item.words
        before = words[i - 1] if i else None
        after = words[i + size] if i + size < len(words) else None
        first, last = words[i], words[i + size - 1]
        one_word = len(candidate.key.split()) == 1
        if before is not None and text[before.end : first.start] == "-":
            return True  # "7-Eleven"
        if not item.shouting and (
            self._proper_neighbour(text, last, after, after=True)  # "Nancy Drew", "Papa Bear"
            or self._proper_neighbour(text, first, before, after=False)  # "we saw Mad Max"
        ):
            return True
        for start, end, _ in entities:  # an entity over more capitalised words: "George Lucas"
            if start <= candidate.start and candidate.end <= end and not last.possessive:
                extra = [w for w in words if start <= w.start < end and w.capitalised and not
                         candidate.start <= w.start < candidate.end]  # fmt: skip
                for word in extra:
                    opens = opens_clause(text, word.start)
                    if not self._foreign(word, lower if opens else None):
                        continue
                    if not (opens and name_key(word.text) in self.english):
                        return True
                    candidate.proper_before = word.start  # "Tell Hopper" or "George Lucas"?
        if not one_word:
            return False
        if candidate.key in self.names.surnames and lower_of(before) == "the":
            return True  # "the Byers house"
        if is_number(candidate.key) and (is_number(lower_of(before)) or is_number(lower_of(after))):
            return True  # counting: "Eight, nine, ten"
        opens = opens_clause(text, first.start)  # "Will you stop?"
        return candidate.key in self.stop_words and opens and lower_of(after) in _QUESTION_SUBJECTS

    def _proper_neighbour(self, text: str, word: Word, other: Word | None, after: bool) -> bool:
        """Whether ``other``, right next to ``word``, is a capitalised word of another name (a
        sentence's first word is capitalised anyway)."""
        if other is None or not other.capitalised or other.isdigit_like:
            return False
        a, b = (word, other) if after else (other, word)
        if not joined(text, a, b) or (after and word.possessive):
            return False
        return self._foreign(other) and (after or not opens_clause(text, other.start))

    def _foreign(self, word: Word, lower: Counter | None = None) -> bool:
        """A capitalised word of no known name, no title and no stop word; given ``lower``, also
        not a word the texts write in lower case (a sentence's first word is capitalised
        anyway: "Tell Hopper")."""
        key = name_key(word.text)
        if not key or key in self.name_words or key in HONORIFICS or key in self.stop_words:
            return False
        return not (lower is not None and lower[key] > 0)

    def _agreed(self, item: _Text, i: int, candidate: _Candidate, lower: Counter) -> bool:
        """Whether a hazardous candidate has the evidence it needs (others always do)."""
        role = candidate.key not in self.names.name_forms and any(
            o not in self.names.persons for o in candidate.owners
        )
        if role:
            return PERSON in candidate.exact
        key = candidate.key
        text, first = item.masked, item.words[i]
        opens = opens_clause(text, first.start)
        common = key in self.stop_words or lower[key] > 0 or (opens and key in self.english)
        if len(key.split()) > 1 or not (is_number(key) or common):
            return True
        if candidate.exact & NAME_LABELS or candidate.possessive:
            return True
        if not item.shouting and not first.text.isupper() and not opens:
            return True  # a capital inside a sentence: "stay with Will"
        rest = text[candidate.end :].lstrip()
        if (not rest or rest.startswith(_SAID_TO)) and (opens or text[: first.start].rstrip()
                                                       .endswith(",")):  # fmt: skip
            return True  # said to someone: "Will? Baby", "Thanks, Hop."
        candidate.pending = opens and bool(self.tagger_pipes)
        return candidate.pending

    def _ask_tagger(self, items: list[_Text], batch_size: int) -> None:
        """Settle what the NER left open with the tagger: a hazardous name opening a sentence
        stays only before a finite verb ("Hopper wants", not "Hop in"); a name after an
        English word that opens the sentence goes if that word is a proper noun ("George
        Lucas", not "Tell Lucas")."""

        def open_question(c: _Candidate) -> bool:
            return c.pending or c.proper_before is not None

        waiting = [item for item in items if any(map(open_question, item.candidates))]
        if not waiting or not self.tagger_pipes:
            return
        with self.nlp.select_pipes(enable=self.tagger_pipes):
            docs = self.nlp.pipe((w.masked for w in waiting), batch_size=batch_size)
            for item, doc in zip(waiting, docs, strict=True):
                tags = {t.idx: t.tag_ for t in doc}
                for candidate in [c for c in item.candidates if open_question(c)]:
                    following = [t.tag_ for t in doc if t.idx >= candidate.end and not t.is_space
                                 and t.tag_ not in ("POS", "RB")]  # fmt: skip
                    verb = bool(following) and following[0] in FINITE_VERBS
                    proper = tags.get(candidate.proper_before) in ("NNP", "NNPS")
                    if (candidate.pending and not verb) or proper:
                        item.candidates.remove(candidate)



Candidate = tuple[int, int, tuple[str, ...]]
"""A possible mention, ``(start, end, owners)``: the span of the text and the characters the
name may stand for (none: an unknown PERSON kept under its own name)."""


def _text(text: str) -> _Text:
    masked = mask(text)
    return _Text(masked, words_of(masked), shouting(masked))


def lower_words(texts: Iterable[str]) -> Counter:
    """How often each word is written in lower case across ``texts`` (masked as for finding)."""
    return Counter(w.text for text in texts for w in words_of(mask(text)) if w.text.islower())


def resolve(
    texts: Sequence[str], candidates: Sequence[Sequence[Candidate]], context: int
) -> list[list[Mention]]:
    """The mentions of each text from its candidates (:meth:`MentionFinder.candidates`): a
    shared name goes to the owner named within ``context`` texts before, else to the dominant
    one over every text given (see the module's step 5)."""
    counts = Counter(owners[0] for found in candidates for _, _, owners in found
                     if len(owners) == 1)  # fmt: skip
    result = []
    for i, found in enumerate(candidates):
        window = [c for near in candidates[max(0, i - context) : i + 1] for c in near]
        near = {owners[0] for _, _, owners in window if len(owners) == 1}
        mentions = []
        for start, end, owners in found:
            written = texts[i][start:end]
            name = _owner(tuple(owners), near, counts) if owners else " ".join(written.split())
            if name:
                mentions.append(Mention(start, end, written, name))
        result.append(mentions)
    return result


def _owner(owners: tuple[str, ...], near: set[str], counts: Counter) -> str | None:
    """The owner of a name: the only one, the only one named nearby, or the dominant one."""
    if len(owners) == 1:
        return owners[0]
    local = [o for o in owners if o in near]
    if len(local) == 1:
        return local[0]
    total = sum(counts[o] for o in owners)
    best = max(owners, key=lambda o: counts[o])
    return best if total and counts[best] >= DOMINANT * total else None


def _same_span(text: str, entity: tuple[int, int], candidate: _Candidate) -> bool:
    """Whether an entity covers just the candidate (give or take a possessive or punctuation)."""
    start, end = entity
    outside = text[start : candidate.start] + text[candidate.end : end]
    return start <= candidate.start and candidate.end <= end and not re.search(r"\w{3,}", outside)


def characters_per_text(mentions: Iterable[list[Mention]]) -> list[frozenset[str]]:
    """The set of characters each text names."""
    return [frozenset(m.character for m in ms) for ms in mentions]
