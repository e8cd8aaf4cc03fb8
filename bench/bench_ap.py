"""Average precision of every unit: ours (batched sort + searchsorted) vs scikit-learn per unit.

Measured twice on the same values: as float32 and as float16 (how 7B/13B activations are stored,
sorted by ours as 16-bit keys with a radix sort).

The original code calls sklearn.metrics.average_precision_score once per unit in a Python loop.
That baseline is timed on a subset of units and extrapolated linearly per unit (its cost is one
independent call per unit), and ours must match it on that subset to 1e-12, ties included.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import average_precision_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, print_table, timed  # noqa: E402

from langneurons.ap import average_precision  # noqa: E402


def make_inputs(n_texts: int, n_units: int, n_pos: int, n_dup: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Activation-like float32 matrix with ties (2 decimals, duplicated rows) and 0/1 labels."""
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((n_texts, n_units), dtype=np.float32)
    labels = np.zeros(n_texts, dtype=bool)
    labels[rng.choice(n_texts, n_pos, replace=False)] = True
    scores[labels] += rng.uniform(0, 1, n_units).astype(np.float32)  # some units prefer positives
    scores = np.round(scores, 2)
    src, dst = rng.choice(n_texts, (2, n_dup), replace=False)
    scores[dst] = scores[src]  # the same text listed twice in a set gives identical rows
    return scores, labels


def sklearn_loop(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The original protocol: one average_precision_score call per unit."""
    return np.array([average_precision_score(labels, scores[:, j]) for j in range(scores.shape[1])])


def measure(scores: np.ndarray, labels: np.ndarray, subset: int, repeats: int) -> dict:
    """Time ours on all units and sklearn on `subset` units (extrapolated); compare on the subset."""
    s_t, l_t = torch.from_numpy(scores), torch.from_numpy(labels)
    ours_s, ours_all, ours_ap = timed(lambda: average_precision(s_t, l_t), repeats)
    sub = np.ascontiguousarray(scores[:, :subset])
    base_repeats = max(1, min(repeats, 3))
    base_sub_s, base_all, base_ap = timed(lambda: sklearn_loop(sub, labels), base_repeats)
    n_units = scores.shape[1]
    base_s = base_sub_s * n_units / subset  # linear per-unit extrapolation
    return {
        "dtype": str(scores.dtype), "repeats": {"ours": repeats, "baseline": base_repeats},
        "ours_times_s": ours_all, "baseline_subset_times_s": base_all,
        "ours_median_s": ours_s, "baseline_subset_median_s": base_sub_s, "baseline_extrapolated_s": base_s,
        "ratio": base_s / ours_s, "max_abs_diff_vs_sklearn": float(np.abs(ours_ap.numpy()[:subset] - base_ap).max()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test, a few seconds)")
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args()
    if args.quick:
        n_texts, n_units, n_pos, n_dup, subset, repeats = 300, 400, 50, 20, 100, args.repeats or 3
    else:
        n_texts, n_units, n_pos, n_dup, subset, repeats = 3000, 20000, 500, 300, 2000, args.repeats or 5
    scores, labels = make_inputs(n_texts, n_units, n_pos, n_dup, seed=0)
    # float32 as stored for small models; the same values rounded to float16 as stored for 7B/13B
    cases = [measure(scores, labels, subset, repeats), measure(scores.astype(np.float16), labels, subset, repeats)]
    print(f"AP: [{n_texts} texts x {n_units} units], {n_pos} positives, 2-decimal ties, {n_dup} duplicated rows")
    rows = []
    for c in cases:
        rows.append({"impl": f"sklearn loop, {c['dtype']} (timed on {subset} units, x{n_units / subset:g} extrapolated)",
                     "units": n_units, "median_s": c["baseline_extrapolated_s"],
                     "units_per_s": n_units / c["baseline_extrapolated_s"]})
        rows.append({"impl": f"ours average_precision, {c['dtype']} (all units)", "units": n_units,
                     "median_s": c["ours_median_s"], "units_per_s": n_units / c["ours_median_s"]})
    print_table(rows)
    for c in cases:
        print(f"{c['dtype']}: ratio (baseline / ours) {c['ratio']:,.1f}x [baseline EXTRAPOLATED from {subset} units]; "
              f"max |ours - sklearn| on the subset {c['max_abs_diff_vs_sklearn']:.3g} (target <= 1e-12)")
    finish("ap", args.quick, {
        "sizes": {"n_texts": n_texts, "n_units": n_units, "n_pos": n_pos, "n_dup_rows": n_dup,
                  "baseline_subset_units": subset},
        "baseline_extrapolated": True, "cases": cases, "target_ratio": 100, "target_max_diff": 1e-12,
    })


if __name__ == "__main__":
    main()
