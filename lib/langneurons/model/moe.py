"""Mixture-of-experts layers: how their units are read and forced.

transformers 5 stores a block's experts as 3-D tensors in one module (gate_up_proj / up_proj
[experts, out, in] and down_proj) and calls it with the router's choice (top_k_index,
top_k_weights). No forward hook can see one expert's output there, so while langneurons reads or
forces expert units the module runs `experts_forward` below instead: the same math as the
library's eager loop (one expert at a time; gate/up, activation, down, weighted sum), plus our hooks.

What the units mean (README, notebook 02):
- Response: each expert is applied to *every* token (not only those routed to it) and each unit's
  output is averaged over all of the text's tokens, as for a dense layer. So every expert unit has a
  response for every text, comparable across texts whatever the router did; what the model
  actually computes is unchanged (the routed outputs alone are summed). Which experts a language
  uses is measured by the router's units: its logits, one unit per expert.
- Forcing: an expert unit is fixed at every token routed to its expert. At tokens not routed there
  the expert does not run and contributes nothing, so there is nothing to force: to change which
  experts run, force router units. A router unit is fixed by replacing that logit before the
  router's softmax and top-k, so forcing it changes the routing itself.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

Observer = Callable[[str, int, torch.Tensor], None]  # (tensor name, expert, outputs for every token [N, out])


class MoEForcingError(RuntimeError):
    """A router unit could not be forced: its logits are not computed the way we can intercept."""


@dataclass
class ExpertsHooks:
    """What experts_forward does besides the model's math; shared by everyone hooking one module."""

    observers: list[Observer] = field(default_factory=list)
    forced: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # (tensor, expert) -> (cols, values)
    users: int = 0


def _expert_linear(module: nn.Module, name: str, expert: int, x: torch.Tensor) -> torch.Tensor:
    weight = getattr(module, name)[expert]
    y = x @ weight if module.is_transposed else F.linear(x, weight)
    if module.has_bias:
        y = y + getattr(module, f"{name}_bias")[expert]
    return y


def _force(hooks: ExpertsHooks, name: str, expert: int, y: torch.Tensor, routed: torch.Tensor | None) -> torch.Tensor:
    """y with the forced columns of this expert set at its routed rows (all rows when routed is None)."""
    entry = hooks.forced.get((name, expert))
    if entry is None:
        return y
    cols, values = (t.to(y.device) for t in entry)
    values = values.to(y.dtype)
    if routed is None:
        return y.index_copy(-1, cols, values.expand(y.shape[0], -1))
    sub = y[routed].index_copy(-1, cols, values.expand(len(routed), -1))
    return y.index_copy(0, routed, sub)


def experts_forward(self: nn.Module, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                    top_k_weights: torch.Tensor) -> torch.Tensor:
    """The experts' eager forward with observers (every expert on every token) and forcing (routed tokens)."""
    hooks: ExpertsHooks = self._langneurons_hooks
    dense = bool(hooks.observers)
    up = "gate_up_proj" if self.has_gate else "up_proj"
    final = torch.zeros_like(hidden_states)
    for expert in range(self.num_experts):
        token, slot = torch.where(top_k_index == expert)  # the tokens routed to this expert, and their top-k slot
        if token.numel() == 0 and not dense:
            continue
        x = hidden_states if dense else hidden_states[token]
        routed = token if dense else None
        h = _force(hooks, up, expert, _expert_linear(self, up, expert, x), routed)
        for observe in hooks.observers:
            observe(up, expert, h)
        h = self._apply_gate(h) if self.has_gate else self.act_fn(h)
        y = _force(hooks, "down_proj", expert, _expert_linear(self, "down_proj", expert, h), routed)
        for observe in hooks.observers:
            observe("down_proj", expert, y)
        y = y[token] if dense else y
        final.index_add_(0, token, (y * top_k_weights[token, slot, None]).to(final.dtype))
    return final


@contextmanager
def experts_hooked(module: nn.Module, observer: Observer | None = None,
                   forced: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] | None = None) -> Iterator[ExpertsHooks]:
    """Run `module` with experts_forward while the block lasts, with this observer and forced units added.

    Several users (pooling and forcing, several forced tensors) can hook one module at once; the
    module gets its own forward back when the last one leaves, also on an exception.
    """
    hooks: ExpertsHooks | None = getattr(module, "_langneurons_hooks", None)
    if hooks is None:
        hooks = ExpertsHooks()
        module._langneurons_hooks = hooks
        module.forward = types.MethodType(experts_forward, module)  # the instance's forward shadows the class's
    hooks.users += 1
    if observer is not None:
        hooks.observers.append(observer)
    hooks.forced.update(forced or {})
    try:
        yield hooks
    finally:
        if observer is not None:
            hooks.observers.remove(observer)
        for key in forced or {}:
            hooks.forced.pop(key, None)
        hooks.users -= 1
        if hooks.users == 0:
            del module.forward
            del module._langneurons_hooks


def split_by_expert(units: torch.Tensor, values: torch.Tensor, tensor: str, out: int
                    ) -> dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]]:
    """Units of an expert tensor (e * out + j) grouped as (tensor, e) -> (columns j, values)."""
    experts = units // out
    return {(tensor, int(e)): (units[experts == e] % out, values[experts == e]) for e in experts.unique().tolist()}


@contextmanager
def router_forced(router: nn.Module, units: torch.Tensor, values: torch.Tensor) -> Iterator[None]:
    """Within the block, `router`'s logits `units` are fixed to `values` before it picks the experts.

    A router computes its logits as F.linear(hidden, self.weight) and then softmax/top-k in the same
    forward, so the logits are replaced where they are made: during the router's forward (only),
    torch.nn.functional.linear is wrapped to overwrite them when called with this router's weight.
    A router that does not compute its logits that way raises MoEForcingError instead of silently
    forcing nothing.
    """
    original = F.linear
    calls = {"forced": 0}

    def forcing_linear(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        out = original(input, weight, bias)
        if weight is not router.weight:
            return out
        calls["forced"] += 1
        cols, vals = units.to(out.device), values.to(device=out.device, dtype=out.dtype)
        return out.index_copy(-1, cols, vals.expand(*out.shape[:-1], -1))

    def before(_module: nn.Module, _args: tuple) -> None:
        calls["forced"] = 0
        torch.nn.functional.linear = forcing_linear

    def after(_module: nn.Module, _args: tuple, _output: object) -> None:
        torch.nn.functional.linear = original
        if calls["forced"] == 0:
            raise MoEForcingError(f"{type(router).__name__} does not compute its logits as F.linear(hidden, self.weight): "
                                  "its units cannot be forced; leave router units out of the selection")

    handles = [router.register_forward_pre_hook(before), router.register_forward_hook(after)]
    try:
        yield
    finally:
        torch.nn.functional.linear = original
        for h in handles:
            h.remove()
