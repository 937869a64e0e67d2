"""The held-out loss pass's keys and values, kept to start the replies to the same prompts.

The held-out comparison runs the model twice over each held-out prompt: once with the reply
for the loss (packed rows, :func:`.loss.held_out_loss`), once without it before generating a
reply (:meth:`.infer.ModelChat.replies`). In a causal model a token's key and value depend only
on the tokens before it, so the loss pass has already computed every prompt's:
:class:`PromptCache` keeps them, and the replies gather their left-padded batch cache from it
instead of running the prompts again. A prompt it does not hold (history trimmed to the
context, a sample shortened to fit) is run as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from stnlp.plugins.chatbot.packing import Sample, prompt_length


class PromptCache:
    """Every layer's keys and values of packed rows, and where each sample's prompt lies."""

    def __init__(self) -> None:
        self._keys: list[list[torch.Tensor]] = []  # per layer, per row: (heads, tokens, dim)
        self._values: list[list[torch.Tensor]] = []
        self._where: dict[tuple[int, ...], tuple[int, int, int]] = {}
        self._tokens = 0  # tokens of the rows kept so far, laid end to end

    def add(self, batch: Sequence[Sample], collated: dict, cache) -> None:
        """Keep one packed row: the samples of ``batch`` laid out by :func:`.packing.collate`
        (``collated``) and the ``DynamicCache`` of the pass over it."""
        shared = int(collated.get("shared_prefix", 0))
        bounds = collated["cu_seq_lens_q"].tolist()[1 if shared else 0 :]
        for sample, start in zip(batch, bounds, strict=False):
            prompt = tuple(sample.input_ids[: prompt_length(sample)])
            # (row start, shared prefix length, own tokens' start): see _index
            self._where[prompt] = (self._tokens, shared, self._tokens + start)
        for layer, kept in enumerate(cache.layers):
            if layer == len(self._keys):
                self._keys.append([])
                self._values.append([])
            self._keys[layer].append(kept.keys[0])
            self._values[layer].append(kept.values[0])
        self._tokens += collated["input_ids"].shape[1]

    def covers(self, prompts: Sequence[Sequence[int]]) -> bool:
        """Whether every one of ``prompts`` (token ids) is held."""
        return bool(self._keys) and all(tuple(p) in self._where for p in prompts)

    def _index(self, prompt: Sequence[int], token: int) -> int:
        """Where token ``token`` of ``prompt`` lies in the rows kept, end to end."""
        row, shared, own = self._where[tuple(prompt)]
        return row + token if token < shared else own + token - shared

    def gather(self, prompts: Sequence[Sequence[int]], columns: Sequence[Sequence[int | None]]):
        """A ``DynamicCache`` of a left-padded batch: row ``r``'s column ``c`` holds token
        ``columns[r][c]`` of ``prompts[r]``, or padding (``None``: the attention mask hides it)."""
        from transformers import DynamicCache

        index = torch.tensor(
            [
                [0 if token is None else self._index(prompt, token) for token in row]
                for prompt, row in zip(prompts, columns, strict=True)
            ]
        )
        cache = DynamicCache()
        for layer, (keys, values) in enumerate(zip(self._keys, self._values, strict=True)):
            for rows in (keys, values):  # the rows joined once, for every later batch too
                rows[:] = [torch.cat(rows, dim=1)] if len(rows) > 1 else rows
            picked = [rows[0][:, index].transpose(0, 1).contiguous() for rows in (keys, values)]
            cache.update(*picked, layer)
        return cache
