"""Normalising person names found by NER against the characters file.

A character is known by its full name (``Jim Hopper``), its first name (``Jim``) when no other
character shares it, and its last name (``Hopper``) when no other character has it as a first
or last name. A multi-word mention that is not a full name resolves to the one character whose
name holds all its words (``Mike Wheeler`` for ``Michael Mike Wheeler``), else to the character
whose unique last name ends it (``Chief Hopper``). Matching ignores case, a possessive ``'s``,
honorifics' dots and surrounding punctuation.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from stnlp.common.errors import DataError

_POSSESSIVE = re.compile(r"['’]s?$")
_EDGE_PUNCT = re.compile(r"^[\W_]+|[\W_]+$")
_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"\w+")
# Titles that are not first names: ``Dr Voss`` is not called ``Dr``.
HONORIFICS = frozenset({"mr", "mrs", "ms", "miss", "dr", "chief", "officer", "sheriff", "agent"})


def clean_mention(text: str) -> str:
    """A mention as written, minus surrounding punctuation, a possessive and extra spaces."""
    text = _SPACES.sub(" ", text).strip()
    text = _POSSESSIVE.sub("", text)
    return _EDGE_PUNCT.sub("", text).replace(".", "")


def _key(text: str) -> str:
    return clean_mention(text).lower()


@dataclass(frozen=True)
class CharacterIndex:
    """Lookup from the ways a character is named to its canonical (full) name."""

    names: tuple[str, ...]
    aliases: dict[str, str]  # lower-case alias -> canonical name
    last_names: dict[str, str]  # unique lower-case last name -> canonical name
    written: dict[str, str]  # lower-case alias -> the alias as the characters file writes it
    words: frozenset[str]  # every lower-case word fragment of every name

    @classmethod
    def from_names(cls, names: Iterable[str], source: str = "characters") -> CharacterIndex:
        """Build the index from canonical names; ``source`` names the file in errors."""
        canonical = []
        for name in names:
            cleaned = clean_mention(name or "")
            if not cleaned:
                raise DataError(f"{source}: a character has an empty name ({name!r})")
            canonical.append(" ".join(name.split()))
        if not canonical:
            raise DataError(f"{source}: no characters to build the network from")
        full = {_key(n): n for n in canonical}
        written = {_key(w): clean_mention(w) for n in canonical for w in [n, *n.split()]}
        firsts: dict[str, set[str]] = defaultdict(set)
        lasts: dict[str, set[str]] = defaultdict(set)
        for name in canonical:
            words = _key(name).split()
            if words[0] not in HONORIFICS or len(words) == 1:
                firsts[words[0]].add(name)
            if len(words) > 1:
                lasts[words[-1]].add(name)
        aliases = dict(full)
        for word, owners in firsts.items():
            if len(owners) == 1 and word not in aliases:
                aliases[word] = next(iter(owners))
        unique_lasts = {
            word: next(iter(owners))
            for word, owners in lasts.items()
            if len(owners) == 1 and word not in firsts and word not in full
        }
        for word, owner in unique_lasts.items():
            aliases.setdefault(word, owner)
        words = frozenset(_WORD.findall(" ".join(canonical).lower()))
        return cls(tuple(dict.fromkeys(canonical)), aliases, unique_lasts, written, words)

    def resolve(self, mention: str) -> str | None:
        """The canonical name ``mention`` refers to, or None when it names no known character."""
        key = _key(mention)
        if key in self.aliases:
            return self.aliases[key]
        words = key.split()
        if len(words) < 2:
            return None
        holders = [n for n in self.names if set(words) <= set(_key(n).split())]
        if len(holders) == 1:
            return holders[0]
        return self.last_names.get(words[-1])

    def may_name(self, sentence: str) -> bool:
        """False when ``sentence`` holds no word of any name, so no mention in it can resolve."""
        return not self.words.isdisjoint(_WORD.findall(sentence.lower()))

    def ruler_patterns(self, ambiguous_words: Collection[str] = ()) -> list[dict[str, str]]:
        """Entity-ruler phrase patterns (PERSON) for every alias, as written and in capitals.

        An alias found in ``ambiguous_words`` (lower case, e.g. the language's stop words:
        ``Will``, ``May``, ``Eleven``) gets no capitals pattern, so all-caps text such as
        ``I WILL GO`` does not name a character.
        """
        patterns = []
        for alias, name in self.aliases.items():
            written = self.written[alias]
            variants = (written,) if alias in ambiguous_words else (written, written.upper())
            for text in dict.fromkeys(variants):
                patterns.append({"label": "PERSON", "pattern": text, "id": name})
        return patterns
