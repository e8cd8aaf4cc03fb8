"""Intervention: fix selected units to fixed values at every position, as the paper controls generation.

A forward hook on each chosen linear layer overwrites its chosen output features (routers and expert
tensors of a mixture of experts are forced through moe.py). LAPE's units, the outputs of a block's
FFN activation function (model/ffn_act.py), are forced by the same hook on that module; forcing
them to "zero" is LAPE's deactivation. Every forward pass is hooked, so the
prompt and every generated token are forced; with a KV cache each step's forward
holds only the new token, and the cached keys/values were computed under forcing too, so cached and
uncached generation agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import numpy as np
import pandas as pd
import torch
from torch import nn

from langneurons.model.ffn_act import find_act_modules
from langneurons.model.moe import experts_hooked, router_forced, split_by_expert
from langneurons.model.units import LINEAR, ROUTER, LinearModule, find_linear_modules

Spec = dict[str, tuple[torch.Tensor, torch.Tensor]]  # module path -> (unit indices, values)
VALUE_COLUMNS = ("on_p50", "on_p90", "off_mean", "off_p50")
ZERO = "zero"


class InterventionError(ValueError):
    """The forcing spec does not fit the selection or the model."""


def forcing_spec(selection: pd.DataFrame, value: str = "on_p50") -> Spec:
    """Selected units grouped by layer, each with the value it is fixed to (a column, or "zero").

    Rows listing the same (layer, unit) with the same value are merged (e.g. one unit selected for
    two languages); different values for one unit cannot both be forced, so they are an error.
    """
    if value != ZERO and value not in VALUE_COLUMNS:
        raise InterventionError(f"unknown forcing value {value!r}: use one of {VALUE_COLUMNS + (ZERO,)}")
    if selection.empty:
        raise InterventionError("the selection is empty: there are no units to force (check scoring.n_per_side)")
    missing = {"layer", "unit"} | ({value} if value != ZERO else set())
    missing -= set(selection.columns)
    if missing:
        raise InterventionError(f"the selection lacks columns {sorted(missing)}: pass a table made by select_units")
    table = pd.DataFrame({
        "layer": selection["layer"].to_numpy(),
        "unit": selection["unit"].to_numpy(dtype=np.int64),
        "value": np.zeros(len(selection)) if value == ZERO else selection[value].to_numpy(dtype=np.float64),
    })
    if table["value"].isna().any():
        bad = table[table["value"].isna()].iloc[0]
        raise InterventionError(f"{value} is NaN for unit {bad['unit']} of {bad['layer']}: rescore, or force another value")
    table = table.drop_duplicates().sort_values(["layer", "unit"], kind="stable")
    clash = table.duplicated(["layer", "unit"], keep=False)
    if clash.any():
        bad = table[clash].iloc[0]
        raise InterventionError(
            f"unit {bad['unit']} of {bad['layer']} is selected with different {value} values: "
            "force one language's selection at a time"
        )
    return {
        str(layer): (torch.from_numpy(g["unit"].to_numpy(copy=True)), torch.from_numpy(g["value"].to_numpy(np.float32)))
        for layer, g in table.groupby("layer", sort=False)
    }


def _check_entry(path: str, width: int, units: torch.Tensor, values: torch.Tensor) -> None:
    """Fail before the forward pass, naming the layer, rather than deep inside the model."""
    if units.ndim != 1 or values.ndim != 1 or units.shape != values.shape:
        raise InterventionError(
            f"{path}: units and values must be 1-D and of equal length, got {tuple(units.shape)} and {tuple(values.shape)}"
        )
    if units.dtype != torch.long:
        raise InterventionError(f"{path}: unit indices must be a LongTensor, got {units.dtype}")
    if units.unique().numel() != units.numel():
        raise InterventionError(f"{path}: a unit is listed twice; build the spec with forcing_spec")
    if units.numel() and (units.min() < 0 or units.max() >= width):
        raise InterventionError(f"{path}: unit indices must lie in [0, {width}), got {units.min()}..{units.max()}")


def _resolve(model: nn.Module, spec: Spec) -> list[tuple[LinearModule, torch.Tensor, torch.Tensor]]:
    """Each spec entry's map: a linear map (AP's linear_out units) or an FFN activation (LAPE's ffn_act units)."""
    maps = {m.path: m for m in find_linear_modules(model)}
    if any(p not in maps for p in spec):  # LAPE's units sit on activation modules, hooked like linear ones
        maps.update({a.path: LinearModule(a.path, a.block, a.kind, a.width, a.offset, LINEAR, a.path)
                     for a in find_act_modules(model)})
    missing = [p for p in spec if p not in maps]
    if missing:
        raise InterventionError(
            f"{missing[0]!r} is not a linear map or FFN activation of {type(model).__name__}'s blocks: "
            "the selection was made on another model; score this model's units first"
        )
    for path, (units, values) in spec.items():
        _check_entry(path, maps[path].width, units, values)
    return [(maps[path], units, values) for path, (units, values) in spec.items()]


def _forcing_hook(units: torch.Tensor, values: torch.Tensor):
    """Hook returning the output with `units` replaced along the last dim (not in place: autograd-safe)."""
    cast: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise InterventionError(f"force_units expects a linear layer returning a tensor, got {type(output).__name__}")
        key = (output.device, output.dtype)
        if key not in cast:  # cast once per device/dtype, not at every generated token
            cast[key] = (units.to(output.device), values.to(device=output.device, dtype=output.dtype))
        idx, val = cast[key]
        return output.index_copy(-1, idx, val.expand(*output.shape[:-1], -1))

    return hook


@contextmanager
def force_units(model: nn.Module, spec: Spec) -> Iterator[nn.Module]:
    """Within the block, every forward pass of `model` has the spec's units fixed to their values.

    Linear layers: every position. Routers: the logit, before the experts are chosen. Expert
    tensors: every position routed to that expert (moe.py says why). Everything is restored on
    exit, also when the block raises.
    """
    targets = _resolve(model, spec)
    modules = dict(model.named_modules())
    with ExitStack() as stack:
        for m, units, values in targets:
            module = modules[m.module]
            if m.site == LINEAR:
                stack.callback(module.register_forward_hook(_forcing_hook(units, values)).remove)
            elif m.site == ROUTER:
                stack.enter_context(router_forced(module, units, values))
            else:
                stack.enter_context(experts_hooked(module, forced=split_by_expert(units, values, m.tensor, m.out)))
        yield model
