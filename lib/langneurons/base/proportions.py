"""95% intervals for rates that are shares of samples: the claims are decided from these, not from points.

A target-language rate is k of n sampled texts; with n = 100 its 95% interval at 50% is about
±10 points, so two rates a few points apart may not differ at all. Wilson's score interval (Wilson
1927) stays inside [0, 1] and keeps a sensible width at 0 and 100%, where the textbook
p ± 1.96·sqrt(p(1-p)/n) collapses to a point. The difference of two independent proportions gets
Newcombe's hybrid score interval (Newcombe 1998, method 10), built from the two Wilson intervals.

Every function takes counts (numpy arrays or scalars, broadcast) and returns proportions in [0, 1];
the tables multiply by 100.
"""

from __future__ import annotations

import numpy as np

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def wilson(k: np.ndarray | int, n: np.ndarray | int, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the Wilson score interval of k successes in n trials; n = 0 gives (0, 1)."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    if np.any(k < 0) or np.any(k > n):
        raise ValueError("wilson: every count k must lie in [0, n]")
    safe = np.where(n > 0, n, 1.0)
    p = k / safe
    denom = 1 + z * z / safe
    centre = (p + z * z / (2 * safe)) / denom
    half = z * np.sqrt(p * (1 - p) / safe + z * z / (4 * safe * safe)) / denom
    low, high = np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)
    low = np.where(k == 0, 0.0, low)  # exact at the ends (rounding can leave 1e-17)
    high = np.where(k == n, 1.0, high)
    return np.where(n > 0, low, 0.0), np.where(n > 0, high, 1.0)


def newcombe(k1: np.ndarray | int, n1: np.ndarray | int, k2: np.ndarray | int, n2: np.ndarray | int,
             z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the interval of p2 - p1 (the second rate minus the first, e.g. forced minus none)."""
    p1 = np.asarray(k1, dtype=float) / np.where(np.asarray(n1) > 0, n1, 1)
    p2 = np.asarray(k2, dtype=float) / np.where(np.asarray(n2) > 0, n2, 1)
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    d = p2 - p1
    low = d - np.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    high = d + np.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    return low, high


def decided(low: float, high: float) -> str:
    """What an interval of a rise says: "above 0", "below 0", or "undecided" when it holds 0."""
    return "above 0" if low > 0 else "below 0" if high < 0 else "undecided"
