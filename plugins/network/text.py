"""Text helpers for finding mentions: masking labels and markup, words with offsets, clause
starts, numbers. Offsets always stay those of the original text."""

from __future__ import annotations

import re
from dataclasses import dataclass

from stnlp.runtime.data.names import HONORIFICS, name_key

NUMBER_WORDS = frozenset(
    [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
        "thirty",
        "forty",
        "fifty",
        "hundred",
    ]
)
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*['’]?")
_POSSESSIVE = re.compile(r"['’]s?$", re.IGNORECASE)
_MARKUP = re.compile(r"\{\\[^}]*\}|</?[A-Za-z][^<>]*>")
# A speaker label opening a line: "MIKE:", "- DUSTIN:", "Joyce:", "MR. CLARKE:", "MAN 2:",
# "ELEVEN (V.O.):"; and bracketed all-capital labels: "[ROBIN]", "(MAN ON RADIO)".
_LABEL = re.compile(
    r"(?m)^(?P<lead>[\s\-–—]*)(?P<label>(?:[A-Z][\w.'’]*|\d+)(?:[ ][A-Z0-9][\w.'’]*){0,3}"
    r"(?:\s*\([^)]*\))?:)(?=\s|$)"
)
_CAPS_LABEL = re.compile(r"[\[(][A-Z0-9][A-Z0-9 .'’\-]*[\])]")
# An all-capital label anywhere (captions joined into sentences put some mid-text): "MIKE:".
_CAPS_COLON = re.compile(
    r"\b[A-Z][A-Z0-9.'’]*(?: [A-Z0-9][A-Z0-9.'’]*){0,3}(?: \([^)]*\))?:(?=\s|$)"
)
_CLAUSE_START = frozenset('.!?…:;"“”(-–—[')


def mask(text: str) -> str:
    """``text`` with markup and speaker labels replaced by spaces (same length, same offsets)."""
    blank = _MARKUP.sub(lambda m: " " * len(m.group()), text)
    blank = _LABEL.sub(lambda m: m["lead"] + " " * len(m["label"]), blank)
    blank = _CAPS_COLON.sub(lambda m: " " * len(m.group()), blank)
    return _CAPS_LABEL.sub(lambda m: " " * len(m.group()), blank)


@dataclass(frozen=True)
class Word:
    """One word of a text: its span without a possessive ``'s``, and whether it had one."""

    start: int
    end: int
    text: str
    possessive: bool

    @property
    def isdigit_like(self) -> bool:
        """Written in digits."""
        return self.text.isdigit()

    @property
    def capitalised(self) -> bool:
        """Written with a capital (or as digits)."""
        return self.text[:1].isupper() or self.text.isdigit()


def words_of(text: str) -> list[Word]:
    """The words of ``text`` with their offsets."""
    words = []
    for match in _WORD.finditer(text):
        raw = match.group()
        bare = _POSSESSIVE.sub("", raw) if len(raw) > 2 else raw
        words.append(Word(match.start(), match.start() + len(bare), bare, bare != raw))
    return words


def shouting(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return len(letters) >= 2 and sum(c.isupper() for c in letters) >= 0.8 * len(letters)


def opens_clause(text: str, start: int) -> bool:
    """True at the start of ``text`` or right after sentence or clause punctuation."""
    before = text[:start].rstrip()
    return not before or before[-1] in _CLAUSE_START


def is_number(key: str) -> bool:
    """A number word or a count in digits (``011``, with a leading zero, is an identifier)."""
    return key in NUMBER_WORDS or (key.isdigit() and not key.startswith("0"))


def lower_of(word: Word | None) -> str:
    return word.text.lower() if word is not None else ""


def joined(text: str, a: Word, b: Word) -> bool:
    """Whether one space, and nothing else, separates two words."""
    return text[a.end : b.start] == " "


def gap(text: str, a: Word, b: Word) -> bool:
    """True unless only a space (or a title's or initial's dot) separates two words."""
    between = text[a.end : b.start]
    if between == " ":
        return False
    dotted = name_key(a.text) in HONORIFICS or len(a.text) == 1
    return not (dotted and between.strip() == "." and between.startswith("."))
