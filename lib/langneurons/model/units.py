"""Units ("neurons"): every output feature of every linear map inside the decoder blocks.

Found generically, so any Hugging Face causal LM works without per-family code: the decoder blocks
are the largest ModuleList of identical blocks, and inside them three kinds of linear map count
(lm_head never: it is outside the blocks):
- `linear`: an nn.Linear (also Falcon's subclass) or GPT-2's Conv1D — one unit per output feature;
- `router`: a mixture-of-experts router, a module with a 2-D weight [experts, hidden] next to an
  experts module — one unit per expert logit;
- `experts`: the fused expert tensors of a transformers-5 experts module (gate_up_proj / up_proj
  [experts, out, in] and down_proj) — experts x out units per tensor, expert e's units being
  e*out ... e*out + out - 1 (the out dimension is the one the expert writes).
A unit's identity is (layer, unit): layer is the module path (for an expert tensor, the parameter
path, e.g. model.layers.0.mlp.experts.gate_up_proj), unit the output index — the `layer`/`unit`
columns of the original code's expertise.csv.

Anything else in the blocks that holds a weight matrix (a quantized layer, a custom kernel, a
convolution) stops the run with an error naming it: a unit we cannot interpret is never skipped.
Fused outputs (GPT-2's c_attn, BLOOM/GPT-NeoX/Falcon query_key_value, Phi-3 qkv_proj and
gate_up_proj, expert gate_up_proj) keep their module path; `parts` says which slice is a query,
key or value (or gate/up) unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

LINEAR, ROUTER, EXPERTS = "linear", "router", "experts"
EXPERT_TENSORS = ("gate_up_proj", "up_proj", "down_proj")  # transformers-5 experts modules (integrations/moe.py)


class UnitsError(ValueError):
    """The model has no structure we can find units in, or a layer we cannot interpret."""


@dataclass(frozen=True)
class LinearModule:
    """One linear map inside a block: its units are columns offset ... offset + width - 1 of the matrix."""

    path: str  # unit identity: module path (linear, router) or parameter path (experts tensor)
    block: int  # index of the decoder block it sits in
    kind: str  # path inside the block, e.g. self_attn.q_proj, mlp.gate, mlp.experts.down_proj
    width: int  # units = output features (x experts for an expert tensor)
    offset: int  # first column of its units in the [texts x units] matrix
    site: str = LINEAR  # linear | router | experts
    module: str = ""  # path of the module to hook (the experts module for an expert tensor; else = path)
    tensor: str = ""  # experts only: gate_up_proj | up_proj | down_proj
    experts: int = 1  # experts only: how many experts the tensor holds
    parts: tuple[tuple[str, int], ...] = ()  # spans (name, size) of one expert's output, e.g. q/k/v, gate/up

    @property
    def out(self) -> int:
        """Output features of one expert (of the module, for a non-expert map)."""
        return self.width // self.experts


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
    """Output features of an nn.Linear or Conv1D (None for anything else)."""
    if isinstance(module, nn.Linear):
        return module.out_features
    from transformers.pytorch_utils import Conv1D  # here, not at the top: the scoring stages import this module without a model

    if isinstance(module, Conv1D):
        return module.nf
    return None


def is_experts(module: nn.Module) -> bool:
    """A transformers-5 experts module: 3-D expert tensors and the layout flags its decorator sets."""
    down = getattr(module, "down_proj", None)
    return (isinstance(down, nn.Parameter) and down.ndim == 3 and hasattr(module, "has_gate")
            and hasattr(module, "num_experts"))


def _router_of(name: str, module: nn.Module, experts_by_parent: dict[str, int]) -> bool:
    """A router: not a Linear, a 2-D weight [experts, hidden], and an experts module beside it."""
    weight = getattr(module, "weight", None)
    parent = name.rsplit(".", 1)[0] if "." in name else ""
    return (linear_width(module) is None and isinstance(weight, nn.Parameter) and weight.ndim == 2
            and experts_by_parent.get(parent) == weight.shape[0])


def _weights(module: nn.Module) -> list[str]:
    """Names of the module's own weight matrices: parameters (or non-boolean buffers) of 2 dims or more."""
    params = [n for n, p in module.named_parameters(recurse=False) if p.ndim >= 2]
    buffers = [n for n, b in module.named_buffers(recurse=False) if b.ndim >= 2 and b.dtype != torch.bool]
    return params + buffers


def _check_interpretable(block_path: str, name: str, module: nn.Module) -> None:
    if linear_width(module) is not None:
        weight = module.weight
        if not weight.is_floating_point():
            raise UnitsError(f"{block_path}.{name} ({type(module).__name__}) holds a quantized weight ({weight.dtype}): "
                             "langneurons reads float linear layers; load the model without quantization")
        return
    if _weights(module):
        raise UnitsError(
            f"{block_path}.{name} ({type(module).__name__}) holds weight matrices {_weights(module)} that are neither "
            "a linear layer, a router nor transformers experts: langneurons cannot tell its units (it never skips "
            "them); load the model without quantization or custom kernels"
        )


def find_linear_modules(model: nn.Module) -> list[LinearModule]:
    """Every linear map inside the decoder blocks, in block then registration order."""
    blocks_path, blocks = find_blocks(model)
    config = getattr(model, "config", None)
    found: list[LinearModule] = []
    offset = 0
    for b, block in enumerate(blocks):
        named = list(block.named_modules())
        experts_by_parent = {(n.rsplit(".", 1)[0] if "." in n else ""): int(m.num_experts)
                             for n, m in named if is_experts(m)}
        for name, module in named:
            path = f"{blocks_path}.{b}.{name}"
            width = linear_width(module)
            if width is not None:
                _check_interpretable(f"{blocks_path}.{b}", name, module)
                found.append(LinearModule(path, b, name, width, offset, LINEAR, path,
                                          parts=fused_parts(config, name, width)))
            elif is_experts(module):
                if getattr(module, "has_post_expert_norm", False):
                    raise UnitsError(f"{path} ({type(module).__name__}) applies a norm after each expert: not supported")
                for tensor in EXPERT_TENSORS:
                    weight = getattr(module, tensor, None)
                    if not isinstance(weight, nn.Parameter):
                        continue
                    n_exp = int(module.num_experts)
                    out = weight.shape[2] if module.is_transposed else weight.shape[1]
                    parts = _gate_up_parts(out, module.is_concatenated) if tensor == "gate_up_proj" else ()
                    found.append(LinearModule(f"{path}.{tensor}", b, f"{name}.{tensor}", n_exp * out, offset, EXPERTS,
                                              path, tensor, n_exp, parts))
                    offset += n_exp * out
                continue
            elif _router_of(name, module, experts_by_parent):
                width = int(module.weight.shape[0])
                found.append(LinearModule(path, b, name, width, offset, ROUTER, path))
            else:
                _check_interpretable(f"{blocks_path}.{b}", name, module)
                continue
            offset += width
    if not found:
        raise UnitsError(
            f"{type(model).__name__} has no linear layers (nn.Linear or Conv1D) in its decoder blocks "
            f"({blocks_path}): there are no units to score"
        )
    return found


# ------------------------------------------------------------------------------ fused outputs


def _gate_up_parts(out: int, concatenated: bool) -> tuple[tuple[str, int], ...]:
    half = out // 2
    return (("gate", half), ("up", half)) if concatenated else (("gate", 1), ("up", 1)) * half


def fused_parts(config: object, kind: str, width: int) -> tuple[tuple[str, int], ...]:
    """The named slices of a fused output, as each family's attention/MLP code splits it.

    GPT-2 c_attn: q, k, v of equal size; BLOOM and GPT-NeoX query_key_value: per head q, k, v;
    Falcon: q heads then one k and one v (multi-query), per head q, k, v, or per kv group q..., k, v
    (new decoder architecture); Phi-3 qkv_proj: q heads, k and v kv-heads; Phi-3 gate_up_proj: gate,
    up. Every other module: () (its kind already says what it is).
    """
    model_type = getattr(config, "model_type", "")
    leaf = kind.rsplit(".", 1)[-1]
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None) or 1
    if model_type == "gpt2" and leaf == "c_attn":
        return (("q", width // 3), ("k", width // 3), ("v", width // 3))
    if model_type in ("bloom", "gpt_neox") and leaf == "query_key_value":
        hd = width // (3 * heads)
        return (("q", hd), ("k", hd), ("v", hd)) * heads
    if model_type == "falcon" and leaf == "query_key_value":
        hd = config.hidden_size // heads
        if config.new_decoder_architecture:
            kv = config.num_kv_heads
            return ((("q", hd * heads // kv), ("k", hd), ("v", hd)) * kv)
        if config.multi_query:
            return (("q", hd * heads), ("k", hd), ("v", hd))
        return (("q", hd), ("k", hd), ("v", hd)) * heads
    if model_type == "phi3" and leaf == "qkv_proj":
        hd = getattr(config, "head_dim", None) or config.hidden_size // heads
        kv = config.num_key_value_heads
        return (("q", hd * heads), ("k", hd * kv), ("v", hd * kv))
    if model_type == "phi3" and leaf == "gate_up_proj":
        return (("gate", width // 2), ("up", width // 2))
    return ()


def part_labels(m: LinearModule) -> np.ndarray:
    """The part name of each of the map's units ("" where its output is not fused)."""
    if not m.parts:
        return np.full(m.width, "", dtype=object)
    one = np.concatenate([np.full(size, name, dtype=object) for name, size in m.parts])
    if len(one) != m.out:
        raise UnitsError(f"{m.path}: the fused layout {m.parts[:3]}... covers {len(one)} of {m.out} outputs")
    return np.tile(one, m.experts)


def units_table(modules: list[LinearModule], n_blocks: int) -> pd.DataFrame:
    """One row per unit: column (in the activation matrix), layer, unit, block, kind, part, expert, site, depth.

    `site` is linear_out for every unit here (LAPE's FFN activation units, ffn_act.py, are the other site)."""
    frames = [
        pd.DataFrame({"layer": m.path, "unit": range(m.width), "block": m.block, "kind": m.kind,
                      "part": part_labels(m), "expert": np.arange(m.width) // m.out if m.site == EXPERTS else -1,
                      "site": "linear_out"})
        for m in modules
    ]
    table = pd.concat(frames, ignore_index=True)
    table.insert(0, "column", range(len(table)))
    table["depth"] = table["block"] / max(n_blocks - 1, 1)  # 0 = first block, 1 = last: compares models
    return table.astype({"column": "int64", "unit": "int64", "block": "int64", "expert": "int64"})
