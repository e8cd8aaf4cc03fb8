"""Our vectorised AP equals scikit-learn's average_precision_score, ties included."""

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from langneurons.scoring import ap
from langneurons.scoring.ap import (
    average_precision,
    expertise,
    expertise_sets,
    float16_from_keys,
    float16_keys,
    quantile_sorted,
)


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


def _repeated_rows(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One set's rows as the original code lists them (text t pos[t] + neg[t] times) and their labels."""
    texts = np.arange(len(pos))
    rows = np.concatenate([np.repeat(texts, pos), np.repeat(texts, neg)])
    return rows, np.repeat([True, False], [pos.sum(), neg.sum()])


def _check_sets(scores: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> None:
    """expertise_sets equals sklearn (AP) and numpy (median, percentile 90, mean) on each set's repeated rows."""
    stats = {k: v.numpy() for k, v in expertise_sets(torch.from_numpy(scores), torch.from_numpy(pos),
                                                     torch.from_numpy(neg)).items()}
    for s in range(len(pos)):
        rows, labels = _repeated_rows(pos[s], neg[s])
        x = scores[rows].astype(np.float64)
        assert np.abs(stats["ap"][s] - _sklearn(x, labels)).max() <= 1e-12
        np.testing.assert_array_equal(stats["on_p50"][s], np.median(x[labels], axis=0))  # bit for bit
        np.testing.assert_array_equal(stats["on_p90"][s], np.percentile(x[labels], 90, axis=0))
        np.testing.assert_array_equal(stats["off_p50"][s], np.median(x[~labels], axis=0))
        np.testing.assert_allclose(stats["off_mean"][s], x[~labels].mean(axis=0), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_one_sort_for_all_sets_equals_sklearn_and_numpy(dtype):
    rng = np.random.default_rng(4)
    n, units, sets = 240, 60, 6
    scores = np.round(rng.standard_normal((n, units)), 1)  # ~60 distinct values: heavy ties
    scores[:, :10] = rng.integers(0, 3, (n, 10))  # three values only
    scores[:30, 10:12], scores[30:60, 10:12] = -0.0, 0.0  # signed zeros tie
    scores[:, 12] = 7.0  # constant unit
    scores = scores.astype(dtype)
    # texts are shared between sets; weights 2 and 3 are texts a set lists twice or three times
    pos = rng.integers(1, 4, (sets, n)) * (rng.random((sets, n)) < 0.15)
    neg = rng.integers(1, 4, (sets, n)) * (rng.random((sets, n)) < 0.6) * (pos == 0)
    pos[0, :] = 0
    pos[0, 5] = 1  # a single positive
    neg[1, :] = 0
    neg[1, 7] = 2  # one negative text listed twice
    pos[2, 9], neg[2, 9] = 1, 1  # the same text as positive and as negative
    _check_sets(scores, pos, neg)


def test_one_sort_with_large_sets():
    """Sets of more than 2**16 rows count in 64-bit integers (the packed 32-bit counts would overflow)."""
    rng = np.random.default_rng(5)
    n = 40
    scores = np.round(rng.standard_normal((n, 4)), 1).astype(np.float32)
    pos, neg = np.zeros((2, 2, n), dtype=np.int64)
    pos[0, ::2], neg[0, 1::2] = rng.integers(2000, 4000, (2, n // 2))  # 40,000+ positives
    pos[1, 1::3], neg[1] = rng.integers(3000, 5000, n // 3), rng.integers(1000, 3000, n)  # text in both
    assert pos.sum(axis=1).min() >= 2**15 and (pos + neg).sum(axis=1).min() >= 2**16
    _check_sets(scores, pos, neg)


def test_expertise_sets_float16_equals_float32_blocks_and_checks_sets(monkeypatch):
    rng = np.random.default_rng(6)
    scores = np.round(rng.standard_normal((200, 30)), 1).astype(np.float16)
    pos = (rng.random((3, 200)) < 0.2).astype(np.int64)
    neg = 1 - pos
    half = expertise_sets(torch.from_numpy(scores), torch.from_numpy(pos), torch.from_numpy(neg))
    full = expertise_sets(torch.from_numpy(scores.astype(np.float32)), torch.from_numpy(pos), torch.from_numpy(neg))
    monkeypatch.setattr(ap, "BLOCK_RESPONSES", 200 * 7)  # blocks of 7 units: 7, 7, 7, 7, 2
    blocks = expertise_sets(torch.from_numpy(scores), torch.from_numpy(pos), torch.from_numpy(neg))
    for key in half:
        np.testing.assert_array_equal(half[key].numpy(), full[key].numpy())
        np.testing.assert_array_equal(half[key].numpy(), blocks[key].numpy())
    no_pos = pos.copy()
    no_pos[1] = 0
    with pytest.raises(ValueError, match="both"):
        expertise_sets(torch.from_numpy(scores), torch.from_numpy(no_pos), torch.from_numpy(neg))
    with pytest.raises(ValueError, match="negative"):
        expertise_sets(torch.from_numpy(scores), torch.from_numpy(-pos), torch.from_numpy(neg))
