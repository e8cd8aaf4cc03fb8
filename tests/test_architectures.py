"""The architecture matrix: units, pooling, forcing, cached generation, start token and plan, per family.

Tiny random models of 16 decoder families (tests/families.py), built from configs offline. What a
family should have is computed from its config, never from the finder under test.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from conftest import ALL_SENTENCES
from families import FAMILIES, build, save
from langneurons.model.activations import MeanPoolHooks, mean_responses, pad_id_of
from langneurons.control.generation import GenerationError, start_ids
from langneurons.control.intervention import force_units
from langneurons.model.moe import experts_hooked
from langneurons.base.params import load_params
from langneurons.run.plan import format_plan, make_plan
from langneurons.model.units import EXPERTS, ROUTER, find_blocks, find_linear_modules, part_labels, units_table

NAMES = list(FAMILIES)
MOE = [n for n in NAMES if FAMILIES[n].moe]
TEXTS = [ALL_SENTENCES[i] for i in (0, 5, 9, 14, 18, 23)] + ["Ja.", "The cat sleeps on the warm roof and the dog waits."]
ORIGINAL_LINEAR = F.linear


@lru_cache(maxsize=None)
def model_of(name: str):
    return build(name)


def _ids(tokenizer, text: str) -> torch.Tensor:
    return torch.tensor([tokenizer(text)["input_ids"]])


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


def _spec(model, per_map: int = 2, value: float = 4.0) -> dict:
    """`per_map` units of every linear map (of every expert, for expert tensors), all fixed to `value`."""
    spec = {}
    for m in find_linear_modules(model):
        units = torch.cat([torch.arange(min(per_map, m.out)) + e * m.out for e in range(m.experts)])
        spec[m.path] = (units, torch.full((len(units),), value))
    return spec


def _clean(model) -> bool:
    """No hook, no experts forward of ours and no wrapped F.linear left behind."""
    hooks = any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    ours = any(hasattr(m, "_langneurons_hooks") or "forward" in vars(m) for m in model.modules())
    return not hooks and not ours and F.linear is ORIGINAL_LINEAR


@pytest.mark.parametrize("name", NAMES)
def test_units_by_kind_are_what_the_config_implies(name: str):
    model, _ = model_of(name)
    n_blocks = len(find_blocks(model)[1])
    expected = {kind: n * n_blocks for kind, n in FAMILIES[name].units(model.config).items()}
    found: dict[str, int] = {}
    for m in find_linear_modules(model):
        found[m.kind] = found.get(m.kind, 0) + m.width
    assert found == expected
    table = units_table(find_linear_modules(model), n_blocks)
    assert len(table) == sum(expected.values()) and table["column"].tolist() == list(range(len(table)))
    if name == "mixtral":
        assert len(table) == 2952 and table.query("expert >= 0").groupby("expert").size().tolist() == [2 * (2 * 128 + 64)] * 4
    if name == "qwen2_moe":
        assert len(table) == 1802


FUSED = {  # family -> (kind, part) -> units per block, from the config
    "gpt2": lambda c: {("attn.c_attn", p): c.n_embd for p in "qkv"},
    "gpt_neox": lambda c: {("attention.query_key_value", p): c.hidden_size for p in "qkv"},
    "bloom": lambda c: {("self_attention.query_key_value", p): c.hidden_size for p in "qkv"},
    "falcon": lambda c: {("self_attention.query_key_value", "q"): c.hidden_size,  # multi-query: one k and one v head
                         ("self_attention.query_key_value", "k"): c.hidden_size // c.num_attention_heads,
                         ("self_attention.query_key_value", "v"): c.hidden_size // c.num_attention_heads},
    "phi3": lambda c: {("self_attn.qkv_proj", "q"): c.hidden_size,  # head_dim = hidden / heads
                       ("self_attn.qkv_proj", "k"): c.num_key_value_heads * c.hidden_size // c.num_attention_heads,
                       ("self_attn.qkv_proj", "v"): c.num_key_value_heads * c.hidden_size // c.num_attention_heads,
                       ("mlp.gate_up_proj", "gate"): c.intermediate_size, ("mlp.gate_up_proj", "up"): c.intermediate_size},
    "mixtral": lambda c: {("mlp.experts.gate_up_proj", p): c.num_local_experts * c.intermediate_size for p in ("gate", "up")},
    "qwen2_moe": lambda c: {("mlp.experts.gate_up_proj", p): c.num_experts * c.moe_intermediate_size for p in ("gate", "up")},
}


@pytest.mark.parametrize("name", NAMES)
def test_fused_outputs_are_split_into_named_parts(name: str):
    model, _ = model_of(name)
    n_blocks = len(find_blocks(model)[1])
    table = units_table(find_linear_modules(model), n_blocks)
    named = table[table.part != ""].groupby(["kind", "part"]).size().to_dict()
    expected = {k: n * n_blocks for k, n in FUSED.get(name, lambda c: {})(model.config).items()}
    assert named == expected


def test_bloom_query_key_value_is_split_per_head():
    """BLOOM lays q, k, v out head by head: [q0 k0 v0 q1 k1 v1 ...], each head_dim wide."""
    model, _ = model_of("bloom")
    qkv = next(m for m in find_linear_modules(model) if m.kind.endswith("query_key_value"))
    hd = model.config.hidden_size // model.config.n_head
    labels = part_labels(qkv)
    assert labels[:hd].tolist() == ["q"] * hd and labels[hd:2 * hd].tolist() == ["k"] * hd
    assert labels[3 * hd:4 * hd].tolist() == ["q"] * hd


@pytest.mark.parametrize("name", NAMES)
def test_batched_pooling_equals_one_text_at_a_time(name: str):
    model, tokenizer = model_of(name)
    maps = find_linear_modules(model)
    hooks = MeanPoolHooks(maps, model, torch.device("cpu"))
    ids = [tokenizer(t)["input_ids"] for t in TEXTS]
    assert len({len(x) for x in ids}) > 3  # really padded
    with hooks.attached():
        batched = mean_responses(model, hooks, ids, pad_id_of(tokenizer)).clone()
        single = torch.cat([mean_responses(model, hooks, [x], pad_id_of(tokenizer)).clone() for x in ids])
    assert batched.shape == (len(TEXTS), sum(m.width for m in maps))
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-5)
    assert _clean(model)


@pytest.mark.parametrize("name", NAMES)
def test_pooling_hooks_leave_the_model_unchanged(name: str):
    model, tokenizer = model_of(name)
    ids = _ids(tokenizer, TEXTS[1])
    plain = _logits(model, ids)
    hooks = MeanPoolHooks(find_linear_modules(model), model, torch.device("cpu"))
    with hooks.attached():
        hooks.set_batch(torch.ones_like(ids))
        hooked = _logits(model, ids)
    torch.testing.assert_close(hooked, plain, rtol=1e-5, atol=1e-5)
    assert _clean(model)


@pytest.mark.parametrize("name", NAMES)
def test_forcing_changes_the_output_and_is_undone(name: str):
    model, tokenizer = model_of(name)
    ids = _ids(tokenizer, TEXTS[0])
    plain = _logits(model, ids)
    spec = _spec(model)
    with force_units(model, spec):
        forced = _logits(model, ids)
    assert not torch.allclose(forced, plain, atol=1e-3)
    assert torch.equal(_logits(model, ids), plain) and _clean(model)
    with pytest.raises(RuntimeError, match="boom"):
        with force_units(model, spec):
            _logits(model, ids)
            raise RuntimeError("boom")
    assert torch.equal(_logits(model, ids), plain) and _clean(model)


@pytest.mark.parametrize("name", NAMES)
def test_greedy_generation_is_the_same_with_and_without_the_cache_under_forcing(name: str):
    model, tokenizer = model_of(name)
    ids = _ids(tokenizer, TEXTS[2])
    args = dict(attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=8, min_new_tokens=8,
                pad_token_id=pad_id_of(tokenizer), top_k=None, top_p=None, temperature=None)
    with force_units(model, _spec(model, value=2.0)):
        cached = model.generate(ids, use_cache=True, **args)
        uncached = model.generate(ids, use_cache=False, **args)
    assert torch.equal(cached, uncached)
    assert _clean(model)


@pytest.mark.parametrize("name", NAMES)
def test_start_of_text_token(name: str):
    _, tokenizer = model_of(name)
    expected = tokenizer.convert_tokens_to_ids(FAMILIES[name].start)
    assert start_ids(tokenizer) == start_ids(tokenizer, "auto") == [expected]
    assert start_ids(tokenizer, "eos") == [tokenizer.eos_token_id]
    assert start_ids(tokenizer, "The")[-len(tokenizer("The", add_special_tokens=False)["input_ids"]):] == \
        tokenizer("The", add_special_tokens=False)["input_ids"]
    if tokenizer.bos_token is None:  # Qwen, Falcon: a documented error, not an accident
        with pytest.raises(GenerationError, match="has no BOS token: set generation.start=eos"):
            start_ids(tokenizer, "bos")
    else:
        assert start_ids(tokenizer, "bos") == [tokenizer.bos_token_id]


@pytest.mark.parametrize("name", NAMES)
def test_plan_prints_the_units_total(name: str, tmp_path: Path):
    model, _ = model_of(name)
    model.config.save_pretrained(tmp_path)
    p = load_params("tiny", [f"model.path={tmp_path}", f"output_root={tmp_path / 'runs'}"], check_files=False)
    total = sum(FAMILIES[name].units(model.config).values()) * model.config.num_hidden_layers
    plan = make_plan(p)
    assert plan.n_units == total and f"units total: {total:,}" in format_plan(plan)


# ------------------------------------------------------------------------------ mixture of experts


def _routed(model, ids: torch.Tensor) -> dict[str, set[int]]:
    """Experts each block's router picks for these tokens."""
    seen: dict[str, set[int]] = {}
    maps = [m for m in find_linear_modules(model) if m.site == ROUTER]
    modules = dict(model.named_modules())
    handles = [modules[m.module].register_forward_hook(
        lambda mod, inp, out, path=m.path: seen.setdefault(path, set()).update(out[2].flatten().tolist())) for m in maps]
    try:
        _logits(model, ids)
    finally:
        for h in handles:
            h.remove()
    return seen


@pytest.mark.parametrize("name", MOE)
def test_our_experts_forward_is_the_librarys(name: str):
    model, tokenizer = model_of(name)
    ids = _ids(tokenizer, TEXTS[3])
    plain = _logits(model, ids)
    experts = [mod for mod in model.modules() if hasattr(mod, "num_experts") and hasattr(mod, "down_proj")
               and isinstance(mod.down_proj, torch.nn.Parameter)]
    assert len(experts) == 2
    with experts_hooked(experts[0]), experts_hooked(experts[1]):
        ours = _logits(model, ids)
    torch.testing.assert_close(ours, plain, rtol=1e-5, atol=1e-6)
    assert _clean(model)


@pytest.mark.parametrize("name", MOE)
def test_forcing_an_expert_unit_acts_where_the_expert_is_routed(name: str):
    model, tokenizer = model_of(name)
    ids = _ids(tokenizer, "Ja")[:, -1:]  # one token: 2 of the 4 experts run in each block
    plain = _logits(model, ids)
    block0 = next(m for m in find_linear_modules(model) if m.site == EXPERTS and m.block == 0 and m.tensor == "down_proj")
    router0 = next(m for m in find_linear_modules(model) if m.site == ROUTER and m.block == 0)
    routed = _routed(model, ids)[router0.path]
    idle = sorted(set(range(block0.experts)) - routed)
    assert len(routed) == 2 and len(idle) == 2

    def force(expert: int) -> torch.Tensor:
        units = torch.arange(4) + expert * block0.out
        with force_units(model, {block0.path: (units, torch.full((4,), 5.0))}):
            return _logits(model, ids)

    assert not torch.allclose(force(min(routed)), plain, atol=1e-3)  # a routed expert: the output changes
    assert torch.equal(force(idle[0]), plain)  # not routed here: it does not run, nothing to force
    # forcing the router's logit of an idle expert makes it run: the routing, hence the output, changes
    with force_units(model, {router0.path: (torch.tensor([idle[0]]), torch.tensor([50.0]))}):
        assert idle[0] in _routed(model, ids)[router0.path]
        assert not torch.allclose(_logits(model, ids), plain, atol=1e-3)
    assert _clean(model)


@pytest.mark.parametrize("name", MOE)
def test_expert_units_respond_to_every_text(name: str):
    """Every expert is applied to every token while pooling: no expert unit is left without a response."""
    model, tokenizer = model_of(name)
    maps = find_linear_modules(model)
    hooks = MeanPoolHooks(maps, model, torch.device("cpu"))
    with hooks.attached():
        pooled = mean_responses(model, hooks, [tokenizer(t)["input_ids"] for t in TEXTS], pad_id_of(tokenizer))
    experts = np.concatenate([np.arange(m.offset, m.offset + m.width) for m in maps if m.site == EXPERTS])
    assert torch.isfinite(pooled).all() and (pooled[:, experts].abs() > 0).all()


# ------------------------------------------------------------------------------ notebooks end to end


@pytest.mark.slow
@pytest.mark.xdist_group("pipeline")
@pytest.mark.parametrize("name", ["qwen2", "mixtral"])  # a dense family without BOS token, and a mixture of experts
def test_notebooks_01_to_05(name: str, shared):
    """The shared run's `qwen2` and `mixtral` profiles (shared_runs.py): notebooks 01-05, AP only."""
    run, figs = shared.run(name), shared.figs(name)
    assert not (run / "notebooks" / "06_translation.ipynb").exists()  # translation.tasks {}: skipped
    units = pd.read_parquet(run / "activations" / "units.parquet")
    model, _ = model_of(name)
    assert len(units) == sum(FAMILIES[name].units(model.config).values()) * 2
    assert {"part", "expert"} <= set(units.columns)
    scores = pd.read_parquet(run / "scores" / "de.parquet")
    assert scores["ap"].between(0, 1).all() and scores["on_p50"].notna().all()
    gens = pd.read_parquet(run / "generations" / "unconditional.parquet")
    # none + per language: the sweep's sizes, top, bottom and the random-unit baseline; 4 samples each
    assert len(gens) == 4 * (1 + 3 * 5) and gens["text"].str.len().gt(0).any()
    kinds = pd.read_csv(figs / "layer_kinds.csv")
    if name == "mixtral":
        assert units.query("expert >= 0")["kind"].unique().tolist() == ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
        assert any("experts" in c for c in kinds.columns)


def test_layer_kinds_name_the_parts_of_fused_outputs():
    """Phi-3's query units are counted as `self_attn.qkv_proj[q]`, next to Llama's `self_attn.q_proj`."""
    from langneurons.scoring.analysis import kind_distribution

    model, _ = model_of("phi3")
    table = units_table(find_linear_modules(model), 2)
    selection = table[table.kind == "self_attn.qkv_proj"].assign(side="top")
    counts = kind_distribution({"de": selection}).loc[("de", "top")]
    hd = model.config.hidden_size // model.config.num_attention_heads
    assert counts.to_dict() == {"self_attn.qkv_proj[k]": 2 * 4 * hd, "self_attn.qkv_proj[q]": 2 * 64,
                                "self_attn.qkv_proj[v]": 2 * 4 * hd}
