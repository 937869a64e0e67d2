"""The offline responder: answers in character with the character's own most fitting line.

Every line the character speaks is indexed by the scene lines just before it (the same user
turn the chatbot trains on), embedded with the packaged all-MiniLM-L6-v2 (the process's shared
:func:`stnlp.runtime.encoder.shared_encoder`). A message is embedded the same way and
answered with the line whose context is nearest. It needs no GPU, no hub and no trained model,
so the interface always has a source.
"""

from __future__ import annotations

from collections.abc import Sequence

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
        self.index = self.encoder.encode([t.messages[-1]["content"] for t in turns])

    def reply(self, message: str) -> str:
        """The character's line that best answers ``message``."""
        scores = self.index @ self.encoder.encode([message])[0]
        return self.turns[int(scores.argmax())].reply
