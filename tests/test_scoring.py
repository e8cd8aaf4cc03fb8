"""Scoring over the memory-mapped matrix: chunking changes nothing; selection and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from langneurons.scoring.selection import (
    LabelledRows,
    SelectionError,
    as_original_expertise,
    boundary_ties,
    score_units,
    select_units,
    set_weights,
    threshold_counts,
)


def _matrix_file(tmp_path: Path, data: np.ndarray) -> Path:
    np.save(tmp_path / "m.npy", data)
    return tmp_path / "m.npy"


def test_chunked_scores_equal_sklearn_and_each_other(tmp_path: Path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 8, size=(60, 37)).astype(np.float32)
    matrix = _matrix_file(tmp_path, data)
    rows = np.array([0, 1, 2, 3, 2, 10, 11, 12, 13, 14, 15, 16, 40, 41])  # a duplicated text (row 2)
    labels = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0], dtype=bool)
    sets = {"de": LabelledRows(rows, labels), "ja": LabelledRows(rows[::-1].copy(), labels[::-1].copy())}
    one = score_units(matrix, sets, unit_chunk=1000)
    many = score_units(matrix, sets, unit_chunk=5)
    for lang in sets:
        pd.testing.assert_frame_equal(one[lang], many[lang])
    x = data[rows]
    expected = [average_precision_score(labels, x[:, j]) for j in range(37)]
    np.testing.assert_allclose(one["de"]["ap"], expected, atol=1e-12)
    np.testing.assert_allclose(one["de"]["on_p50"], np.median(x[labels], axis=0), atol=1e-6)


def test_selection_top_bottom_and_ties():
    scores = pd.DataFrame({"layer": "l", "unit": range(6), "ap": [0.5, 0.9, 0.1, 0.9, 0.3, 0.1]})
    sel = select_units(scores, 2)
    assert sel.query("side == 'top'").unit.tolist() == [1, 3]
    assert sel.query("side == 'bottom'").unit.tolist() == [2, 5]
    assert boundary_ties(scores, 1) == {"top": 2, "bottom": 2}
    assert boundary_ties(scores, 3) == {"top": 1, "bottom": 1}
    with pytest.raises(SelectionError, match="n_per_side=4 .* model has 6.*<= 3"):
        select_units(scores, 4)
    counts = threshold_counts({"de": scores}, [0.2, 0.9])
    assert counts.loc["de"].tolist() == [4, 0]


def test_original_expertise_layout():
    scores = pd.DataFrame({
        "layer": ["model.layers.2.fc1"] * 2 + ["model.layers.10.fc1"] * 2, "unit": [0, 1, 0, 1],
        "ap": [0.1, 0.2, 0.3, 0.4], "on_p50": 1.0, "on_p90": 2.0, "off_mean": 0.0, "off_p50": 0.5,
    })
    original = as_original_expertise(scores, "de")
    assert original.columns.tolist() == ["ap", "off_mean", "off_p50", "on_p50", "on_p90", "layer", "unit", "uuid", "concept", "group"]
    assert original.layer.tolist() == ["model.layers.10.fc1:0"] * 2 + ["model.layers.2.fc1:0"] * 2  # sorted as strings
    assert original.ap.tolist() == pytest.approx([0.3, 0.4, 0.1, 0.2]) and original.ap.dtype == np.float32
    assert original.uuid.tolist() == [0, 1, 2, 3] and set(original.concept) == {"de"}


def _shared_sets(
    rng: np.random.Generator, lang_of: np.ndarray, kept: np.ndarray, n_pos: int
) -> dict[str, LabelledRows]:
    """Sets like the released ones: own texts as positives, the other languages' texts drawn with repetition."""
    sets = {}
    for lang in np.unique(lang_of):
        own = np.flatnonzero((lang_of == lang) & kept)
        others = np.flatnonzero((lang_of != lang) & kept)
        rows = np.concatenate([rng.choice(own, n_pos), rng.choice(others, 3 * n_pos)])  # duplicates, shared texts
        sets[f"l{lang}"] = LabelledRows(rows, np.repeat([True, False], [n_pos, 3 * n_pos]))
    return sets


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_one_sort_scores_equal_sklearn_and_numpy_per_language(tmp_path: Path, dtype):
    rng = np.random.default_rng(1)
    n_texts, n_units = 90, 23
    lang_of = np.arange(n_texts) % 3
    data = np.round(rng.standard_normal((n_texts, n_units)) + (lang_of[:, None] == np.arange(n_units) % 3), 1)
    data[:, :4] = rng.integers(0, 3, (n_texts, 4))  # heavy ties
    kept = rng.random(n_texts) > 0.1
    data[~kept] = np.nan  # texts dropped as too long have NaN rows and are in no set
    matrix = _matrix_file(tmp_path, data.astype(dtype))
    sets = _shared_sets(rng, lang_of, kept, n_pos=20)
    one = score_units(matrix, sets, unit_chunk=1000)
    many = score_units(matrix, sets, unit_chunk=4)
    for lang, lr in sets.items():
        pd.testing.assert_frame_equal(one[lang], many[lang], check_exact=True)  # chunks change no bit
        x = data.astype(dtype)[lr.rows].astype(np.float64)  # the set's rows, duplicates included
        pos, neg = x[lr.labels], x[~lr.labels]
        expected = [average_precision_score(lr.labels, x[:, j]) for j in range(n_units)]
        assert np.abs(one[lang]["ap"] - expected).max() <= 1e-12
        np.testing.assert_array_equal(one[lang]["on_p50"], np.median(pos, axis=0))  # bit for bit
        np.testing.assert_array_equal(one[lang]["on_p90"], np.percentile(pos, 90, axis=0))
        np.testing.assert_array_equal(one[lang]["off_p50"], np.median(neg, axis=0))
        np.testing.assert_allclose(one[lang]["off_mean"], neg.mean(axis=0), rtol=1e-12, atol=1e-15)


def test_set_weights_count_duplicates_and_skip_unused_texts():
    sets = {"a": LabelledRows(np.array([5, 5, 2, 9, 2]), np.array([1, 1, 0, 0, 0], dtype=bool)),
            "b": LabelledRows(np.array([2, 7, 5]), np.array([1, 0, 0], dtype=bool))}
    w = set_weights(sets)
    assert w.texts.tolist() == [2, 5, 7, 9]  # rows no set uses are not sorted at all
    assert w.pos.tolist() == [[0, 2, 0, 0], [1, 0, 0, 0]]
    assert w.neg.tolist() == [[2, 0, 0, 1], [0, 1, 1, 0]]
