"""Character names: every way the data names a character, resolved to its canonical name.

A characters file (a fan wiki's, typically) names each character once (``Jim Hopper``) and may
list ``aliases`` (``Hop``, ``Chief Hopper``). Subtitles and transcripts write them many other
ways: ``MIKE``, ``Mike Wheeler``, ``Mike's``, ``Mrs. Wheeler``, ``Eleven (radio)``. The index
built here resolves them all:

- the full name and every listed alias, as written;
- for names that look like a person's (capitalised words only: ``Jim Hopper``, not
  ``Billy's mother`` or ``Hawkins Head of Security``), the first name and the surname;
- matching ignores case, a trailing possessive, dots, and surrounding punctuation.

A derived name two characters share (two Hoppers) is *ambiguous*: :meth:`resolve` gives
``None`` and :meth:`owners` lists who it could be. A listed alias or full name beats a derived
one. Both the chatbot (which character to train, which transcript lines are theirs) and the
character network (which character an entity names) use this one index.
"""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from stnlp.common.errors import UserError

HONORIFICS = frozenset(
    {"mr", "mrs", "ms", "miss", "dr", "chief", "officer", "sheriff", "agent", "coach", "principal"}
)
# Words that make a record a role or a group, not a person's name: "Hawkins Police Officer".
ROLE_WORDS = frozenset(
    {"officer", "police", "security", "manager", "guard", "nurse", "doctor", "mother", "father",
     "mom", "dad", "kid", "kids", "man", "woman", "boy", "girl", "parents", "characters", "staff",
     "soldier", "scientist", "reporter", "clerk", "driver", "owner", "head", "tech"}
)  # fmt: skip
_POSSESSIVE = re.compile(r"['’]s?$", re.IGNORECASE)
_PAREN = re.compile(r"\s*[(\[][^)\]]*[)\]]\s*")
_EDGE = re.compile(r"^[\W_]+|[\W_]+$")
_PERSON_WORD = re.compile(r"^[A-Z][a-zA-Z'’-]*$")


def name_key(text: str) -> str:
    """The lookup key of a name as written: lower case, no possessive, dots or edge punctuation."""
    words = []
    for word in str(text).replace(".", " ").split():
        word = _EDGE.sub("", _POSSESSIVE.sub("", _EDGE.sub("", word)))
        if word:
            words.append(word.casefold())
    return " ".join(words)


def _person_words(name: str) -> list[str]:
    """The keys of a person's name without its honorifics (``Officer Powell`` -> ``powell``),
    or ``[]`` when ``name`` is not a person's (a single word, a role, a group, a possessive)."""
    words = name.split()
    if len(words) < 2 or not all(_PERSON_WORD.match(w) and not _POSSESSIVE.search(w)
                                 for w in words):  # fmt: skip
        return []
    keys = name_key(name).split()
    if ROLE_WORDS & set(keys):
        return []
    return [key for key in keys if key not in HONORIFICS]


def _aliases(record: Any) -> list[str]:
    listed = (getattr(record, "fields", None) or {}).get("aliases") or []
    if isinstance(listed, str):
        listed = [listed]
    return [str(alias) for alias in listed if str(alias).strip()]


@dataclass(frozen=True)
class CharacterNames:
    """Lookup from the ways characters are named to their canonical names."""

    names: tuple[str, ...]
    keys: Mapping[str, tuple[str, ...]]  # key -> its owners; one owner means unambiguous
    explicit: frozenset[str]  # keys that are a full name or a listed alias

    @classmethod
    def from_records(cls, records: Iterable[Any]) -> CharacterNames:
        """Index character records (``.name`` and optional ``fields["aliases"]``)."""
        names: list[str] = []
        explicit: dict[str, set[str]] = defaultdict(set)
        derived: dict[str, set[str]] = defaultdict(set)
        for record in records:
            name = " ".join(str(record.name).split())
            if not name_key(name):
                continue
            names.append(name)
            for written in [name, *_aliases(record)]:
                explicit[name_key(written)].add(name)
            words = _person_words(name)
            for word in {words[0], words[-1]} if words else ():
                derived[word].add(name)
        keys = {key: tuple(sorted(owners)) for key, owners in derived.items()}
        keys.update({key: tuple(sorted(owners)) for key, owners in explicit.items()})
        return cls(tuple(dict.fromkeys(names)), keys, frozenset(explicit))

    def owners(self, text: str) -> tuple[str, ...]:
        """Every character ``text`` may name (several for a shared surname), else ``()``."""
        key = name_key(text)
        if key in self.keys:
            return self.keys[key]
        words = key.split()
        if len(words) > 1 and words[0] in HONORIFICS:  # "Chief Hopper", "Mrs. Wheeler"
            return self.owners(" ".join(words[1:]))
        if len(words) > 1:  # "Mike Wheeler" for "Michael 'Mike' Wheeler"
            holders = [n for n in self.names if set(words) <= set(name_key(n).split())]
            return tuple(holders)
        return ()

    def resolve(self, text: str) -> str | None:
        """The one character ``text`` names, or ``None`` (unknown, or shared by several)."""
        found = self.owners(text)
        return found[0] if len(found) == 1 else None

    def speaker(self, label: str) -> str | None:
        """The character a speaker label names: ``MIKE``, ``Mike (radio)``, ``ELEVEN:``."""
        return self.resolve(_PAREN.sub(" ", str(label)).strip().rstrip(":"))

    def find(self, name: str) -> str:
        """The canonical name ``name`` refers to, or a UserError listing the closest names."""
        found = self.owners(name)
        if len(found) == 1:
            return found[0]
        if found:
            raise UserError(f"character {name!r} is ambiguous: it may be {', '.join(found)}")
        close = difflib.get_close_matches(name_key(name), list(self.keys), n=5, cutoff=0.6)
        suggestions = sorted({owner for key in close for owner in self.keys[key]})
        hint = f"did you mean {', '.join(suggestions)}?" if suggestions else (
            f"known: {', '.join(self.names[:12])}{' ...' if len(self.names) > 12 else ''}"
        )  # fmt: skip
        raise UserError(f"character {name!r} is not in the characters file ({hint})")

