"""Our vectorised AP equals scikit-learn's average_precision_score, ties included."""

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from langneurons.ap import average_precision, expertise, float16_from_keys, float16_keys, quantile_sorted


def _sklearn(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.array([average_precision_score(labels, scores[:, j]) for j in range(scores.shape[1])])


def test_matches_sklearn_with_many_ties():
    rng = np.random.default_rng(0)
    labels = rng.random(400) < 1 / 6
    scores = rng.integers(0, 6, size=(400, 300)).astype(np.float32)  # few distinct values: ties everywhere
    scores[:, :100] = rng.standard_normal((400, 100)).astype(np.float32)  # and some without ties
    scores[10] = scores[11]  # duplicate texts, as in the released sets
    ours = average_precision(torch.from_numpy(scores), torch.from_numpy(labels)).numpy()
    assert np.abs(ours - _sklearn(scores, labels)).max() <= 1e-12


def test_constant_perfect_and_inverted_units():
    labels = np.array([1, 0, 0, 1, 0, 0, 0, 1, 0, 0], dtype=bool)
    scores = np.stack([
        np.full(10, 3.0),  # constant: one tie group -> AP = share of positives
        labels.astype(float),  # perfect
        (~labels).astype(float),  # inverted: positives all last
        np.zeros(10),  # all-equal zeros
    ], axis=1).astype(np.float32)
    ours = average_precision(torch.from_numpy(scores), torch.from_numpy(labels)).numpy()
    np.testing.assert_allclose(ours, _sklearn(scores, labels), atol=1e-12)
    assert ours[0] == pytest.approx(0.3) and ours[1] == 1.0 and ours[3] == pytest.approx(0.3)


def test_float16_scores_keep_their_ties():
    rng = np.random.default_rng(1)
    labels = rng.random(500) < 0.2
    scores = rng.standard_normal((500, 50)).astype(np.float16)  # coarse: many ties
    ours = average_precision(torch.from_numpy(scores.astype(np.float32)), torch.from_numpy(labels)).numpy()
    assert np.abs(ours - _sklearn(scores, labels)).max() <= 1e-12


def test_statistics_match_numpy():
    rng = np.random.default_rng(2)
    labels = rng.random(301) < 0.3
    scores = rng.standard_normal((301, 40)).astype(np.float32)
    stats = {k: v.numpy() for k, v in expertise(torch.from_numpy(scores), torch.from_numpy(labels)).items()}
    pos, neg = scores[labels].astype(np.float64), scores[~labels].astype(np.float64)
    np.testing.assert_allclose(stats["on_p50"], np.median(pos, axis=0), atol=1e-12)
    np.testing.assert_allclose(stats["on_p90"], np.percentile(pos, 90, axis=0), atol=1e-12)
    np.testing.assert_allclose(stats["off_mean"], neg.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(stats["off_p50"], np.median(neg, axis=0), atol=1e-12)
    np.testing.assert_allclose(stats["ap"], _sklearn(scores, labels), atol=1e-12)


def test_quantile_of_sorted_rows():
    rows = torch.tensor([[1.0, 2.0, 3.0, 10.0]])
    assert quantile_sorted(rows, 0.5).item() == 2.5
    assert quantile_sorted(rows, 0.9).item() == pytest.approx(np.percentile([1, 2, 3, 10], 90))


@pytest.mark.parametrize("labels, message", [(np.zeros(5, bool), "both"), (np.ones(5, bool), "both")])
def test_undefined_ap_is_an_error(labels, message):
    with pytest.raises(ValueError, match=message):
        average_precision(torch.zeros(5, 2), torch.from_numpy(labels))


def test_nan_is_an_error():
    scores = torch.zeros(4, 2)
    scores[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        average_precision(scores, torch.tensor([1, 0, 0, 1]))


def test_float16_keys_order_like_the_values():
    values = np.array([-np.inf, -65504, -1.5, -1e-7, -0.0, 0.0, 6e-8, 1.0, 2.0, 65504, np.inf], dtype=np.float16)
    keys = float16_keys(torch.from_numpy(values)).numpy()
    assert (np.diff(keys.astype(np.int32)) > 0).sum() == len(values) - 2  # strictly increasing except -0 == +0
    assert keys[4] == keys[5] == 0
    back = float16_from_keys(torch.from_numpy(keys)).numpy()
    assert np.array_equal(back, values)  # -0.0 == +0.0 compares equal


def test_float16_radix_path_equals_float32_path_and_sklearn():
    rng = np.random.default_rng(3)
    labels = rng.random(700) < 0.2
    scores = np.round(rng.standard_normal((700, 60)), 1).astype(np.float16)
    scores[:40, :5] = -0.0  # signed zeros must tie with +0.0
    scores[40:80, :5] = 0.0
    half = expertise(torch.from_numpy(scores), torch.from_numpy(labels))
    full = expertise(torch.from_numpy(scores.astype(np.float32)), torch.from_numpy(labels))
    for key in half:
        np.testing.assert_array_equal(half[key].numpy(), full[key].numpy())
    assert np.abs(half["ap"].numpy() - _sklearn(scores, labels)).max() <= 1e-12
