"""Wilson and Newcombe intervals against values computed by hand, ends (0 and 100%) included."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from langneurons.base.proportions import Z95, newcombe, wilson
from langneurons.control.language_rates import main_rates, target_rates


def _wilson_by_hand(k: int, n: int) -> tuple[float, float]:
    z = Z95
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k,n", [(50, 100), (1, 10), (81, 263), (3, 7)])
def test_wilson_matches_the_formula(k, n):
    low, high = wilson(k, n)
    assert (float(low), float(high)) == pytest.approx(_wilson_by_hand(k, n), abs=1e-12)


def test_wilson_at_the_ends_is_one_sided_and_not_a_point():
    low, high = wilson(0, 100)
    assert float(low) == 0.0 and float(high) == pytest.approx(z2 := Z95**2 / (100 + Z95**2), abs=1e-12) and z2 > 0.03
    low, high = wilson(100, 100)
    assert float(high) == 1.0 and float(low) == pytest.approx(1 - Z95**2 / (100 + Z95**2), abs=1e-12)
    # a published value: 0 of 10 -> [0, 0.2775]
    assert float(wilson(0, 10)[1]) == pytest.approx(0.2775, abs=1e-4)


def test_wilson_is_vectorized_and_rejects_impossible_counts():
    low, high = wilson(np.array([0, 5, 10]), np.array([10, 10, 10]))
    assert low.shape == (3,) and (low <= np.array([0, 0.5, 1])).all() and (high >= np.array([0, 0.5, 1])).all()
    with pytest.raises(ValueError, match="k must lie in"):
        wilson(11, 10)


def test_newcombe_matches_the_published_example():
    # Newcombe (1998), Table II example (56/70 vs 48/80): p1 - p2 = 0.2, 95% interval 0.0524 to 0.3339
    low, high = newcombe(48, 80, 56, 70)  # second minus first
    assert (float(low), float(high)) == pytest.approx((0.0524, 0.3339), abs=1e-4)


def test_newcombe_at_the_ends():
    # 0/100 -> 100/100: the rise is certain but its interval is not a point; it stays within [-1, 1]
    low, high = newcombe(0, 100, 100, 100)
    assert 0.9 < float(low) < 1.0 and float(high) == pytest.approx(1.0)
    # equal rates: the interval is symmetric around 0
    low, high = newcombe(30, 100, 30, 100)
    assert float(low) == pytest.approx(-float(high)) and float(low) < 0 < float(high)


def test_rates_carry_counts_and_intervals():
    detected = pd.DataFrame({"condition": ["none"] * 4 + ["both"] * 4, "target": [""] * 4 + ["de"] * 4,
                             "n_top": [0] * 4 + [5] * 4, "n_bottom": [0] * 4 + [5] * 4,
                             "detected": ["en", "en", "de", "en", "de", "de", "de", "fr"]})
    rates = target_rates(detected, ["de"], ("condition", "target", "n_top", "n_bottom")).set_index("condition")
    assert rates.loc["none", "hits"] == 1 and rates.loc["both", "hits"] == 3 and rates.loc["both", "target_rate"] == 75.0
    assert rates.loc["both", "low"] == pytest.approx(100 * float(wilson(3, 4)[0]))
    main = main_rates(rates.reset_index(), 5).set_index("target")
    low, high = newcombe(1, 4, 3, 4)
    assert main.loc["de", "rise"] == 50.0
    assert (main.loc["de", "rise_low"], main.loc["de", "rise_high"]) == pytest.approx((100 * float(low), 100 * float(high)))
    assert main.loc["de", "rise_low"] < 0  # 1 of 4 -> 3 of 4 does not decide: the claim would be "not shown"
