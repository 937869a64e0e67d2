"""A chat with one character through one chatbot's source chain: what ``stnlp chat`` opens.

The Chat tab builds the same chain (:func:`stnlp.plugins.chatbot.infer.resolve_sources`) and
streams through the same :func:`stnlp.plugins.chatbot.infer.reply_stream`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stnlp.plugins.chatbot.data import find_character
from stnlp.plugins.chatbot.infer import (
    Chain,
    Source,
    dataset_folder,
    reply_stream,
    resolve_sources,
)


def source_note(chain: Chain, source: Source, character: str) -> str:
    """Which source answers as ``character``, and why the sources before it do not."""
    reasons = list(chain.notes)
    for skipped in chain.sources[: chain.sources.index(source)]:
        reasons.append(f"{skipped.label} speaks only as {skipped.character}")
    return "; ".join([f"{character}: {source.label}", *reasons])


@dataclass
class ChatSession:
    """One character's chat: the live source, the datasets it reads, the conversation so far."""

    job: str
    character: str
    chain: Chain
    folders: dict[str, Path]
    history: list[dict] = field(default_factory=list)

    @property
    def source(self) -> Source:
        """The source that answers as this character."""
        return self.chain.for_character(self.character)

    def describe(self) -> str:
        """One line: the job, the source answering and why the ones before it do not."""
        return f"{self.job}: {source_note(self.chain, self.source, self.character)}"

    def stream(
        self,
        message: str,
        retrieval: bool = True,
        temperature: float = 0.7,
        top_p: float = 0.9,
        max_new_tokens: int = 64,
    ) -> Iterator[str]:
        """Stream the reply to ``message`` (the growing text), then remember the exchange."""
        reply = ""
        for reply in reply_stream(
            self.source,
            self.folders,
            self.character,
            message,
            self.history,
            retrieval,
            temperature,
            top_p,
            max_new_tokens,
        ):
            yield reply
        self.history += [
            {"role": "user", "content": message},
            {"role": "assistant", "content": reply},
        ]


def open_chat(settings, spec, character: str, history: Sequence[dict] = ()) -> ChatSession:
    """A chat with ``character`` (any name the characters file knows: ``mike``, ``El``) through
    job ``spec``'s sources; a name it does not know is a UserError listing close matches."""
    from stnlp.runtime.data import load_characters

    folders = {name: dataset_folder(settings, name) for name in ("transcripts", "characters")}
    record = find_character(load_characters(folders["characters"]).records, character)
    chain = resolve_sources(settings, spec.output_model, spec.hyperparameters["base_model"])
    return ChatSession(spec.name, record.name, chain, folders, list(history))
