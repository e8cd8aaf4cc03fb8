"""Eager attention text by text inside a batch: grouped-query attention (Gemma 3) keeps the bits of
one text per forward pass, which plain batched eager attention did not on the machine this was
found on (per_text_attention.py says why)."""

from __future__ import annotations

import pytest
import torch

from langneurons.model.activations import MeanPoolHooks, collect_activations, load_activations, mean_responses
from langneurons.model.per_text_attention import per_text_attention
from langneurons.model.units import find_linear_modules


def tiny_gemma3() -> torch.nn.Module:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=1, head_dim=64, max_position_embeddings=128,
                              sliding_window=16)
    config._attn_implementation = "eager"
    return Gemma3ForCausalLM(config).eval()


@pytest.mark.parametrize("tokens", [5, 11, 24])
def test_a_batch_gives_the_bits_of_one_text_per_forward_with_grouped_query_attention(tokens):
    model = tiny_gemma3()
    hooks = MeanPoolHooks(find_linear_modules(model), model, torch.device("cpu"))
    ids = torch.randint(3, 300, (6, tokens), generator=torch.Generator().manual_seed(tokens)).tolist()
    with hooks.attached():
        alone = torch.cat([mean_responses(model, hooks, [x], 0).clone() for x in ids])
        with per_text_attention(model) as switched:
            assert switched and model.config._attn_implementation != "eager"
            batched = mean_responses(model, hooks, ids, 0).clone()
    assert model.config._attn_implementation == "eager"  # restored
    assert torch.equal(batched, alone)


def test_activation_collection_uses_it_and_records_it(tmp_path):
    from langneurons.model.tiny import train_tokenizer
    from conftest import ALL_SENTENCES

    model = tiny_gemma3()
    tokenizer = train_tokenizer(ALL_SENTENCES * 3, "llama", vocab_size=300)
    collect_activations(model, tokenizer, ALL_SENTENCES, tmp_path / "a", seq_len=64, batch_size=8, exact="auto")
    batched, _, meta = load_activations(tmp_path / "a")
    assert meta["attention_per_text"] is True and meta["batching"]["one_per_forward"] is False
    collect_activations(model, tokenizer, ALL_SENTENCES, tmp_path / "b", seq_len=64, batch_size=8, exact=True)
    alone, _, _ = load_activations(tmp_path / "b")
    assert (batched == alone).all()


def test_models_without_the_attention_interface_are_left_alone(tiny):
    model, _ = tiny("xglm")
    with per_text_attention(model) as switched:
        assert not switched
