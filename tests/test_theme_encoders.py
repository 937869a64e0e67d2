"""The theme encoders against the stock path: every text run through the model alone, unpadded,
in fp32. Batching by token count must not change an embedding; bf16 may only move it a little,
and must leave the theme votes of real subtitle sentences where fp32 puts them."""

from __future__ import annotations

import pytest
import torch

from stnlp.plugins.classifier import onnx_encoder
from stnlp.plugins.classifier.onnx_encoder import concrete_kind, theme_encoder
from stnlp.plugins.classifier.theme_scorers import EmbeddingThemeScorer
from stnlp.plugins.classifier.themes import DEFAULT_THEMES, episodes_from_captions
from stnlp.runtime.data import SAMPLE_DIR, load_subtitles
from stnlp.runtime.encoder import SentenceEncoder, native_bf16, shared_encoder, token_batches

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    """The sample's distinct subtitle sentences, as the theme job splits them."""
    episodes = episodes_from_captions(load_subtitles(SAMPLE_DIR / "subtitles").records)
    return list(dict.fromkeys(s for e in episodes for s in e.sentences))


def mixed(sentences: list[str]) -> list[str]:
    """Texts of every length in an order unrelated to it, an empty one and one past the
    encoder's 128-token limit among them."""
    picked = sentences[::25]
    return [*picked[:20], "", " ".join(["Hawkins"] * 200), *picked[20:]]


@torch.inference_mode()
def stock(encoder: SentenceEncoder, text: str) -> torch.Tensor:
    """``text`` embedded alone: the tokenizer's own call, no padding, fp32, a plain mean."""
    batch = encoder.tokenizer([text], truncation=True, max_length=128, return_tensors="pt")
    hidden = encoder.model(**batch).last_hidden_state[0]
    return torch.nn.functional.normalize(hidden.mean(dim=0), dim=-1)


def test_batching_by_token_count_gives_every_text_its_own_embedding(sentences):
    texts = mixed(sentences)
    encoder = shared_encoder()
    expected = torch.stack([stock(encoder, t) for t in texts])
    for kind in ("torch", "onnx"):
        got = theme_encoder(kind).encode(texts, batch_tokens=64)  # many batches, mixed lengths
        assert torch.allclose(got, expected, atol=2e-5), kind
        assert theme_encoder(kind).encode([]).shape == (0, encoder.dim)


def test_every_text_is_in_one_batch_and_none_is_padded(sentences):
    tokenizer = shared_encoder().tokenizer
    seen, tokens = [], 0
    for idx, input_ids in token_batches(tokenizer, sentences, 128):
        seen += idx
        tokens += input_ids.numel()
        assert input_ids.shape[1] == len(tokenizer(sentences[idx[0]])["input_ids"])
    assert sorted(seen) == list(range(len(sentences)))
    assert tokens == sum(len(ids) for ids in tokenizer(sentences)["input_ids"])


@pytest.mark.parametrize("kind", ["bf16", "onnx"])
def test_an_embedding_does_not_depend_on_the_rest_of_its_batch(sentences, kind):
    """What makes the shards of a corpus score exactly as the whole: before, a padded bf16
    batch moved an embedding by up to 4e-4."""
    encoder = theme_encoder(kind)
    whole = encoder.encode(sentences[:300])
    for part in (slice(0, 100), slice(100, 300, 3)):
        assert torch.equal(encoder.encode(sentences[part]), whole[part]), part


def test_bf16_embeddings_and_theme_votes_stay_with_fp32(sentences):
    subset = sentences[::4]
    fp32, bf16 = shared_encoder(), theme_encoder("bf16")
    assert bf16.model.dtype == torch.bfloat16 and "bfloat16" in bf16.name
    cosine = (fp32.encode(subset) * bf16.encode(subset)).sum(dim=1)
    assert float(cosine.min()) > 0.999
    exact = EmbeddingThemeScorer(fp32).score(subset, DEFAULT_THEMES)
    close = EmbeddingThemeScorer(bf16).score(subset, DEFAULT_THEMES)
    voting, still_voting = exact.sum(dim=1) > 0, close.sum(dim=1) > 0
    assert float((voting == still_voting).float().mean()) > 0.99  # 1 of 378 flips here
    both = voting & still_voting
    assert float((exact - close)[both].abs().sum(dim=1).max()) < 0.05  # 0.02 here
    shares = exact.mean(dim=0) - close.mean(dim=0)  # a corpus's theme scores
    assert float(shares.abs().max()) < 0.005  # 0.0011 here


ICE_LAKE = "fpu vme avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni avx512_bitalg"
ZEN_4 = ICE_LAKE + " avx512_bf16 avx512_vbmi2 avx512_vpopcntdq"
SAPPHIRE_RAPIDS = ICE_LAKE + " avx512_bf16 amx_bf16 amx_tile amx_int8"


@pytest.mark.parametrize(
    ("flags", "native"),
    [(ICE_LAKE, False), (ZEN_4, True), (SAPPHIRE_RAPIDS, True), ("fpu avx2 fma", False)],
)
def test_native_bf16_reads_the_cpus_flags(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: x\nflags\t\t: {flags}\n\n" * 2)
    assert native_bf16(cpuinfo) is native
    assert native_bf16(tmp_path / "missing") is False


@pytest.mark.parametrize(("native", "kind"), [(True, "bf16"), (False, "onnx")])
def test_auto_picks_bf16_only_where_the_cpu_multiplies_it_natively(monkeypatch, native, kind):
    monkeypatch.setattr(onnx_encoder, "native_bf16", lambda: native)
    assert concrete_kind("auto") == kind
    assert concrete_kind("torch") == "torch"
