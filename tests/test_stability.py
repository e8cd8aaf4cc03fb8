"""Split-half stability of the selection and the overlap's reference (notebook 04, beyond the paper)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from langneurons.data.textsets import LabelledList, TextSets
from langneurons.scoring.overlap_reference import (
    chance_shared,
    overlap_reference,
    overlap_reference_lines,
    overlap_reference_summary,
    spearman_matrix,
)
from langneurons.scoring.selection import labelled_rows, score_units, select_units
from langneurons.scoring.stability import (
    bootstrap_counts,
    chance_jaccard,
    jaccard,
    split_half_stability,
    split_halves,
    stability_lines,
    stability_summary,
)

LANGS = ["en", "de", "fr"]
PER_LANG = 40  # texts per language: each language's set has 40 positives and 80 negatives


def _text_sets() -> TextSets:
    texts = {lang: [f"{lang} text {i}" for i in range(PER_LANG)] for lang in LANGS}
    lists = {lang: LabelledList(texts[lang], [(t, other) for other in LANGS if other != lang for t in texts[other]])
             for lang in LANGS}
    return TextSets.from_lists(lists)


def _rows_of(sets: TextSets, lang: str) -> np.ndarray:
    return sets.texts.text_id[sets.texts.lang == lang].to_numpy()


def _full_selection(matrix: Path, sets: TextSets, n: int) -> dict[str, pd.DataFrame]:
    """Stage 03's selection of the synthetic matrix (scores + select_units, as notebook 03 does)."""
    kept = np.ones(len(sets.texts), dtype=bool)
    stats = score_units(matrix, {lang: labelled_rows(sets, lang, kept) for lang in LANGS}, unit_chunk=64)
    return {lang: select_units(stats[lang].assign(column=np.arange(len(stats[lang]))), n) for lang in LANGS}


def _separating_matrix(tmp_path: Path, sets: TextSets, k: int, units: int, bottom: bool = False) -> Path:
    """Units 0..k-1 respond only to English (perfect top units for en), or with `bottom` to everything
    but English (perfect bottom units); the rest is noise."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(len(sets.texts), units)).astype(np.float32)
    en = _rows_of(sets, "en")
    x[:, :k] = rng.uniform(0, 1, size=(len(sets.texts), k)) + (10 if bottom else 0)
    x[en, :k] += -10 if bottom else 10
    np.save(tmp_path / "activations.npy", x)
    return tmp_path / "activations.npy"


def test_separating_units_are_found_on_both_halves_and_noise_is_at_chance(tmp_path: Path):
    sets, k, units = _text_sets(), 10, 400
    matrix = _separating_matrix(tmp_path, sets, k, units)
    full = _full_selection(matrix, sets, k)
    table = split_half_stability(matrix, sets, LANGS, full, n_per_side=k, seed=3, unit_chunk=64).set_index(["language", "side"])
    # English: both halves pick exactly the separating units, and so does all the data
    row = table.loc[("en", "top")]
    assert row.jaccard_halves == 1.0 and row.jaccard_a_full == 1.0 and row.jaccard_b_full == 1.0
    assert set(full["en"].query("side == 'top'").column) == set(range(k))
    # English's bottom and German's and French's top are pure noise (the English units rank German
    # and French texts last, so they are those languages' bottom): two independent halves agree
    # about as little as two random sets
    chance = chance_jaccard(k, units)
    assert table.loc[("de", "top"), "jaccard_chance"] == pytest.approx(chance)
    noise = table.loc[[("en", "bottom"), ("de", "top"), ("fr", "top")]]
    assert (noise.jaccard_halves < 0.2).all() and noise.jaccard_halves.mean() < 0.1
    assert (noise.jaccard_a_full < 0.5).all()  # half the texts' noise is not all the texts' noise
    # each half holds half of every set's rows (no duplicates here)
    assert (table.texts_a == 60).all() and (table.texts_b == 60).all()
    assert table.resamples.eq(0).all() and table.jaccard_resampled_mean.isna().all()


def test_perfect_bottom_units_are_found_on_both_halves(tmp_path: Path):
    sets, k = _text_sets(), 10
    matrix = _separating_matrix(tmp_path, sets, k, 400, bottom=True)
    table = split_half_stability(matrix, sets, LANGS, _full_selection(matrix, sets, k), k, seed=0, unit_chunk=400)
    row = table.set_index(["language", "side"]).loc[("en", "bottom")]
    assert row.jaccard_halves == 1.0 and row.jaccard_a_full == 1.0 and row.jaccard_b_full == 1.0


def test_halves_are_disjoint_stratified_and_seeded():
    strata = np.repeat(np.arange(5), [10, 11, 1, 2, 7])
    a = split_halves(strata, seed=0)
    assert np.array_equal(a, split_halves(strata, seed=0))
    assert not np.array_equal(a, split_halves(strata, seed=1))
    for s, size in enumerate([10, 11, 1, 2, 7]):
        in_a = int(a[strata == s].sum())
        assert in_a in (size // 2, size - size // 2)  # halved, the odd text to one side


def test_bootstrap_resamples_within_each_stratum():
    strata = np.repeat(np.arange(3), [5, 8, 13])
    counts = bootstrap_counts(strata, np.random.default_rng(0))
    assert [int(counts[strata == s].sum()) for s in range(3)] == [5, 8, 13]
    assert counts.max() > 1 and (counts == 0).any()  # with replacement
    assert np.array_equal(counts, bootstrap_counts(strata, np.random.default_rng(0)))


def test_stability_is_deterministic_and_resamples_fill_their_columns(tmp_path: Path):
    sets, k = _text_sets(), 10
    matrix = _separating_matrix(tmp_path, sets, k, 200)
    full = _full_selection(matrix, sets, k)
    one = split_half_stability(matrix, sets, LANGS, full, k, seed=5, resamples=3, unit_chunk=50)
    two = split_half_stability(matrix, sets, LANGS, full, k, seed=5, resamples=3, unit_chunk=200)
    pd.testing.assert_frame_equal(one, two)  # same seed, any chunking: the same table
    other = split_half_stability(matrix, sets, LANGS, full, k, seed=6, resamples=3, unit_chunk=200)
    assert not one.jaccard_halves.equals(other.jaccard_halves)  # noise sides move with the seed
    boot = one.set_index(["language", "side"])
    assert boot.loc[("en", "top"), ["jaccard_resampled_mean", "jaccard_resampled_low", "jaccard_resampled_high"]].eq(1).all()
    assert boot.resamples.eq(3).all()
    assert (boot.jaccard_resampled_low <= boot.jaccard_resampled_mean).all()
    assert (boot.jaccard_resampled_mean <= boot.jaccard_resampled_high).all()
    lines = stability_lines(one)
    assert sum(line.startswith("| en |") for line in lines) == 1 and "resampled" in lines[2]
    assert stability_summary(one).startswith("split-half Jaccard top: en 1.00, de ")


def test_jaccard_and_chance_by_hand():
    assert jaccard(np.array([1, 2, 3]), np.array([2, 3, 4, 5])) == pytest.approx(2 / 5)
    assert chance_shared(1000, 124416) == pytest.approx(8.0376, abs=1e-4)  # 1000 * 1000 / 124416
    assert chance_shared(230, 4608) == pytest.approx(11.48, abs=0.01)
    assert chance_jaccard(10, 400) == pytest.approx(0.25 / 19.75)


def test_spearman_equals_scipy_with_ties():
    rng = np.random.default_rng(0)
    ap = rng.integers(0, 20, size=(300, 4)).astype(float)  # many ties
    ap[:, 3] = ap[:, 0] + rng.normal(scale=2, size=300)
    expected = spearmanr(ap).statistic
    np.testing.assert_allclose(spearman_matrix(ap), expected, atol=1e-12)
    assert spearman_matrix(np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]]))[0, 1] == pytest.approx(-1.0)


def test_overlap_reference_finds_units_one_vs_rest_hides(tmp_path: Path):
    """Units firing for English and German alike score ~0.5 one-vs-rest, so the observed top overlap
    is 0; scored without the pair's other language they are both languages' best: (c) shows them."""
    sets, k, units = _text_sets(), 10, 120
    rng = np.random.default_rng(2)
    x = rng.normal(scale=0.1, size=(len(sets.texts), units)).astype(np.float32)
    en, de, fr = (_rows_of(sets, lang) for lang in LANGS)
    x[np.ix_(en, range(0, k))] += 5  # English units, one French text above them: AP just under 1
    x[np.ix_(de, range(k, 2 * k))] += 5  # German units, likewise
    x[fr[0], : 2 * k] = 10
    x[np.ix_(np.concatenate([en, de]), range(2 * k, 3 * k))] += 5  # shared: English and German alike
    np.save(tmp_path / "activations.npy", x)
    matrix = tmp_path / "activations.npy"
    kept = np.ones(len(sets.texts), dtype=bool)
    stats = score_units(matrix, {lang: labelled_rows(sets, lang, kept) for lang in LANGS}, unit_chunk=50)
    assert 0.4 < stats["en"]["ap"][2 * k:3 * k].mean() < 0.6  # the shared units, one-vs-rest

    table = overlap_reference(stats, k, matrix, sets, unit_chunk=50).set_index(["language_a", "language_b"])
    row = table.loc[("en", "de")]
    assert row.shared_top == 0 and row.percent_top == 0.0
    assert row.without_pair_shared_top == k and row.without_pair_percent_top == 100.0
    assert table.loc[("en", "fr"), "without_pair_shared_top"] <= 2  # no English-French units (the French text
    # above the English units makes one or two of them look a little French once English is removed)
    assert row.chance_shared == pytest.approx(k * k / units) and row.chance_percent_of_n == pytest.approx(100 * k / units)
    assert row.spearman == pytest.approx(spearmanr(stats["en"]["ap"], stats["de"]["ap"]).statistic)
    assert list(table.index) == [("en", "de"), ("en", "fr"), ("de", "fr")]
    assert "up to 100.0% (en-de)" in overlap_reference_summary(table.reset_index())
    lines = overlap_reference_lines(table.reset_index())
    assert sum(line.startswith("| en-de |") for line in lines) == 1

    # without the matrix (c) is left out: NaN, and the report leaves its column out
    plain = overlap_reference(stats, k)
    assert plain.without_pair_shared_top.isna().all() and plain.pool_units.isna().all()
    assert "without the pair" not in overlap_reference_lines(plain)[2]
