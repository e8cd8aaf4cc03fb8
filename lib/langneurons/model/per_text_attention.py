"""Eager attention computed one text at a time inside a batched forward pass.

Why: the original code runs one text per forward pass, and a batch gives its bits only if every
operation gives a row the same bits whatever the rows beside it. Linear maps do under the kernel
pin; attention may not. Measured on Gemma 3 (one key/value head shared by four query heads): at
batch size 1, torch.matmul folds the four heads into one matrix product against the shared keys
([44 x 256] @ [256 x 11] for an 11-token text), while a batch of texts runs a batched product of
[11 x 256] blocks; the two round differently (up to 1.5e-6 in the attention weights). Running the
model family's own eager attention on each text's slice (batch size 1) gives the original's bits,
while every linear map still runs on the whole batch (where the time goes).

Only for models whose attention goes through transformers' attention interface with
`attn_implementation: eager`; others are left as they are (activation collection's probe still
checks the bits).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch

NAME = "langneurons_eager_per_text"
_registered = False


def _per_text(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              attention_mask: torch.Tensor | None, **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
    eager = sys.modules[type(module).__module__].eager_attention_forward  # the family's own eager attention
    batch = query.shape[0]
    if batch == 1:
        return eager(module, query, key, value, attention_mask, **kwargs)
    outputs, weights = [], []
    for i in range(batch):
        mask = None if attention_mask is None else attention_mask[i:i + 1] if attention_mask.shape[0] > 1 else attention_mask
        out, w = eager(module, query[i:i + 1], key[i:i + 1], value[i:i + 1], mask, **kwargs)
        outputs.append(out)
        weights.append(w)
    return torch.cat(outputs), (torch.cat(weights) if weights[0] is not None else None)


def _register() -> None:
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(NAME, _per_text)
    AttentionMaskInterface.register(NAME, eager_mask)  # the same additive mask eager attention gets
    _registered = True


def _uses_interface(model: torch.nn.Module) -> bool:
    """Whether the model's attention modules dispatch through transformers' attention interface."""
    for module in model.modules():
        family = sys.modules.get(type(module).__module__)
        if family is not None and hasattr(family, "eager_attention_forward") and hasattr(family, "ALL_ATTENTION_FUNCTIONS"):
            return True
    return False


@contextmanager
def per_text_attention(model: torch.nn.Module) -> Iterator[bool]:
    """Within the block, eager attention runs text by text; yields whether it was switched."""
    config = model.config
    if getattr(config, "_attn_implementation", None) != "eager" or not _uses_interface(model):
        yield False
        return
    _register()
    config._attn_implementation = NAME
    try:
        yield True
    finally:
        config._attn_implementation = "eager"
