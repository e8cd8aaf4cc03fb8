"""Unit discovery on each family, and mean pooling: batched == one text at a time == reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import ALL_SENTENCES
from langneurons.base.faults import BATCH_VARIANT_ENV
from langneurons.model import activations
from langneurons.model.activations import MeanPoolHooks, collect_activations, load_activations, mean_responses, sequential_token_sum, token_mean, tokenize
from langneurons.model.tiny import build_model
from langneurons.model.units import UnitsError, find_linear_modules

# What the paper lists per family (GPT-2 for transformers' Conv1D).
EXPECTED_KINDS = {
    "xglm": {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "fc1", "fc2"},
    "bloom": {"self_attention.query_key_value", "self_attention.dense", "mlp.dense_h_to_4h", "mlp.dense_4h_to_h"},
    "llama": {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"},
    "gpt2": {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"},
}
# Test texts of very different lengths, so padded batches really pad.
TEXTS = ALL_SENTENCES + [" ".join(ALL_SENTENCES[:6]), "Hi", "。"]


def _expected_units(family: str, model: nn.Module) -> int:
    c = model.config
    if family == "xglm":
        return c.num_layers * (4 * c.d_model + c.ffn_dim + c.d_model)
    if family == "bloom":
        return c.n_layer * (3 * c.hidden_size + c.hidden_size + 4 * c.hidden_size + c.hidden_size)
    if family == "llama":
        kv = c.num_key_value_heads * (c.hidden_size // c.num_attention_heads)
        return c.num_hidden_layers * (2 * c.hidden_size + 2 * kv + 2 * c.intermediate_size + c.hidden_size)
    return c.n_layer * (3 * c.n_embd + c.n_embd + 4 * c.n_embd + c.n_embd)


@pytest.mark.parametrize("family", sorted(EXPECTED_KINDS))
def test_units_found_per_family(tiny, family):
    model, _ = tiny(family)
    modules = find_linear_modules(model)
    assert {m.kind for m in modules} == EXPECTED_KINDS[family]
    assert sum(m.width for m in modules) == _expected_units(family, model)
    assert not any("lm_head" in m.path for m in modules)
    assert [m.offset for m in modules] == list(np.cumsum([0] + [m.width for m in modules[:-1]]))
    assert sorted({m.block for m in modules}) == list(range(len({m.block for m in modules})))


def test_model_without_linear_layers_is_an_error():
    class NoLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.LayerNorm(4) for _ in range(2)])

    with pytest.raises(UnitsError, match="no linear layers"):
        find_linear_modules(NoLinear())
    with pytest.raises(UnitsError, match="no list of decoder blocks"):
        find_linear_modules(nn.Sequential(nn.Linear(2, 2)))


@pytest.mark.parametrize("family", ["xglm", "bloom", "llama", "gpt2"])
def test_batched_equals_one_at_a_time(tiny, family, tmp_path: Path):
    model, tokenizer = tiny(family)
    collect_activations(model, tokenizer, TEXTS, tmp_path / "batched", seq_len=256, batch_size=7)
    collect_activations(model, tokenizer, TEXTS, tmp_path / "single", seq_len=256, batch_size=1)
    batched, units, meta = load_activations(tmp_path / "batched")
    single, _, _ = load_activations(tmp_path / "single")
    assert batched.shape == (len(TEXTS), len(units)) == (meta["n_texts"], meta["n_units"])
    assert np.abs(np.asarray(batched) - np.asarray(single)).max() <= 1e-5
    assert not np.isnan(batched).any()


@pytest.mark.parametrize("family", ["xglm", "llama"])
def test_hooked_mean_equals_reference(tiny, family):
    """Mean over all tokens (special tokens included) of each module's full output, computed plainly."""
    model, tokenizer = tiny(family)
    modules = find_linear_modules(model)
    text = TEXTS[3]
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == {"xglm": tokenizer.convert_tokens_to_ids("</s>"), "llama": tokenizer.bos_token_id}[family]
    captured: dict[str, torch.Tensor] = {}
    named = dict(model.named_modules())
    handles = [named[m.path].register_forward_hook(lambda _m, _i, out, p=m.path: captured.__setitem__(p, out))
               for m in modules]
    with torch.no_grad():
        model(torch.tensor([ids]))
    for h in handles:
        h.remove()
    reference = torch.cat([captured[m.path][0].mean(dim=0) for m in modules])
    hooks = MeanPoolHooks(modules, model, torch.device("cpu"))
    with hooks.attached():
        ours = mean_responses(model, hooks, [ids], pad_id=0)[0]
    torch.testing.assert_close(ours, reference, atol=1e-6, rtol=1e-5)
    assert all(not named[m.path]._forward_hooks for m in modules)  # hooks removed


def test_long_texts_dropped_and_float16_storage(tiny, tmp_path: Path):
    model, tokenizer = tiny("xglm")
    texts = ["short text.", "a much longer text " * 20, "another short one."]
    assert tokenize(tokenizer, texts, seq_len=30).kept.tolist() == [True, False, True]
    collect_activations(model, tokenizer, texts, tmp_path, seq_len=30, batch_size=2, storage_dtype="float16")
    matrix, _, meta = load_activations(tmp_path)
    assert matrix.dtype == np.float16 and meta["n_dropped_longer_than_seq_len"] == 1
    assert np.isnan(matrix[1]).all() and not np.isnan(matrix[[0, 2]]).any()
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left behind


def test_resume_only_with_an_explicit_work_dir(tiny, tmp_path: Path, monkeypatch, capsys):
    """An interrupted collection resumes from its work_dir; without one it always starts afresh."""
    model, tokenizer = tiny("xglm")
    collect_activations(model, tokenizer, TEXTS, tmp_path / "ref", 256, 4)
    reference = np.asarray(load_activations(tmp_path / "ref")[0])
    forward = model.base_model.forward
    monkeypatch.setattr(activations, "probe_batch_invariance", lambda *a: (True, (), 0.0))  # count the pass's forwards only

    def interrupted_run(out: Path, work_dir: Path | None) -> None:
        calls = {"n": 0}

        def fails_on_second_batch(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt  # like Ctrl-C in the middle of a run
            return forward(*args, **kwargs)

        monkeypatch.setattr(model.base_model, "forward", fails_on_second_batch)
        with pytest.raises(KeyboardInterrupt):
            collect_activations(model, tokenizer, TEXTS, out, 256, 4, work_dir=work_dir)
        monkeypatch.setattr(model.base_model, "forward", forward)
        assert not (out / "activations.npy").exists()
        capsys.readouterr()

    for out, work_dir, resumes in [(tmp_path / "a", tmp_path / "work", True), (tmp_path / "b", None, False)]:
        interrupted_run(out, work_dir)
        collect_activations(model, tokenizer, TEXTS, out, 256, 4, work_dir=work_dir)
        assert ("resuming activation collection after batch 1" in capsys.readouterr().out) == resumes
        assert np.array_equal(np.asarray(load_activations(out)[0]), reference, equal_nan=True)


def _eager(model: nn.Module, tokenizer) -> tuple[nn.Module, object]:
    """A copy with eager attention, as load_model loads models (model.attn_implementation: eager)."""
    model = build_model(model.config.model_type, tokenizer, seed=0)
    if model.config.model_type == "llama":  # XGLM and BLOOM have eager attention only
        model.set_attn_implementation("eager")
    return model, tokenizer


def _original_pooling(model: nn.Module, tokenizer, texts: list[str]) -> np.ndarray:
    """The original code's responses: one text per forward (batch size 1), each linear layer's float32
    output taken to numpy and pooled with np.mean(output[0, :T], axis=0)."""
    modules = find_linear_modules(model)
    named = dict(model.named_modules())
    rows = []
    for text in texts:
        captured: dict[str, np.ndarray] = {}
        handles = [named[m.path].register_forward_hook(
            lambda _m, _i, out, p=m.path: captured.__setitem__(p, out.detach().numpy())) for m in modules]
        ids = tokenizer(text)["input_ids"]
        with torch.no_grad():
            model(torch.tensor([ids]))
        for h in handles:
            h.remove()
        rows.append(np.concatenate([np.mean(captured[m.path][0, :len(ids)], axis=0) for m in modules]))
    return np.stack(rows)


@pytest.mark.parametrize("family", ["xglm", "bloom", "llama"])
def test_batched_responses_are_the_original_codes_bit_for_bit(tiny, family, tmp_path: Path):
    """Batched collection (texts of different lengths, batch size 4) gives exactly the bits of the
    original protocol: batch size 1 and numpy's float32 mean."""
    model, tokenizer = _eager(*tiny(family))
    texts = TEXTS + [ALL_SENTENCES[i] + " " + ALL_SENTENCES[i + 1] for i in range(0, 12, 2)]
    lengths = [len(tokenizer(t)["input_ids"]) for t in texts]
    assert len(set(lengths)) > 5 and max(lengths.count(n) for n in lengths) > 1  # several lengths, some shared
    collect_activations(model, tokenizer, texts, tmp_path, seq_len=256, batch_size=4)
    ours, _, _ = load_activations(tmp_path)
    assert np.array_equal(np.asarray(ours), _original_pooling(model, tokenizer, texts))


def test_batches_where_the_probe_finds_the_same_bits_else_one_text_per_forward(tiny, tmp_path: Path, monkeypatch, capsys):
    """The probe of the run's own shapes decides how to batch. On a machine whose batched kernels round
    differently (injected: the probe sees batched responses one float32 step away), `exact: auto` runs
    one text per forward and stays the original code's bit for bit; `exact: false` keeps batches and
    says the run is within rounding. Either way meta.json records which."""
    model, tokenizer = _eager(*tiny("xglm"))
    texts = TEXTS + [ALL_SENTENCES[i] + " " + ALL_SENTENCES[i + 1] for i in range(0, 12, 2)]
    original = _original_pooling(model, tokenizer, texts)
    forwards = {"n": 0}
    forward = model.base_model.forward
    monkeypatch.setattr(model.base_model, "forward", lambda *a, **k: forwards.__setitem__("n", forwards["n"] + 1) or forward(*a, **k))

    def collect(out: str, exact: bool | str) -> tuple[dict, int]:
        forwards["n"] = 0
        collect_activations(model, tokenizer, texts, tmp_path / out, seq_len=256, batch_size=4, exact=exact)
        matrix, _, meta = load_activations(tmp_path / out)
        if meta["batching"]["identical"] or meta["batching"]["one_per_forward"]:  # the claim the run makes
            assert np.array_equal(np.asarray(matrix), original)
        return meta["batching"], forwards["n"]

    same, n_same = collect("same", "auto")
    assert same["identical"] is True and not same["one_per_forward"] and same["probed"]
    assert "bit for bit" in capsys.readouterr().out
    monkeypatch.setenv(BATCH_VARIANT_ENV, "1")
    fallback, n_fallback = collect("fallback", "auto")
    assert fallback["identical"] is False and fallback["one_per_forward"] and fallback["max_abs_diff"] > 0
    assert n_fallback - n_same > 0 and n_fallback >= len(texts)  # one forward per text after the probe
    assert "running one text per forward pass" in capsys.readouterr().out
    kept, _ = collect("kept", False)
    assert kept["identical"] is False and not kept["one_per_forward"]
    assert "within float32 rounding of the original code, not identical" in capsys.readouterr().out
    always, n_always = collect("always", True)
    assert always["one_per_forward"] and always["identical"] is None and n_always == len(texts)  # no probe


def test_token_mean_is_numpys_float32_mean_in_a_padded_batch():
    """The pooling itself: rows of a right-padded batch give numpy's np.mean of their real tokens, bit for bit
    (a padded forward may still round differently, which is why collection never pads)."""
    rng = np.random.default_rng(0)
    lengths = [7, 1, 40, 23]
    x = rng.standard_normal((4, 40, 96)).astype(np.float32) * rng.uniform(0.1, 100, (1, 1, 96)).astype(np.float32)
    mask = np.zeros((4, 40, 1), dtype=bool)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    ours = token_mean(torch.from_numpy(x), torch.from_numpy(mask), torch.tensor(lengths, dtype=torch.float32)[:, None])
    reference = np.stack([np.mean(x[i, :n], axis=0) for i, n in enumerate(lengths)])
    assert np.array_equal(ours.numpy(), reference)
    lengths_t = torch.tensor(lengths, dtype=torch.float32)[:, None]  # the GPU path, run here on the CPU
    assert np.array_equal((sequential_token_sum(torch.from_numpy(x), torch.from_numpy(mask)) / lengths_t).numpy(), reference)
    assert not np.array_equal(torch.from_numpy(x).sum(dim=1).numpy()[2] / 40, reference[2])  # a plain sum rounds differently
