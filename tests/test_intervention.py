"""Forcing units (exact values at every position, hooks always removed) and unconditional sampling."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from langneurons.control.generation import GenerationError, InverseCdfSampler, sample_texts, start_ids
from langneurons.control.intervention import InterventionError, force_units, forcing_spec
from langneurons.model.units import find_linear_modules

FAMILIES = ("xglm", "bloom", "llama", "gpt2")


def _ids(tokenizer, text: str = "The cat sleeps on the warm roof. Die Katze") -> torch.Tensor:
    return torch.tensor([tokenizer(text)["input_ids"]] * 2)


def _spec_for(model, n_units: int = 3, value: float = 5.0):
    """Units 0, 2, 4 of the first block's first and last linear layers, forced to `value`."""
    modules = [m for m in find_linear_modules(model) if m.block == 0]
    units = torch.arange(0, 2 * n_units, 2)
    return {m.path: (units, torch.full((n_units,), value)) for m in (modules[0], modules[-1])}


class Capture:
    """Records a module's outputs; registered after force_units, it sees the forced output."""

    def __init__(self, module: torch.nn.Module):
        self.outputs: list[torch.Tensor] = []
        self.handle = module.register_forward_hook(lambda _m, _i, out: self.outputs.append(out.detach().clone()))

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def _no_hooks(model) -> bool:
    return all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("family", FAMILIES)
def test_forcing_sets_exactly_the_chosen_units(tiny, family):
    model, tokenizer = tiny(family)
    spec = _spec_for(model)
    path = next(iter(spec))
    units, values = spec[path]
    module = dict(model.named_modules())[path]
    ids = _ids(tokenizer)
    with torch.no_grad(), Capture(module) as plain:
        model(input_ids=ids)
    with torch.no_grad(), force_units(model, spec), Capture(module) as forced:
        model(input_ids=ids)
    before, after = plain.outputs[0], forced.outputs[0]
    assert after.shape[:-1] == ids.shape
    assert torch.equal(after[..., units], values.expand(*after.shape[:-1], -1))  # every position, every row
    others = torch.ones(after.shape[-1], dtype=torch.bool)
    others[units] = False
    assert torch.equal(after[..., others], before[..., others])  # same forward: the rest untouched
    assert _no_hooks(model)


@pytest.mark.parametrize("family", FAMILIES)
def test_model_restored_after_exit_and_after_exception(tiny, family):
    model, tokenizer = tiny(family)
    ids = _ids(tokenizer)
    with torch.no_grad():
        original = model(input_ids=ids).logits
        with force_units(model, _spec_for(model)):
            forced = model(input_ids=ids).logits
        assert not torch.allclose(forced, original)  # forcing really changes the model
        assert torch.equal(model(input_ids=ids).logits, original)
        with pytest.raises(RuntimeError, match="boom"), force_units(model, _spec_for(model)):
            raise RuntimeError("boom")
        assert torch.equal(model(input_ids=ids).logits, original)
    assert _no_hooks(model)


@pytest.mark.parametrize("family", ["xglm", "llama"])
def test_generation_with_cache_equals_without_under_forcing(tiny, family):
    model, tokenizer = tiny(family)
    prompt = _ids(tokenizer, "Le chat")
    kwargs = dict(attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=12, min_new_tokens=12,
                  pad_token_id=tokenizer.eos_token_id)
    plain = model.generate(prompt, use_cache=True, **kwargs)
    with force_units(model, _spec_for(model, value=8.0)):
        cached = model.generate(prompt, use_cache=True, **kwargs)
        uncached = model.generate(prompt, use_cache=False, **kwargs)
    assert torch.equal(cached, uncached)
    assert not torch.equal(cached, plain)  # the forced model writes something else
    assert torch.equal(model.generate(prompt, use_cache=False, **kwargs), plain)
    assert _no_hooks(model)


def test_forced_units_hold_at_every_generated_step(tiny):
    model, tokenizer = tiny("llama")
    spec = _spec_for(model, value=-3.0)
    path = next(iter(spec))
    units, values = spec[path]
    prompt = _ids(tokenizer, "Le chat")
    with force_units(model, spec), Capture(dict(model.named_modules())[path]) as seen:
        model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=5,
                       min_new_tokens=5, pad_token_id=tokenizer.eos_token_id, use_cache=True)
    assert len(seen.outputs) == 5 and seen.outputs[1].shape[1] == 1  # prompt, then one token per cached step
    assert all(torch.equal(o[..., units], values.expand(*o.shape[:-1], -1)) for o in seen.outputs)


def test_force_units_names_unknown_layer_and_bad_units(tiny):
    model, _ = tiny("xglm")
    with pytest.raises(InterventionError, match="'model.layers.99.fc1' is not a linear map"):
        with force_units(model, {"model.layers.99.fc1": (torch.tensor([0]), torch.tensor([1.0]))}):
            pass
    path = find_linear_modules(model)[0].path
    with pytest.raises(InterventionError, match="unit indices must lie"):
        with force_units(model, {path: (torch.tensor([10_000]), torch.tensor([1.0]))}):
            pass
    assert _no_hooks(model)


def _selection() -> pd.DataFrame:
    return pd.DataFrame({
        "side": ["top", "top", "bottom", "bottom"], "rank": [0, 1, 0, 1],
        "layer": ["m.layers.1.fc1", "m.layers.0.fc1", "m.layers.1.fc1", "m.layers.1.fc1"],
        "unit": [7, 3, 2, 7], "on_p50": [1.5, 2.5, -0.5, 1.5], "on_p90": [3.0, 4.0, 0.5, 3.0],
        "off_mean": [0.1, 0.2, 0.3, 0.1], "off_p50": [0.0, 0.1, 0.2, 0.0],
    })


def test_forcing_spec_groups_by_layer():
    spec = forcing_spec(_selection())
    assert set(spec) == {"m.layers.0.fc1", "m.layers.1.fc1"}
    units, values = spec["m.layers.1.fc1"]
    assert units.dtype == torch.long and units.tolist() == [2, 7]  # duplicate (layer, unit, value) merged
    assert values.dtype == torch.float32 and values.tolist() == [-0.5, 1.5]
    assert forcing_spec(_selection(), "on_p90")["m.layers.0.fc1"][1].tolist() == [4.0]
    zero = forcing_spec(_selection(), "zero")
    assert all(torch.equal(v, torch.zeros_like(v)) for _, v in zero.values())


def test_forcing_spec_errors():
    with pytest.raises(ValueError, match="unknown forcing value 'median'"):
        forcing_spec(_selection(), "median")
    with pytest.raises(ValueError, match="selection is empty"):
        forcing_spec(_selection().iloc[:0])
    clash = _selection()
    clash.loc[3, "on_p50"] = 9.0
    with pytest.raises(ValueError, match="different on_p50 values"):
        forcing_spec(clash)


@pytest.mark.parametrize("family,token", [("xglm", "</s>"), ("llama", "<s>"), ("bloom", "</s>"), ("gpt2", "<|endoftext|>")])
def test_start_ids(tiny, family, token):
    _, tokenizer = tiny(family)
    assert start_ids(tokenizer) == [tokenizer.convert_tokens_to_ids(token)]


def test_sample_texts_is_seeded(tiny):
    model, tokenizer = tiny("xglm")
    params = dict(n_samples=7, max_new_tokens=10, temperature=1.0, top_k=0, top_p=1.0, batch_size=3)
    first = sample_texts(model, tokenizer, first_seed=1, **params)
    assert len(first) == 7 and all(isinstance(t, str) for t in first)
    assert sample_texts(model, tokenizer, first_seed=1, **params) == first
    assert sample_texts(model, tokenizer, first_seed=2, **params) != first


def test_each_sample_has_its_own_seed(tiny):
    """Sample i is drawn with seed first_seed + i, as in the paper: its text does not depend on the
    batch it is generated in, nor on which other samples are generated with it."""
    model, tokenizer = tiny("llama")
    params = dict(max_new_tokens=10, temperature=1.0, top_k=0, top_p=1.0)
    texts = sample_texts(model, tokenizer, n_samples=7, first_seed=1, batch_size=7, **params)
    assert len(set(texts)) > 1
    for batch_size in (1, 2, 3):
        assert sample_texts(model, tokenizer, n_samples=7, first_seed=1, batch_size=batch_size, **params) == texts
    assert sample_texts(model, tokenizer, n_samples=4, first_seed=4, batch_size=4, **params) == texts[3:]


def test_sample_texts_under_forcing_differs(tiny):
    model, tokenizer = tiny("bloom")
    params = dict(n_samples=4, max_new_tokens=8, temperature=1.0, top_k=0, top_p=1.0, first_seed=0, batch_size=4)
    plain = sample_texts(model, tokenizer, **params)
    with force_units(model, _spec_for(model, value=8.0)):
        forced = sample_texts(model, tokenizer, **params)
    assert forced != plain
    assert sample_texts(model, tokenizer, **params) == plain


def test_inverse_cdf_sampler_draws_from_the_softmax():
    """Greedy decoding of its output = a draw from softmax(scores): frequencies match the probabilities."""
    scores = torch.log(torch.tensor([[0.5, 0.0, 0.3, 0.2]])).repeat(20000, 1)  # token 1 has probability 0
    sampler = InverseCdfSampler(list(range(20000)), steps=1)
    out = sampler(None, scores)
    assert torch.isinf(out).sum(dim=1).eq(3).all()  # exactly one allowed token per row
    freq = torch.bincount(out.argmax(dim=1), minlength=4).double() / len(out)
    assert freq[1] == 0
    assert torch.allclose(freq, torch.tensor([0.5, 0.0, 0.3, 0.2], dtype=torch.double), atol=0.015)
    again = InverseCdfSampler(list(range(20000)), steps=1)(None, scores)
    assert torch.equal(out, again)  # seeded by its own generators
    with pytest.raises(GenerationError, match="1 steps"):
        sampler(None, scores)  # a second step was not drawn for


def test_top_k_one_is_greedy(tiny):
    model, tokenizer = tiny("xglm")
    texts = sample_texts(model, tokenizer, n_samples=3, max_new_tokens=6, temperature=0.8, top_k=1, top_p=1.0, first_seed=0, batch_size=3)
    prompt = torch.tensor([start_ids(tokenizer)])
    greedy = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=6,
                            top_k=None, top_p=None, temperature=None, pad_token_id=tokenizer.pad_token_id)
    assert texts == [tokenizer.decode(greedy[0, prompt.shape[1]:], skip_special_tokens=True)] * 3
