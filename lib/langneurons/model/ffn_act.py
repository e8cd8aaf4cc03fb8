"""FFN activation units: the output of each block's feed-forward activation function (LAPE's neurons).

LAPE (Tang et al., 2024) counts a different kind of neuron than the paper's AP: not the output of
a linear map but the activation inside the feed-forward network, act(fc1(x)) in XGLM/BLOOM/GPT-2
and act(gate_proj(x)) in gated FFNs such as Llama's. Its site is `ffn_act`, where AP's units are
`linear_out`.

Found generically: in each decoder block, the one parameter-free leaf module that is an activation
function (a class from transformers.activations or torch.nn's activations, or named like one, e.g.
BLOOM's BloomGelu). One short forward pass then gives each module's width and its *feeder*: the
linear map whose output (or a slice of it, for a fused gate_up_proj) the activation reads. Unit j
of the activation is then fed by unit feeder_unit0 + j of that linear map, which is how AP's units
and LAPE's are compared unit by unit (see comparison.unit_sets).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from langneurons.model.loading import input_device
from langneurons.model.units import LINEAR, UnitsError, find_blocks, find_linear_modules, is_experts

LINEAR_OUT, FFN_ACT = "linear_out", "ffn_act"  # the `site` column of a units table
_ACTIVATION_MODULES = ("transformers.activations", "torch.nn.modules.activation")
_ACTIVATION_NAME = re.compile(r"gelu|relu|silu|swish|swiglu|geglu|activation|tanh|mish", re.IGNORECASE)
_NOT_FFN = ("Softmax", "Softmin", "LogSoftmax", "MultiheadAttention", "Softmax2d")


@dataclass(frozen=True)
class ActModule:
    """One block's FFN activation function: its units are columns offset ... offset + width - 1."""

    path: str  # module path (the unit identity, like a linear map's path)
    block: int
    kind: str  # path inside the block, e.g. mlp.act_fn, activation_fn
    width: int  # units = features of its output (the FFN's intermediate size)
    offset: int  # first column in the [texts x ffn units] matrix
    feeder: str  # path of the linear map whose output it reads ("" when the pass could not tell)
    feeder_unit0: int  # the feeder's unit that feeds this module's unit 0 (a gate slice may start later)


def is_activation(module: nn.Module) -> bool:
    """A parameter-free leaf module implementing an activation function (not a softmax)."""
    cls = type(module)
    if next(module.children(), None) is not None or next(module.parameters(recurse=False), None) is not None:
        return False
    if cls.__name__ in _NOT_FFN:
        return False
    return cls.__module__ in _ACTIVATION_MODULES or bool(_ACTIVATION_NAME.search(cls.__name__))


def activation_paths(model: nn.Module) -> list[tuple[int, str, str]]:
    """(block, path, kind) of each block's activation function; an error if a block has none or several."""
    blocks_path, blocks = find_blocks(model)
    found, seen = [], {}
    for b, block in enumerate(blocks):
        if any(is_experts(m) for m in block.modules()):
            raise UnitsError(f"{blocks_path}.{b} is a mixture of experts: LAPE's FFN activation units are defined for "
                             "dense feed-forward blocks; use selection.method=ap for this model")
        acts = [(name, m) for name, m in block.named_modules() if name and is_activation(m)]
        if len(acts) != 1:
            names = [f"{n} ({type(m).__name__})" for n, m in acts] or ["none"]
            raise UnitsError(f"{blocks_path}.{b} has {len(acts)} activation-function modules ({', '.join(names)}), "
                             "not one: langneurons cannot tell its FFN activation units; use selection.method=ap")
        name, module = acts[0]
        if id(module) in seen:
            raise UnitsError(f"{blocks_path}.{b}.{name} is the same module object as block {seen[id(module)]}'s: "
                             "its output cannot be told apart per block; use selection.method=ap")
        seen[id(module)] = b
        found.append((b, f"{blocks_path}.{b}.{name}", name))
    return found


@torch.inference_mode()
def find_act_modules(model: nn.Module) -> list[ActModule]:
    """Every block's FFN activation module with its width and feeder, from one 2-token forward pass."""
    acts = activation_paths(model)
    linears = {m.path: m for m in find_linear_modules(model) if m.site == LINEAR}
    modules = dict(model.named_modules())
    outputs: dict[str, torch.Tensor] = {}
    inputs: dict[str, torch.Tensor] = {}
    handles = []

    def keep(store: dict[str, torch.Tensor], path: str, which: str):
        def hook(_m: nn.Module, args: tuple, output: torch.Tensor) -> None:
            value = args[0] if which == "input" else output
            if isinstance(value, torch.Tensor):
                store[path] = value
        return hook

    try:
        for path in linears:
            handles.append(modules[path].register_forward_hook(keep(outputs, path, "output")))
        for _, path, _ in acts:
            handles.append(modules[path].register_forward_hook(keep(inputs, path, "input")))
            handles.append(modules[path].register_forward_hook(keep(outputs, path, "output")))
        ids = torch.zeros((1, 2), dtype=torch.long, device=input_device(model))
        model.base_model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    found, offset = [], 0
    for b, path, kind in acts:
        if path not in outputs:
            raise UnitsError(f"{path} did not run in a forward pass: it is not the block's FFN activation; "
                             "use selection.method=ap for this model")
        width = int(outputs[path].shape[-1])
        feeder, unit0 = _feeder(inputs.get(path), {p: outputs[p] for p, m in linears.items() if m.block == b})
        found.append(ActModule(path, b, kind, width, offset, feeder, unit0))
        offset += width
    return found


def _feeder(x: torch.Tensor | None, candidates: dict[str, torch.Tensor]) -> tuple[str, int]:
    """The linear output that `x` is (or is a last-dimension slice of): its path and the slice's first unit."""
    if x is None:
        return "", 0
    for path, out in candidates.items():
        if out.untyped_storage().data_ptr() != x.untyped_storage().data_ptr() or out.stride(-1) != 1:
            continue
        shift = x.storage_offset() - out.storage_offset()
        if x.shape[:-1] == out.shape[:-1] and 0 <= shift and shift + x.shape[-1] <= out.shape[-1]:
            return path, int(shift)
    return "", 0


def act_units_table(modules: list[ActModule], n_blocks: int) -> pd.DataFrame:
    """One row per FFN activation unit, in the columns of the linear units table plus its feeder."""
    frames = [pd.DataFrame({"layer": m.path, "unit": range(m.width), "block": m.block, "kind": m.kind, "part": "",
                            "expert": -1, "site": FFN_ACT, "feeder_layer": m.feeder,
                            "feeder_unit": np.arange(m.width) + m.feeder_unit0 if m.feeder else -1})
              for m in modules]
    table = pd.concat(frames, ignore_index=True)
    table.insert(0, "column", range(len(table)))
    table["depth"] = table["block"] / max(n_blocks - 1, 1)
    return table.astype({"column": "int64", "unit": "int64", "block": "int64", "expert": "int64", "feeder_unit": "int64"})
