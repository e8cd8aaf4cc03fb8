"""Scoring over the memory-mapped matrix: chunking changes nothing; selection and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from langneurons.scoring import (
    LabelledRows,
    SelectionError,
    as_original_expertise,
    boundary_ties,
    score_units,
    select_units,
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
