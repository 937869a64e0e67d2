"""The decoder layers below the lowest adapted one, run once for two held-out passes.

With LoRA on the top layers only (``lora_layers``), every layer below the lowest adapted one
is the base model's, merged adapter or not: over the same packed row, the adapter's held-out
pass and the untuned base's compute the same hidden states and the same keys and values up to
there. :class:`LowerLayers` records them in the first pass over a row; a second pass over the
same row starts from them and runs only the layers from the lowest adapted one up. With the
local preset's top 15 of 30 layers that is half of one of the two passes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def lowest_adapted_layer(model) -> int:
    """The lowest decoder layer ``model``'s active LoRA adapter changes: 0 when it may change
    every layer (no ``layers_to_transform``), when it also trains whole modules
    (``modules_to_save``, such as the embeddings), or when ``model`` has no adapter."""
    configs = getattr(model, "peft_config", {})
    config = configs.get(getattr(model, "active_adapter", "default"))
    layers = getattr(config, "layers_to_transform", None)
    if layers is None or getattr(config, "modules_to_save", None):
        return 0
    return layers if isinstance(layers, int) else min(layers)


class _Given(torch.nn.Module):
    """A lower decoder layer's stand-in: it outputs the recorded hidden states entering the
    lowest adapted layer, whatever it is given."""

    def __init__(self, hidden: torch.Tensor):
        super().__init__()
        self.hidden = hidden

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.hidden


class LowerLayers:
    """Per packed row (by its token ids): the hidden states entering layer ``first`` and the
    row's ``DynamicCache``, whose layers below ``first`` a later pass over the row reuses."""

    def __init__(self, first: int):
        self.first = first
        self._rows: dict[tuple[int, ...], tuple[torch.Tensor, object]] = {}

    @contextmanager
    def over(self, lm, inputs: dict, cache) -> Iterator[dict]:
        """Run ``lm.model(**inputs, past_key_values=cache)`` over one packed row within this.

        A row not seen before (or seen without a cache, now asked with one) runs every layer,
        and the input to layer ``first`` is recorded. A row seen before runs only the layers
        from ``first`` up: the ones below stand in with the recorded hidden states, and
        ``cache`` receives their recorded keys and values afterwards.
        """
        key = tuple(inputs["input_ids"][0].tolist())
        known = self._rows.get(key)
        layers = lm.model.layers
        if known is None or (cache is not None and known[1] is None):
            seen: list[torch.Tensor] = []
            hook = layers[self.first].register_forward_pre_hook(
                lambda module, args: seen.append(args[0])
            )
            try:
                yield inputs
            finally:
                hook.remove()
            self._rows[key] = (seen[0], cache)
            return
        hidden, recorded = known
        lower = [layers[i] for i in range(self.first)]
        for i in range(self.first):
            layers[i] = _Given(hidden)
        try:
            yield inputs
        finally:
            for i, layer in enumerate(lower):
                layers[i] = layer
        if cache is not None:
            cache.layers[: self.first] = recorded.layers[: self.first]
