"""Units ("neurons"): every output feature of every linear layer inside the decoder blocks.

Found generically, so any Hugging Face causal LM works without per-family code: the decoder blocks
are the largest ModuleList of identical blocks; inside them every nn.Linear (and GPT-2's Conv1D)
counts, lm_head never (it is outside the blocks). A unit's identity is (layer = module path, unit =
output index), the same as the `layer`/`unit` columns of the original code's expertise.csv.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from torch import nn
from transformers.pytorch_utils import Conv1D


class UnitsError(ValueError):
    """The model has no structure we can find units in."""


@dataclass(frozen=True)
class LinearModule:
    path: str  # full module path, e.g. model.layers.3.self_attn.q_proj
    block: int  # index of the decoder block it sits in
    kind: str  # path inside the block, e.g. self_attn.q_proj
    width: int  # output features = units
    offset: int  # first column of its units in the [texts x units] matrix


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The decoder blocks: the ModuleList of same-type children holding the most parameters."""
    best: tuple[int, str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            if len({type(child) for child in module}) != 1:
                continue
            size = sum(p.numel() for p in module.parameters())
            if size > 0 and (best is None or size > best[0]):
                best = (size, name, module)
    if best is None:
        raise UnitsError(
            f"{type(model).__name__} has no list of decoder blocks (nn.ModuleList): "
            "langneurons needs a transformer decoder like the Hugging Face causal LMs"
        )
    return best[1], best[2]


def linear_width(module: nn.Module) -> int | None:
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, Conv1D):
        return module.nf
    return None


def find_linear_modules(model: nn.Module) -> list[LinearModule]:
    """All linear layers inside the decoder blocks, in block then registration order."""
    blocks_path, blocks = find_blocks(model)
    found: list[LinearModule] = []
    offset = 0
    for b, block in enumerate(blocks):
        for name, module in block.named_modules():
            width = linear_width(module)
            if width is None:
                continue
            found.append(LinearModule(f"{blocks_path}.{b}.{name}", b, name, width, offset))
            offset += width
    if not found:
        raise UnitsError(
            f"{type(model).__name__} has no linear layers (nn.Linear or Conv1D) in its decoder blocks "
            f"({blocks_path}): there are no units to score"
        )
    return found


def units_table(modules: list[LinearModule], n_blocks: int) -> pd.DataFrame:
    """One row per unit: column (position in the activation matrix), layer, unit, block, kind, depth."""
    frames = [
        pd.DataFrame({"layer": m.path, "unit": range(m.width), "block": m.block, "kind": m.kind})
        for m in modules
    ]
    table = pd.concat(frames, ignore_index=True)
    table.insert(0, "column", range(len(table)))
    table["depth"] = table["block"] / max(n_blocks - 1, 1)  # 0 = first block, 1 = last: compares models
    return table.astype({"column": "int64", "unit": "int64", "block": "int64"})
