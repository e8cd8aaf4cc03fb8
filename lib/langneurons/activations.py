"""Activation collection: one mean response per (text, unit), written to a memory-mapped matrix.

Each unique text is run once. Texts are batched with right padding and an attention mask; forward
hooks on every linear layer average its output over the real tokens only, so only a [batch, units]
tensor leaves the device. With right padding the real tokens keep positions 0..len-1, so causal
attention, ALiBi (BLOOM) and sinusoidal/rotary positions (XGLM, Llama) give them the same values as
an unpadded run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .atomic import atomic_path, write_json, write_parquet
from .models import input_device
from .units import LinearModule, find_blocks, find_linear_modules, units_table

MATRIX_FILE = "activations.npy"
META_FILE = "meta.json"
UNITS_FILE = "units.parquet"
TOKENS_FILE = "token_counts.parquet"
_STORAGE = {"float32": np.float32, "float16": np.float16}


@dataclass
class Tokenized:
    ids: list[list[int]]  # token ids per text, special tokens included, as tokenizer(text) gives them
    kept: np.ndarray  # bool per text: at most seq_len tokens (the paper drops longer texts)


def tokenize(tokenizer: PreTrainedTokenizerBase, texts: list[str], seq_len: int) -> Tokenized:
    """`tokenizer(text)` with the tokenizer's own special tokens, exactly as the original code."""
    ids = tokenizer(texts, add_special_tokens=True)["input_ids"]
    kept = np.array([0 < len(x) <= seq_len for x in ids], dtype=bool)
    return Tokenized(ids, kept)


class MeanPoolHooks:
    """Forward hooks writing each linear layer's token-mean into columns of one [batch, units] buffer."""

    def __init__(self, modules: list[LinearModule], model: torch.nn.Module, device: torch.device):
        self.modules = modules
        self.device = device
        self.n_units = sum(m.width for m in modules)
        self.mask: torch.Tensor | None = None  # [batch, tokens, 1] bool, set before each forward
        self.lengths: torch.Tensor | None = None  # [batch, 1] float
        self.buffer: torch.Tensor | None = None
        by_path = dict(model.named_modules())
        self._targets = [(by_path[m.path], m) for m in modules]

    def _hook(self, m: LinearModule):
        def hook(_module: torch.nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            mask = self.mask.to(output.device)
            summed = output.float().masked_fill(~mask, 0.0).sum(dim=1)  # masked_fill: padding never leaks
            self.buffer[:, m.offset:m.offset + m.width] = (summed / self.lengths.to(output.device)).to(self.device)
        return hook

    @contextmanager
    def attached(self) -> Iterator[MeanPoolHooks]:
        handles = [module.register_forward_hook(self._hook(m)) for module, m in self._targets]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def set_batch(self, attention_mask: torch.Tensor) -> None:
        self.mask = attention_mask.bool().unsqueeze(-1)
        self.lengths = attention_mask.sum(dim=1, keepdim=True).float()
        self.buffer = torch.empty(attention_mask.shape[0], self.n_units, dtype=torch.float32, device=self.device)


def pad_batch(batch_ids: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists into input_ids and attention_mask tensors."""
    width = max(len(x) for x in batch_ids)
    input_ids = torch.full((len(batch_ids), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch_ids), width), dtype=torch.long)
    for i, x in enumerate(batch_ids):
        input_ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
        attention_mask[i, : len(x)] = 1
    return input_ids.to(device), attention_mask.to(device)


def pad_id_of(tokenizer: PreTrainedTokenizerBase) -> int:
    """Any id works for padding (it is masked out); Llama-2 has no pad token, so fall back to EOS/0."""
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    return 0


@torch.inference_mode()
def mean_responses(
    model: PreTrainedModel, hooks: MeanPoolHooks, batch_ids: list[list[int]], pad_id: int
) -> torch.Tensor:
    """[batch, units] mean responses for one batch of token lists (hooks must be attached)."""
    input_ids, attention_mask = pad_batch(batch_ids, pad_id, input_device(model))
    hooks.set_batch(attention_mask)
    # The base model is enough: the hooks sit in its blocks, and skipping lm_head avoids a
    # [batch, tokens, vocab] logits tensor (250k vocab for XGLM/BLOOM).
    model.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    return hooks.buffer


def collect_activations(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    out_dir: Path,
    seq_len: int,
    batch_size: int,
    storage_dtype: str = "float32",
    provenance: dict | None = None,
) -> Path:
    """Run every text once and store the [texts x units] matrix (row = text_id) under out_dir.

    Writes activations.npy (memory-mapped, filled batch by batch; rows of dropped texts are NaN),
    units.parquet, token_counts.parquet and meta.json (with `provenance`, e.g. the model id and
    revision, recorded as given). Returns the matrix path.
    """
    modules = find_linear_modules(model)
    _, blocks = find_blocks(model)
    device = input_device(model)
    tok = tokenize(tokenizer, texts, seq_len)
    hooks = MeanPoolHooks(modules, model, device)
    order = [i for i in sorted(range(len(texts)), key=lambda i: -len(tok.ids[i])) if tok.kept[i]]  # longest first
    out_dir.mkdir(parents=True, exist_ok=True)
    matrix_path = out_dir / MATRIX_FILE
    pad_id = pad_id_of(tokenizer)
    with atomic_path(matrix_path) as tmp:
        matrix = np.lib.format.open_memmap(tmp, mode="w+", dtype=_STORAGE[storage_dtype], shape=(len(texts), hooks.n_units))
        matrix[~tok.kept] = np.nan
        with hooks.attached():
            for start in tqdm(range(0, len(order), batch_size), desc="activations", unit="batch"):
                rows = order[start:start + batch_size]
                pooled = mean_responses(model, hooks, [tok.ids[i] for i in rows], pad_id)
                matrix[np.array(rows)] = pooled.cpu().numpy().astype(matrix.dtype)
        matrix.flush()
        del matrix
    write_parquet(out_dir / UNITS_FILE, units_table(modules, len(blocks)))
    write_parquet(out_dir / TOKENS_FILE, pd.DataFrame({
        "text_id": np.arange(len(texts)), "n_tokens": [len(x) for x in tok.ids], "kept": tok.kept,
    }))
    write_json(out_dir / META_FILE, {
        "n_texts": len(texts), "n_units": hooks.n_units, "n_kept": int(tok.kept.sum()),
        "n_dropped_longer_than_seq_len": int((~tok.kept).sum()), "seq_len": seq_len,
        "storage_dtype": storage_dtype, "n_blocks": len(blocks), "n_linear_modules": len(modules),
        "example_tokens": tokenizer.convert_ids_to_tokens(tok.ids[0][:8]) if texts else [],
        "provenance": provenance or {},
    })
    return matrix_path


def load_activations(out_dir: Path) -> tuple[np.ndarray, pd.DataFrame, dict]:
    """The memory-mapped matrix (read-only), the units table and the meta record."""
    matrix_path = out_dir / MATRIX_FILE
    if not matrix_path.is_file():
        raise FileNotFoundError(f"{matrix_path} is missing: run notebook 02 (activations) first")
    meta = json.loads((out_dir / META_FILE).read_text())
    matrix = np.load(matrix_path, mmap_mode="r")
    if matrix.shape != (meta["n_texts"], meta["n_units"]):
        raise ValueError(f"{matrix_path} has shape {matrix.shape}, expected {(meta['n_texts'], meta['n_units'])}: rerun notebook 02")
    return matrix, pd.read_parquet(out_dir / UNITS_FILE), meta
