"""The offline responder: answers in character with the character's own most fitting line.

Every line the character speaks is indexed by the scene lines just before it (the same user
turn the chatbot trains on), embedded with the packaged all-MiniLM-L6-v2 (the process's shared
:func:`stnlp.runtime.encoder.shared_encoder`). A message is embedded the same way and
answered with the line whose context is nearest. It needs no GPU, no hub and no trained model,
so the interface always has a source.

The same index feeds retrieval: :meth:`OfflineResponder.similar` gives the character's few
most fitting own lines, which go into a model's prompt as examples of how the character
speaks (as role-play systems built on a character's classic lines do).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from stnlp.plugins.chatbot.data import Turn
from stnlp.runtime.encoder import shared_encoder


class OfflineResponder:
    """Retrieves ``character``'s reply whose scene context best matches the message."""

    def __init__(self, character: str, turns: Sequence[Turn]):
        if not turns:
            raise ValueError(f"no lines of {character!r} to answer with")
        self.character = character
        self.turns = list(turns)
        self.encoder = shared_encoder()  # the one MiniLM of this process, shared with the tabs
        self.index = self.encoder.encode([t.user for t in turns])
        self._rows = {t.user: row for row, t in enumerate(self.turns)}

    def embed(self, messages: Sequence[str]):
        """The embeddings of ``messages``, taken from the index for the contexts it holds (the
        training turns ask for their own examples) and encoded for the rest."""
        rows = [self._rows.get(m) for m in messages]
        out = self.index[[0 if row is None else row for row in rows]]  # a copy
        new = [i for i, row in enumerate(rows) if row is None]
        if new:
            out[new] = self.encoder.encode([messages[i] for i in new])
        return out

    def reply(self, message: str) -> str:
        """The character's line that best answers ``message``."""
        scores = self.index @ self.embed([message])[0]
        return self.turns[int(scores.argmax())].reply

    def similar_many(
        self, messages: Sequence[str], k: int, exclude: Sequence[str | None] = ()
    ) -> list[tuple[str, ...]]:
        """For each message, the ``k`` distinct lines that best answer it, best first.

        ``exclude[i]`` (a line's text) never comes back for message ``i``: a training turn's
        examples must not contain the very line it is trained to say.
        """
        if k <= 0 or not messages:
            return [() for _ in messages]
        scores = self.embed(list(messages)) @ self.index.T
        found = []
        for row, message_scores in enumerate(scores):
            skip = exclude[row] if row < len(exclude) else None
            lines: list[str] = []
            for index in message_scores.argsort(descending=True).tolist():
                line = self.turns[index].reply
                if line != skip and line not in lines:
                    lines.append(line)
                if len(lines) == k:
                    break
            found.append(tuple(lines))
        return found

    def similar(self, message: str, k: int) -> tuple[str, ...]:
        """The ``k`` distinct lines of the character that best answer ``message``."""
        return self.similar_many([message], k)[0]

    def with_examples(self, turns: Sequence[Turn], k: int, leave_out_own: bool) -> list[Turn]:
        """``turns`` with ``k`` retrieved lines each; ``leave_out_own``: never a turn's own reply
        (for turns the index was built from)."""
        own = [t.reply for t in turns] if leave_out_own else []
        found = self.similar_many([t.user for t in turns], k, own)
        return [replace(t, examples=lines) for t, lines in zip(turns, found, strict=True)]
