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
_NAME_WORD = re.compile(r"^(?:[A-Z][a-zA-Z'’-]*\.?|[A-Z]\.|\d+)$")


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


def is_person_name(name: str) -> bool:
    """Whether ``name`` is written like a person's or creature's name (``Jim Hopper``,
    ``Eleven``, ``Tommy H.``), not a role, a relation or a group (``Principal``, ``Billy's
    mother``, ``Minor Characters/Season 2``, ``Freak!``)."""
    words = name.split()
    if not words or not all(_NAME_WORD.match(w) and not _POSSESSIVE.search(w) for w in words):
        return False
    keys = name_key(name).split()
    while len(keys) > 1 and keys[0] in HONORIFICS:  # "Officer Powell" is Powell
        keys = keys[1:]
    return not (set(keys) & ROLE_WORDS) and not (len(keys) == 1 and keys[0] in HONORIFICS)


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
    persons: frozenset[str] = frozenset()  # canonical names written like a person's name
    surnames: frozenset[str] = frozenset()  # one-word keys that are some character's surname
    name_forms: frozenset[str] = frozenset()  # keys written like a name (not "Principal")

    @classmethod
    def from_records(cls, records: Iterable[Any]) -> CharacterNames:
        """Index character records (``.name`` and optional ``fields["aliases"]``)."""
        names: list[str] = []
        explicit: dict[str, set[str]] = defaultdict(set)
        derived: dict[str, set[str]] = defaultdict(set)
        persons: set[str] = set()
        surnames: set[str] = set()
        name_forms: set[str] = set()
        for record in records:
            name = " ".join(str(record.name).split())
            if not name_key(name):
                continue
            names.append(name)
            written_forms = [name, *_aliases(record)]
            for written in written_forms:
                explicit[name_key(written)].add(name)
                if is_person_name(written):
                    name_forms.add(name_key(written))
            words = _person_words(name)
            for word in {words[0], words[-1]} if words else ():
                derived[word].add(name)
            if is_person_name(name):
                persons.add(name)
                surnames.update(
                    w[-1] for f in written_forms if len(f.split()) > 1 and (w := _person_words(f))
                )
        keys = {key: tuple(sorted(owners)) for key, owners in derived.items()}
        keys.update({key: tuple(sorted(owners)) for key, owners in explicit.items()})
        return cls(
            tuple(dict.fromkeys(names)), keys, frozenset(explicit), frozenset(persons),
            frozenset(surnames), frozenset(name_forms | set(derived)),
        )  # fmt: skip

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
            return tuple(holders) or self._common_owners(words)
        return ()

    def _common_owners(self, words: list[str]) -> tuple[str, ...]:
        """The characters every word names (``Maxine Mayfield``: ``Maxine`` and ``Mayfield``
        both name Max Mayfield), or ``()`` when some word names nobody."""
        common: set[str] | None = None
        for word in dict.fromkeys(words):
            owners = set(self.keys.get(word, ()))
            common = owners if common is None else common & owners
            if not common:
                return ()
        return tuple(sorted(common or ()))

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

