"""LAPE, the second selection method: FFN activation units, counts in the activation pass, selection,
forcing/zeroing of its units, held-out perplexity, and the unit mapping that compares it with AP."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import SENTENCES
from families import build
from langneurons.control.deactivation import check_heldout, heldout_texts, perplexity_matrix, text_nll
from langneurons.control.intervention import force_units
from langneurons.base.languages import LANGUAGES
from langneurons.base.errors import DataError
from langneurons.data.textsets import LabelledList, TextSets
from langneurons.model.activations import collect_activations
from langneurons.model.ffn_act import act_units_table, find_act_modules
from langneurons.model.lape_pass import COUNTS_FILE, FFN_MATRIX_FILE, ActProbObserver, load_lape_counts
from langneurons.model.units import UnitsError, find_blocks
from langneurons.base.params import HubSource, LapeParams, ParamsError, load_params
from langneurons.comparison.unit_sets import ffn_keys, matched_sets, overlap_table
from langneurons.scoring.lape import activation_probability, kth_smallest, lape_entropy, lape_select

COUNTING = dict(counting="texts", special_tokens="count", window=None, window_cap=2048, source="sets", files_path=None,
                hub=HubSource(id="wikimedia/wikipedia", split="train", text_field="text",
                              configs={c: f"20231101.{c}" for c in LANGUAGES}), max_tokens=None,
                batch_size=8)
PAPER = LapeParams(top_rate=0.01, filter_rate=0.95, activation_bar_ratio=0.95, **COUNTING)
# the linear map that feeds each family's FFN activation, and where in it the activation's unit 0 sits
FEEDERS = {"xglm": "fc1", "opt": "fc1", "bloom": "mlp.dense_h_to_4h", "gpt2": "mlp.c_fc", "gpt_neox": "mlp.dense_h_to_4h",
           "falcon": "mlp.dense_h_to_4h", "llama": "mlp.gate_proj", "mistral": "mlp.gate_proj", "qwen2": "mlp.gate_proj",
           "gemma2": "mlp.gate_proj", "phi3": "mlp.gate_up_proj"}


# ------------------------------------------------------------------------------------ the units


@pytest.mark.parametrize("family", sorted(FEEDERS))
def test_act_modules_and_their_feeders(family: str):
    model, _ = build(family)
    blocks_path, blocks = find_blocks(model)
    acts = find_act_modules(model)
    assert [a.block for a in acts] == list(range(len(blocks)))
    for a in acts:
        assert a.feeder == f"{blocks_path}.{a.block}.{FEEDERS[family]}" and a.feeder_unit0 == 0
        feeder_width = dict(model.named_modules())[a.feeder]
        width = getattr(feeder_width, "out_features", None) or feeder_width.nf
        assert a.width == (width // 2 if family == "phi3" else width)  # phi3's fused gate_up: the gate half
    table = act_units_table(acts, len(blocks))
    assert (table["site"] == "ffn_act").all() and table["column"].tolist() == list(range(sum(a.width for a in acts)))
    assert (table["feeder_unit"] == table["unit"]).all()


@pytest.mark.parametrize("family", ["mixtral", "qwen2_moe"])
def test_mixture_of_experts_is_refused_with_the_fix(family: str):
    model, _ = build(family)
    with pytest.raises(UnitsError, match="selection.method=ap"):
        find_act_modules(model)


@pytest.mark.parametrize("family", ["xglm", "llama"])
def test_zeroing_an_act_unit_equals_zeroing_its_feeder_unit(family: str):
    """act(0) = 0 for GELU and SiLU: zeroing LAPE's unit j and AP's feeder unit j are the same intervention,
    which is what makes the unit mapping of the comparison meaningful."""
    model, tok = build(family)
    acts = find_act_modules(model)
    ids = tok(SENTENCES["de"][0], return_tensors="pt")["input_ids"]
    units = torch.tensor([1, 5, 9])
    with torch.no_grad():
        plain = model(ids).logits
        with force_units(model, {acts[1].path: (units, torch.zeros(3))}):
            on_act = model(ids).logits
        with force_units(model, {acts[1].feeder: (units, torch.zeros(3))}):
            on_feeder = model(ids).logits
    assert not torch.allclose(plain, on_act)
    torch.testing.assert_close(on_act, on_feeder, rtol=1e-5, atol=1e-6)


def test_forcing_an_act_unit_holds_its_value():
    model, tok = build("bloom")
    a = find_act_modules(model)[0]
    seen = []
    with force_units(model, {a.path: (torch.tensor([0, 3]), torch.tensor([2.5, -1.0]))}):
        # registered after the forcing hook, so it sees the forced output that the rest of the block reads
        handle = dict(model.named_modules())[a.path].register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
        try:
            model(tok(SENTENCES["fr"][1], return_tensors="pt")["input_ids"])
        finally:
            handle.remove()
    out = seen[0]
    assert (out[..., 0] == 2.5).all() and (out[..., 3] == -1.0).all() and not (out[..., 1] == out[0, 0, 1]).all()


# ----------------------------------------------------------------------------- counts in the pass


def _texts() -> tuple[list[str], list[str]]:
    texts = [s for lang in LANGUAGES for s in SENTENCES[lang]]
    return texts, [lang for lang in LANGUAGES for _ in SENTENCES[lang]]


def _direct_counts(model, tok, texts, langs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts the slow, obvious way: one text at a time, every token of every activation module."""
    acts = find_act_modules(model)
    modules = dict(model.named_modules())
    languages = sorted(set(langs))
    positive = np.zeros((len(languages), sum(a.width for a in acts)), dtype=np.int64)
    tokens = np.zeros(len(languages), dtype=np.int64)
    means = np.zeros((len(texts), positive.shape[1]))
    for t, (text, lang) in enumerate(zip(texts, langs)):
        outs = {}
        handles = [modules[a.path].register_forward_hook(lambda m, i, o, p=a.path: outs.__setitem__(p, o[0].detach()))
                   for a in acts]
        with torch.no_grad():
            ids = tok(text, return_tensors="pt")["input_ids"]
            model(ids)
        for h in handles:
            h.remove()
        li = languages.index(lang)
        tokens[li] += ids.shape[1]
        for a in acts:
            positive[li, a.offset:a.offset + a.width] += (outs[a.path] > 0).sum(0).numpy()
            means[t, a.offset:a.offset + a.width] = outs[a.path].mean(0).numpy()
    return positive, tokens, means


@pytest.mark.parametrize("family", ["xglm", "llama"])
def test_counts_streamed_in_the_activation_pass_match_a_direct_count(family: str, tmp_path: Path):
    model, tok = build(family)
    texts, langs = _texts()
    collect_activations(model, tok, texts, tmp_path / "a", seq_len=64, batch_size=5,
                        observers=[ActProbObserver(model, langs)])
    positive, tokens, languages = load_lape_counts(tmp_path / "a")
    want_pos, want_tok, want_means = _direct_counts(model, tok, texts, langs)
    assert languages == sorted(LANGUAGES)
    np.testing.assert_array_equal(tokens, want_tok)
    np.testing.assert_array_equal(positive, want_pos)
    np.testing.assert_allclose(np.load(tmp_path / "a" / FFN_MATRIX_FILE), want_means, rtol=1e-5, atol=1e-6)
    # the linear units' matrix is unchanged by the observer
    collect_activations(model, tok, texts, tmp_path / "b", seq_len=64, batch_size=5)
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "activations.npy"), np.load(tmp_path / "b" / "activations.npy"))


def test_a_failed_batch_is_not_counted_twice(tmp_path: Path):
    """Out of memory in the middle of a forward pass (after the first block's counts): the batch is
    halved and rerun, and its counts must enter once."""
    from langneurons.base.batch_halving import BatchSize

    model, tok = build("xglm")
    texts, langs = _texts()
    _, blocks = find_blocks(model)
    failed = []

    def fail_once(_m, _i, _o):
        if not failed and _i[0].shape[0] > 2:
            failed.append(True)
            raise torch.OutOfMemoryError("CUDA out of memory (simulated in the last block)")

    handle = blocks[-1].register_forward_hook(fail_once)
    try:
        collect_activations(model, tok, texts, tmp_path / "b", seq_len=64, observers=[ActProbObserver(model, langs)],
                            batch_size=BatchSize("activations.batch_size", 8, halve_on_oom=True))
    finally:
        handle.remove()
    assert failed
    want_pos, want_tok, _ = _direct_counts(model, tok, texts, langs)
    positive, tokens, _ = load_lape_counts(tmp_path / "b")
    np.testing.assert_array_equal(tokens, want_tok)
    np.testing.assert_array_equal(positive, want_pos)


_KILLED = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from families import build
from conftest import SENTENCES
from langneurons.base.languages import LANGUAGES
from langneurons.model.activations import collect_activations
from langneurons.model.lape_pass import ActProbObserver
model, tok = build("xglm")
texts = [s for lang in LANGUAGES for s in SENTENCES[lang]]
langs = [lang for lang in LANGUAGES for _ in SENTENCES[lang]]
collect_activations(model, tok, texts, Path({out!r}), seq_len=64, batch_size=3, work_dir=Path({work!r}),
                    observers=[ActProbObserver(model, langs)])
"""


@pytest.mark.slow
def test_killed_pass_resumes_to_the_same_counts(tmp_path: Path):
    tests = str(Path(__file__).parent)
    script = _KILLED.format(tests=tests, out=str(tmp_path / "out"), work=str(tmp_path / "work"))
    env = {**os.environ, "LANGNEURONS_CRASH_AT": "activations:3"}
    killed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode != 0 and (tmp_path / "work" / COUNTS_FILE).is_file()
    env.pop("LANGNEURONS_CRASH_AT")
    resumed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming activation collection after batch 3" in resumed.stdout + resumed.stderr
    model, tok = build("xglm")
    texts, langs = _texts()
    want_pos, want_tok, _ = _direct_counts(model, tok, texts, langs)
    positive, tokens, _ = load_lape_counts(tmp_path / "out")
    np.testing.assert_array_equal(tokens, want_tok)
    np.testing.assert_array_equal(positive, want_pos)


# ---------------------------------------------------------------------------------- the selection


def _reference_lape(probs: np.ndarray, params: LapeParams) -> list[set[int]]:
    """LAPE written out plainly, unit by unit (the paper's steps), to check the vectorized code."""
    n_units, n_langs = probs.shape
    flat = sorted(probs.ravel().tolist())
    kth = lambda rate: flat[max(int(round(len(flat) * rate)), 1) - 1]  # noqa: E731
    entropy = []
    for u in range(n_units):
        total = sum(probs[u])
        if total == 0:
            entropy.append(math.inf)
            continue
        q = [p / total for p in probs[u]]
        entropy.append(-sum(x * math.log(x) for x in q if x > 0))
    candidates = [u for u in range(n_units) if any(p > kth(params.filter_rate) for p in probs[u])]
    kept = sorted(candidates, key=lambda u: (entropy[u], u))[:int(round(n_units * params.top_rate))]
    return [{u for u in kept if probs[u, lang] > kth(params.activation_bar_ratio)} for lang in range(n_langs)]


@pytest.mark.parametrize("seed", range(5))
def test_selection_equals_the_plain_reference(seed: int):
    rng = np.random.default_rng(seed)
    probs = rng.beta(0.5, 2.0, size=(400, 5))
    probs[rng.choice(400, 30, replace=False)] = 0.0  # never active: undefined entropy, never selected
    probs[:20] = probs[20:40]  # exact entropy ties: broken by unit
    params = LapeParams(top_rate=[0.01, 0.05, 0.1, 0.2, 0.5][seed], filter_rate=0.9, activation_bar_ratio=[0.9, 0.8, 0.95, 0.5, 0.7][seed], **COUNTING)
    table, thresholds = lape_select(probs, list("abcde"), params)
    want = _reference_lape(probs, params)
    for i, lang in enumerate("abcde"):
        assert set(np.flatnonzero(table[f"for_{lang}"])) == want[i]
    assert thresholds["kept_units"] == table["selected"].sum()


def test_entropy_and_quantiles():
    probs = np.array([[0.9, 0.0, 0.0], [0.3, 0.3, 0.3], [0.0, 0.0, 0.0], [0.2, 0.2, 0.0]])
    entropy = lape_entropy(probs)
    assert entropy[0] == 0 and entropy[1] == pytest.approx(math.log(3)) and entropy[2] == math.inf
    assert entropy[3] == pytest.approx(math.log(2))
    assert kth_smallest(np.arange(1, 101, dtype=float), 0.95) == 95.0
    np.testing.assert_allclose(activation_probability(np.array([[2, 4], [1, 0]]), np.array([4, 2])), [[0.5, 0.5], [1.0, 0.0]])


def test_lape_params_are_checked():
    with pytest.raises(ParamsError, match="selection.method"):
        load_params("tiny", ["selection.method=lapé"])
    with pytest.raises(ParamsError, match="selection.lape.top_rate"):
        load_params("tiny", ["selection.lape.top_rate=1.5"])
    with pytest.raises(ParamsError, match="comparison.n_units"):
        load_params("tiny", ["comparison.n_units=0"])
    assert load_params("xglm-564M").selection.lape == PAPER  # the LAPE paper's defaults everywhere but the tiny model


# ------------------------------------------------------------------------------- held-out, perplexity


def _sets(texts_by_lang: dict[str, list[str]]) -> TextSets:
    return TextSets.from_lists({lang: LabelledList(texts, [(t, o) for o, ts in texts_by_lang.items() if o != lang for t in ts])
                                for lang, texts in texts_by_lang.items()})


def test_heldout_texts_never_overlap_the_selection(tmp_path: Path):
    folder = tmp_path / "files"
    folder.mkdir()
    for lang in ("de", "it"):
        (folder / f"{lang}.txt").write_text("\n".join(f"{lang} sentence number {i}." for i in range(10)) + "\n", encoding="utf-8")
    used = {lang: [f"{lang} sentence number {i}." for i in range(6)] for lang in ("de", "it")}
    text_sets = _sets(used)
    heldout = heldout_texts(text_sets, ["de", "it"], 3, seed=0, data_source="files", files_path=folder)
    for lang in ("de", "it"):
        assert len(heldout[lang]) == 3 and not set(heldout[lang]) & set(used[lang])
        assert set(heldout[lang]) <= {f"{lang} sentence number {i}." for i in range(6, 10)}
    assert heldout == heldout_texts(text_sets, ["de", "it"], 3, seed=0, data_source="files", files_path=folder)
    bad = {"de": [used["de"][0] + "  "]}  # whitespace does not hide a selection text
    with pytest.raises(DataError, match="held-out de texts are also selection texts"):
        check_heldout(bad, text_sets)


def test_bundled_heldout_excludes_the_bundled_sets():
    from langneurons.data.corpus import sentences
    from langneurons.data.corpus import build_bundled_sets as load_bundled

    text_sets = load_bundled(["de", "ja"], 50, 20, seed=0)
    heldout = heldout_texts(text_sets, ["de", "ja", "tok"], 40, seed=0, data_source="bundled")
    assert set(heldout) == {"de", "ja"}  # no bundled Toki Pona: left out
    for lang in ("de", "ja"):
        assert len(heldout[lang]) == 40 and set(heldout[lang]) <= set(sentences(lang))
        assert not set(heldout[lang]) & set(text_sets.texts["text"])


def test_perplexity_is_the_models_own_loss():
    model, tok = build("llama")
    texts = SENTENCES["en"] + SENTENCES["ja"]
    total, count = text_nll(model, tok, texts, batch_size=3, seq_len=64)
    want_total, want_count = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = tok(text, return_tensors="pt")["input_ids"]
            want_total += float(model(ids, labels=ids).loss) * (ids.shape[1] - 1)
            want_count += ids.shape[1] - 1
    assert count == want_count and total == pytest.approx(want_total, rel=1e-5)


def test_zeroing_moves_perplexity_and_the_matrix_is_complete():
    model, tok = build("xglm")
    a = find_act_modules(model)
    heldout = {"en": SENTENCES["en"], "de": SENTENCES["de"]}
    zero_all = {"en": {a[0].path: (torch.arange(a[0].width), torch.zeros(a[0].width))},
                "de": {a[1].path: (torch.tensor([0]), torch.zeros(1))}}
    table = perplexity_matrix(model, tok, heldout, zero_all, batch_size=2, seq_len=64)
    assert len(table) == 4 and set(table["deactivated"]) == {"en", "de"}
    np.testing.assert_allclose(table["ppl_change"], table["ppl"] - table["ppl_base"])
    np.testing.assert_allclose(np.exp(table["log_ppl_change"]), table["ppl"] / table["ppl_base"], rtol=1e-9)
    whole_block = table[table.deactivated == "en"]
    assert (whole_block["log_ppl_change"].abs() > 1e-5).all()  # a whole FFN zeroed changes every language


# --------------------------------------------------------------------------------- the comparison


def test_ap_units_map_to_the_ffn_units_they_feed():
    act_units = pd.DataFrame({"column": [0, 1, 2, 3], "layer": ["b0.act"] * 2 + ["b1.act"] * 2, "unit": [0, 1, 0, 1],
                              "block": [0, 0, 1, 1], "feeder_layer": ["b0.fc1"] * 2 + ["b1.fc1"] * 2, "feeder_unit": [0, 1, 0, 1]})
    ap_units = pd.DataFrame({"layer": ["b0.fc1", "b0.q", "b1.fc1", "b1.fc2"], "unit": [1, 1, 0, 0]})
    assert ffn_keys(ap_units, act_units).tolist() == [1, -1, 2, -1]
    ap_scores = {"de": pd.DataFrame({"layer": ["b0.fc1", "b0.q", "b1.fc1", "b1.fc2", "b0.fc1"], "unit": [1, 1, 0, 0, 0],
                                     "block": [0, 0, 1, 1, 0], "ap": [0.9, 0.8, 0.95, 0.1, 0.2]})}
    lape = {"de": act_units.iloc[[2, 0]].assign(block=[1, 0]).reset_index(drop=True)}
    matched = matched_sets(ap_scores, lape, n_units=None)
    assert matched["ap"]["de"]["ap"].tolist() == [0.95, 0.9]  # top-2 by AP, as LAPE has 2
    row = overlap_table(matched, act_units, n_blocks=2).iloc[0]
    # AP's top-2 feed FFN columns 2 and 1; LAPE chose 2 and 0: one shared; blocks {1, 0} both: same distribution
    assert (row["n"], row["ap_units_feeding_ffn"], row["shared"]) == (2, 2, 1)
    assert row["block_overlap_percent"] == pytest.approx(100.0) and row["chance_shared"] == pytest.approx(1.0)


# ------------------------------------------------------------------------------- selection.method


def test_method_decides_which_stages_run(tmp_path: Path, capsys):
    from langneurons.run.notebook import runs_with, setup
    from langneurons.run.pipeline import STAGES, run_stages

    where = [f"output_root={tmp_path / 'runs'}", f"figures_root={tmp_path / 'figs'}"]
    lape_only = load_params("tiny", ["selection.method=lape", *where])
    ap_only = load_params("tiny", ["selection.method=ap", *where])
    assert [s for s in STAGES if runs_with(s, lape_only)] == ["01_data_prep", "02_activations", "03_scoring", "07_ap_vs_lape"]
    assert [s for s in STAGES if runs_with(s, ap_only)] == list(STAGES[:-1])
    assert all(runs_with(s, load_params("tiny")) for s in STAGES)  # both, the default
    run_stages("tiny", ["selection.method=lape", *where], stages=("04_analysis", "05_intervention"))
    out = capsys.readouterr().out
    assert "skipping 04_analysis: it studies AP's units and selection.method=lape" in out
    assert not (tmp_path / "runs" / "tiny" / "notebooks").exists()  # nothing ran
    with pytest.raises(ParamsError, match="07_ap_vs_lape studies LAPE's units.*selection.method=both"):
        setup("07_ap_vs_lape", "tiny", ["selection.method=ap", *where], {})


def test_the_paper_analyses_take_lape_sets_too():
    """Layer distribution and overlap (notebook 04's) work on LAPE's one-sided sets of FFN units."""
    from langneurons.scoring.analysis import layer_distribution, overlap

    act = pd.DataFrame({"layer": ["b0.act"] * 3 + ["b1.act"] * 3, "unit": [0, 1, 2] * 2, "block": [0, 0, 0, 1, 1, 1]})
    lape = {"de": act.iloc[[0, 1, 3]].assign(side="lape"), "fr": act.iloc[[1, 4]].assign(side="lape")}
    dist = layer_distribution(lape, n_blocks=2)
    assert set(dist.side) == {"lape"} and dist.set_index(["language", "block"])["count"].to_dict() == {
        ("de", 0): 2, ("de", 1): 1, ("fr", 0): 1, ("fr", 1): 1}
    shared = overlap(lape).set_index(["language_a", "language_b"])
    assert shared.loc[("de", "fr"), "shared"] == 1 and shared.loc[("fr", "de"), "percent_of_n"] == 50.0


def test_ties_at_the_cut_take_the_lowest_columns_and_counts_stay_exact_above_float32():
    """The tie rule and the precision, stated in scoring/lape.py: units tied in entropy at the top_rate cut
    are taken lowest column first (the authors' torch.topk leaves their order unspecified), and the
    probabilities are float64, so counts above 2**24 (where the authors' float32 division rounds) still
    differ."""
    n_units = 40
    probs = np.tile([0.9, 0.05, 0.05], (n_units, 1))  # every unit tied: same distribution, same entropy
    params = LapeParams(top_rate=0.1, filter_rate=0.5, activation_bar_ratio=0.5, **COUNTING)
    table, _ = lape_select(probs, ["en", "de", "fr"], params)
    assert np.flatnonzero(table["selected"].to_numpy()).tolist() == [0, 1, 2, 3]  # 10% of 40, lowest columns
    shuffled = probs[::-1].copy()
    assert np.flatnonzero(lape_select(shuffled, ["en", "de", "fr"], params)[0]["selected"].to_numpy()).tolist() == [0, 1, 2, 3]
    tokens = np.array([2**25, 2**25])
    positive = np.array([[2**24, 2**24 + 1]] * 2)  # [languages x units]: two units one count apart
    p64 = activation_probability(positive, tokens)
    assert p64[0, 0] != p64[1, 0]
    p32 = (positive.astype(np.float32) / tokens.astype(np.float32)[:, None]).T
    assert p32[0, 0] == p32[1, 0]  # what float32 division gives: the two counts collapse
