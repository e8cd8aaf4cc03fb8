"""The architecture matrix: tiny random models of today's decoder families, built from configs (no download).

Each family has a config small enough for the tests (d = 64, 2 blocks), a tokenizer with the special
tokens and start-of-text convention of the family's real tokenizer, and — computed from the config
alone, never from the finder — the units each kind of linear map should have per block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerFast

from conftest import ALL_SENTENCES
from langneurons.model.tiny import bpe_tokenizer

D, LAYERS, HEADS, KV, FFN = 64, 2, 4, 2, 128


def _head_dim(c: PretrainedConfig) -> int:
    return getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads


def _gated(c: PretrainedConfig) -> dict[str, int]:
    """Llama-style blocks: separate q/k/v/o projections (grouped-query k/v) and a gated MLP."""
    hd = _head_dim(c)
    return {"self_attn.q_proj": c.num_attention_heads * hd, "self_attn.k_proj": c.num_key_value_heads * hd,
            "self_attn.v_proj": c.num_key_value_heads * hd, "self_attn.o_proj": c.hidden_size,
            "mlp.gate_proj": c.intermediate_size, "mlp.up_proj": c.intermediate_size, "mlp.down_proj": c.hidden_size}


def _attention(c: PretrainedConfig) -> dict[str, int]:
    return {k: v for k, v in _gated(c).items() if k.startswith("self_attn.")}


def _gpt2(c):
    return {"attn.c_attn": 3 * c.n_embd, "attn.c_proj": c.n_embd, "mlp.c_fc": c.n_inner or 4 * c.n_embd,
            "mlp.c_proj": c.n_embd}


def _gpt_neox(c):
    return {"attention.query_key_value": 3 * c.hidden_size, "attention.dense": c.hidden_size,
            "mlp.dense_h_to_4h": c.intermediate_size, "mlp.dense_4h_to_h": c.hidden_size}


def _opt(c):
    d = c.hidden_size
    return {"self_attn.k_proj": d, "self_attn.v_proj": d, "self_attn.q_proj": d, "self_attn.out_proj": d,
            "fc1": c.ffn_dim, "fc2": d}


def _falcon(c):
    hd = c.hidden_size // c.num_attention_heads
    qkv = (c.num_attention_heads + 2) * hd if c.multi_query else 3 * c.hidden_size
    return {"self_attention.query_key_value": qkv, "self_attention.dense": c.hidden_size,
            "mlp.dense_h_to_4h": c.ffn_hidden_size or 4 * c.hidden_size, "mlp.dense_4h_to_h": c.hidden_size}


def _xglm(c):
    d = c.d_model
    return {"self_attn.k_proj": d, "self_attn.v_proj": d, "self_attn.q_proj": d, "self_attn.out_proj": d,
            "fc1": c.ffn_dim, "fc2": d}


def _bloom(c):
    h = c.hidden_size
    return {"self_attention.query_key_value": 3 * h, "self_attention.dense": h, "mlp.dense_h_to_4h": 4 * h,
            "mlp.dense_4h_to_h": h}


def _phi3(c):
    hd = _head_dim(c)
    return {"self_attn.qkv_proj": (c.num_attention_heads + 2 * c.num_key_value_heads) * hd,
            "self_attn.o_proj": c.hidden_size, "mlp.gate_up_proj": 2 * c.intermediate_size, "mlp.down_proj": c.hidden_size}


def _mixtral(c):
    e = c.num_local_experts
    return {**_attention(c), "mlp.gate": e, "mlp.experts.gate_up_proj": e * 2 * c.intermediate_size,
            "mlp.experts.down_proj": e * c.hidden_size}


def _qwen2_moe(c):
    e, shared = c.num_experts, c.shared_expert_intermediate_size
    return {**_attention(c), "mlp.gate": e, "mlp.experts.gate_up_proj": e * 2 * c.moe_intermediate_size,
            "mlp.experts.down_proj": e * c.hidden_size, "mlp.shared_expert.gate_proj": shared,
            "mlp.shared_expert.up_proj": shared, "mlp.shared_expert.down_proj": c.hidden_size,
            "mlp.shared_expert_gate": 1}


_LLAMA_TOK = (["<unk>", "<s>", "</s>"], "<s>", dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>"))
_ENDOFTEXT = (["<|endoftext|>"], None, dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"))
_QWEN_TOK = (["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None,  # Qwen: no BOS token at all
             dict(eos_token="<|endoftext|>", pad_token="<|endoftext|>"))
_GATED = dict(hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV,
              intermediate_size=FFN)


@dataclass(frozen=True)
class Family:
    name: str  # model_type, for AutoConfig.for_model
    config: dict  # the tiny config's arguments (token ids are added from the tokenizer)
    tokenizer: tuple[list[str], str | None, dict[str, str]]  # specials, token put before every text, named tokens
    start: str  # the token unconditional generation starts from (generation.start=auto)
    units: Callable[[PretrainedConfig], dict[str, int]]  # kind -> units per block, from the config alone
    moe: bool = False


FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("gpt2", dict(n_embd=D, n_layer=LAYERS, n_head=HEADS), _ENDOFTEXT, "<|endoftext|>", _gpt2),
    Family("gpt_neox", dict(hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=FFN),
           (["<|endoftext|>", "<|padding|>"], None, dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                                         pad_token="<|padding|>")), "<|endoftext|>", _gpt_neox),
    Family("opt", dict(hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS, ffn_dim=FFN,
                       word_embed_proj_dim=D),  # OPT's tokenizer puts </s> before every text
           (["<s>", "<pad>", "</s>", "<unk>"], "</s>", dict(bos_token="</s>", eos_token="</s>", pad_token="<pad>",
                                                            unk_token="<unk>")), "</s>", _opt),
    Family("falcon", dict(hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS),
           (["<|endoftext|>"], None, dict(eos_token="<|endoftext|>")), "<|endoftext|>", _falcon),
    Family("xglm", dict(d_model=D, num_layers=LAYERS, attention_heads=HEADS, ffn_dim=FFN),
           (["<s>", "<pad>", "</s>", "<unk>"], "</s>", dict(bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                                            unk_token="<unk>")), "</s>", _xglm),
    Family("bloom", dict(hidden_size=D, n_layer=LAYERS, n_head=HEADS),
           (["<unk>", "<s>", "</s>", "<pad>"], None, dict(bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                                          unk_token="<unk>")), "</s>", _bloom),
    Family("llama", dict(_GATED), _LLAMA_TOK, "<s>", _gated),
    Family("mistral", dict(_GATED), _LLAMA_TOK, "<s>", _gated),
    Family("qwen2", dict(_GATED), _QWEN_TOK, "<|endoftext|>", _gated),
    Family("qwen3", dict(_GATED, head_dim=16), _QWEN_TOK, "<|endoftext|>", _gated),
    Family("gemma3_text", dict(_GATED, head_dim=16),
           (["<pad>", "<eos>", "<bos>", "<unk>"], "<bos>", dict(bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                                                unk_token="<unk>")), "<bos>", _gated),
    Family("gemma2", dict(_GATED, head_dim=16),
           (["<pad>", "<eos>", "<bos>", "<unk>"], "<bos>", dict(bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                                                unk_token="<unk>")), "<bos>", _gated),
    Family("phi3", dict(_GATED, num_key_value_heads=HEADS), _LLAMA_TOK, "<s>", _phi3),
    Family("olmo2", dict(_GATED, num_key_value_heads=HEADS), _ENDOFTEXT, "<|endoftext|>", _gated),
    Family("mixtral", dict(_GATED, num_local_experts=4, num_experts_per_tok=2), _LLAMA_TOK, "<s>", _mixtral, moe=True),
    Family("qwen2_moe", dict(_GATED, moe_intermediate_size=32, shared_expert_intermediate_size=64, num_experts=4,
                             num_experts_per_tok=2), _QWEN_TOK, "<|endoftext|>", _qwen2_moe, moe=True),
]}


def tokenizer_for(name: str) -> PreTrainedTokenizerFast:
    specials, prepend, named = FAMILIES[name].tokenizer
    return bpe_tokenizer(ALL_SENTENCES * 3, specials, prepend, named, vocab_size=300)


def build(name: str, seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A seeded random model of the family with its tokenizer (float32, eval mode, eager attention)."""
    tokenizer = tokenizer_for(name)
    ids = {f"{k}_token_id": tokenizer.convert_tokens_to_ids(getattr(tokenizer, f"{k}_token"))
           for k in ("bos", "eos", "pad") if getattr(tokenizer, f"{k}_token")}
    ids.setdefault("bos_token_id", None)
    ids.setdefault("pad_token_id", ids["eos_token_id"])  # configs default to ids of the real vocabularies
    config = AutoConfig.for_model(name, vocab_size=len(tokenizer), **ids, **FAMILIES[name].config)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    with torch.no_grad():  # some families initialise the router or norms at zero: make every unit matter
        for p in model.parameters():
            if p.ndim >= 2 and p.abs().sum() == 0:
                p.normal_(0.0, 0.2)
    return model.eval(), tokenizer


def save(name: str, out_dir: Path, seed: int = 0) -> Path:
    model, tokenizer = build(name, seed)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
