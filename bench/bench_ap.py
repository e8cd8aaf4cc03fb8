"""Average precision of every unit: ours vs scikit-learn per unit, and vs the previous scoring.

Two cases, each measured twice on the same values: as float32 and as float16 (how 7B/13B
activations are stored, sorted by ours as 16-bit keys with a radix sort).

1. One labelled set (`ap.average_precision`): [3,000 texts x 20,000 units], 500 positives.
2. The released sets' shape (what `scoring.score_units` does for each column chunk): 5,873 unique
   texts, six languages, each set = 500 positives of its language + 500 negatives from each other
   language, drawn with repetition, so sets repeat texts and share them (18,000 rows in all, as in
   the released sets); 20,000 units in chunks of 4,096 (scoring.unit_chunk). Three implementations:
   - previous: the per-language path this replaced, kept below verbatim as `previous_*`: gathers
     each language's 3,000 rows and sorts its positives and negatives again for every language;
   - ours: `scoring.score_block`, one sort of each unit over the unique texts for all six sets;
   - sklearn: average_precision_score once per unit and language (the original code's protocol).

sklearn is timed on a subset of units and extrapolated linearly per unit (its cost is one
independent call per unit and language); ours must match it on that subset to 1e-12, ties
included, and its medians must equal numpy's (and the previous path's) on the repeated rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import langneurons  # noqa: F401  (first: pins the CPU kernels before torch loads, as in every run)
import numpy as np
import torch
from sklearn.metrics import average_precision_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, print_table, timed  # noqa: E402

from langneurons.scoring.ap import STATS, average_precision, float16_from_keys  # noqa: E402
from langneurons.scoring.selection import LabelledRows, score_block, set_weights  # noqa: E402

N_LANGS = 6


# --- case 1: one labelled set ---------------------------------------------------------------------

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


# --- case 2: the released sets' shape --------------------------------------------------------------

def released_like(n_texts: int, n_units: int, n_pos: int, seed: int) -> tuple[np.ndarray, dict[str, LabelledRows]]:
    """[n_texts x n_units] float32 responses (2 decimals: ties) and six sets over them.

    Each language owns n_texts / 6 texts. Its set: n_pos of its own texts (positives) and n_pos
    texts of each other language (negatives). A language's texts serve as negatives of the five
    others: 5 x n_pos draws with repetition, each of its texts at least once, so every text is
    used, sets list some texts twice and languages share texts.
    """
    rng = np.random.default_rng(seed)
    lang_of = np.arange(n_texts) * N_LANGS // n_texts
    own = [np.flatnonzero(lang_of == lang) for lang in range(N_LANGS)]
    drawn = []  # drawn[lang][k]: n_pos of lang's texts for the k-th other language
    for texts in own:
        extra = rng.choice(texts, (N_LANGS - 1) * n_pos - len(texts))
        drawn.append(rng.permutation(np.concatenate([texts, extra])).reshape(N_LANGS - 1, n_pos))
    sets = {}
    for lang in range(N_LANGS):
        # lang is other language number (lang if lang < o else lang - 1) of language o
        negatives = [drawn[o][lang if lang < o else lang - 1] for o in range(N_LANGS) if o != lang]
        rows = np.concatenate([rng.choice(own[lang], n_pos, replace=False), *negatives])
        labels = np.zeros(len(rows), dtype=bool)
        labels[:n_pos] = True
        sets[f"lang{lang}"] = LabelledRows(rows, labels)
    scores = rng.standard_normal((n_texts, n_units), dtype=np.float32)
    preferred = rng.integers(0, N_LANGS, n_units)  # each unit responds more to one language's texts
    scores += (lang_of[:, None] == preferred[None, :]) * rng.uniform(0, 1, n_units).astype(np.float32)
    return np.round(scores, 2), sets


# The previous scoring path (before "Exact to the bit, faster scoring"), kept verbatim as the baseline:
# per language, gather its rows, sort its positives and its negatives, binary-search the counts.

def previous_float16_keys(x: torch.Tensor) -> torch.Tensor:
    bits = x.view(torch.int16)
    sign = bits >> 15  # 0 for +, -1 for -
    return (bits ^ (sign & 0x7FFF)) - sign


def previous_sort_rows(x: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.float16 and x.device.type == "cpu":
        keys = previous_float16_keys(x).numpy()
        keys.sort(axis=1, kind="stable")  # numpy uses a radix sort for 16-bit integers
        return torch.from_numpy(keys)
    return torch.sort(x, dim=1).values


def previous_sorted_values(sorted_rows: torch.Tensor) -> torch.Tensor:
    return float16_from_keys(sorted_rows) if sorted_rows.dtype == torch.int16 else sorted_rows


def previous_split_sorted(scores: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    labels = labels.to(device=scores.device, dtype=torch.bool)
    if labels.all() or not labels.any():
        raise ValueError("labels must contain both positives and negatives: AP is undefined otherwise")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN: AP is undefined (check the activation matrix)")
    pos = previous_sort_rows(scores[labels].T.contiguous())
    neg = previous_sort_rows(scores[~labels].T.contiguous())
    return pos, neg


def previous_ap_sorted(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    pos_ge = pos.shape[1] - torch.searchsorted(pos, pos, side="left")
    neg_ge = neg.shape[1] - torch.searchsorted(neg, pos, side="left")
    return (pos_ge.double() / (pos_ge + neg_ge).double()).mean(dim=1)


def previous_quantile_sorted(sorted_rows: torch.Tensor, q: float) -> torch.Tensor:
    pos = q * (sorted_rows.shape[1] - 1)
    lo = int(pos)
    hi = min(lo + 1, sorted_rows.shape[1] - 1)
    low = previous_sorted_values(sorted_rows[:, lo]).double()
    high = previous_sorted_values(sorted_rows[:, hi]).double()
    return low + (high - low) * (pos - lo)


def previous_expertise(scores: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    pos, neg = previous_split_sorted(scores, labels)
    return {
        "ap": previous_ap_sorted(pos, neg),
        "on_p50": previous_quantile_sorted(pos, 0.5),
        "on_p90": previous_quantile_sorted(pos, 0.9),
        "off_mean": previous_sorted_values(neg).double().mean(dim=1),
        "off_p50": previous_quantile_sorted(neg, 0.5),
    }


def previous_scoring(matrix: np.ndarray, sets: dict[str, LabelledRows], chunk: int) -> dict[str, np.ndarray]:
    """The previous score_units loop on an in-memory matrix: [sets, units] per statistic."""
    out = {c: np.empty((len(sets), matrix.shape[1])) for c in STATS}
    for start in range(0, matrix.shape[1], chunk):
        stop = min(start + chunk, matrix.shape[1])
        block = torch.from_numpy(np.ascontiguousarray(matrix[:, start:stop]))  # as read_columns returns it
        for i, lr in enumerate(sets.values()):
            stats = previous_expertise(block[torch.from_numpy(lr.rows)], torch.from_numpy(lr.labels))
            for c in STATS:
                out[c][i, start:stop] = stats[c].numpy()
    return out


def ours_scoring(matrix: np.ndarray, sets: dict[str, LabelledRows], chunk: int) -> dict[str, np.ndarray]:
    """Today's score_units loop on an in-memory matrix: [sets, units] per statistic."""
    weights = set_weights(sets)
    out = {c: np.empty((len(sets), matrix.shape[1])) for c in STATS}
    for start in range(0, matrix.shape[1], chunk):
        stop = min(start + chunk, matrix.shape[1])
        stats = score_block(np.ascontiguousarray(matrix[:, start:stop]), weights)  # as read_columns returns it
        for c in STATS:
            out[c][:, start:stop] = stats[c].numpy()
    return out


def sklearn_sets(columns: list[np.ndarray], sets: dict[str, LabelledRows]) -> np.ndarray:
    """The original protocol: one average_precision_score call per unit and language: [sets, units]."""
    return np.array([[average_precision_score(lr.labels, x[:, j]) for j in range(x.shape[1])]
                     for x, lr in zip(columns, sets.values())])


def numpy_stats(columns: list[np.ndarray], sets: dict[str, LabelledRows]) -> dict[str, np.ndarray]:
    """numpy's median, percentile(90) and mean on each set's repeated rows (float64): [sets, units]."""
    pos = [x[lr.labels].astype(np.float64) for x, lr in zip(columns, sets.values())]
    neg = [x[~lr.labels].astype(np.float64) for x, lr in zip(columns, sets.values())]
    return {"on_p50": np.array([np.median(p, axis=0) for p in pos]),
            "on_p90": np.array([np.percentile(p, 90, axis=0) for p in pos]),
            "off_mean": np.array([n.mean(axis=0) for n in neg]),
            "off_p50": np.array([np.median(n, axis=0) for n in neg])}


def measure_sets(matrix: np.ndarray, sets: dict[str, LabelledRows], chunk: int, subset: int, repeats: int) -> dict:
    """Time previous and ours on all units, sklearn on `subset` units (extrapolated); compare."""
    prev_s, prev_all, prev = timed(lambda: previous_scoring(matrix, sets, chunk), repeats)
    ours_s, ours_all, ours = timed(lambda: ours_scoring(matrix, sets, chunk), repeats)
    columns = [np.ascontiguousarray(matrix[lr.rows, :subset]) for lr in sets.values()]  # each set's rows
    base_repeats = max(1, min(repeats, 3))
    base_sub_s, base_all, base_ap = timed(lambda: sklearn_sets(columns, sets), base_repeats)
    n_units = matrix.shape[1]
    base_s = base_sub_s * n_units / subset  # linear per-unit extrapolation
    ref = numpy_stats(columns, sets)
    return {
        "dtype": str(matrix.dtype), "repeats": {"previous": repeats, "ours": repeats, "sklearn": base_repeats},
        "previous_times_s": prev_all, "ours_times_s": ours_all, "sklearn_subset_times_s": base_all,
        "previous_median_s": prev_s, "ours_median_s": ours_s, "sklearn_subset_median_s": base_sub_s,
        "sklearn_extrapolated_s": base_s, "ratio_previous": prev_s / ours_s, "ratio_sklearn": base_s / ours_s,
        "max_abs_diff_vs_sklearn": float(np.abs(ours["ap"][:, :subset] - base_ap).max()),
        "previous_max_abs_diff_vs_sklearn": float(np.abs(prev["ap"][:, :subset] - base_ap).max()),
        "max_abs_diff_vs_previous": {c: float(np.abs(ours[c] - prev[c]).max()) for c in STATS},
        "quantiles_equal_numpy": all(np.array_equal(ours[c][:, :subset], ref[c])
                                     for c in ("on_p50", "on_p90", "off_p50")),
        "off_mean_max_rel_diff_vs_numpy": float((np.abs(ours["off_mean"][:, :subset] - ref["off_mean"])
                                                 / np.abs(ref["off_mean"]).clip(min=1e-300)).max()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test, a few seconds)")
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args()
    if args.quick:
        n_texts, n_units, n_pos, n_dup, subset, repeats = 300, 400, 50, 20, 100, args.repeats or 3
        r_texts, r_units, r_pos, r_chunk, r_subset = 600, 400, 50, 128, 40
    else:
        n_texts, n_units, n_pos, n_dup, subset, repeats = 3000, 20000, 500, 300, 2000, args.repeats or 5
        r_texts, r_units, r_pos, r_chunk, r_subset = 5873, 20000, 500, 4096, 300
    r_repeats = args.repeats or 3

    scores, labels = make_inputs(n_texts, n_units, n_pos, n_dup, seed=0)
    # float32 as stored for small models; the same values rounded to float16 as stored for 7B/13B
    cases = [measure(scores, labels, subset, repeats), measure(scores.astype(np.float16), labels, subset, repeats)]
    print(f"1. one set: [{n_texts} texts x {n_units} units], {n_pos} positives, 2-decimal ties, "
          f"{n_dup} duplicated rows")
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

    matrix, sets = released_like(r_texts, r_units, r_pos, seed=1)
    n_rows, n_unique = sum(len(lr.rows) for lr in sets.values()), len(set_weights(sets).texts)
    set_cases = [measure_sets(matrix, sets, r_chunk, r_subset, r_repeats),
                 measure_sets(matrix.astype(np.float16), sets, r_chunk, r_subset, r_repeats)]
    print(f"\n2. released sets' shape: {N_LANGS} sets, {n_rows:,} rows, {n_unique:,} unique texts x {r_units:,} units, "
          f"chunks of {r_chunk:,} units, 2-decimal ties; sklearn per unit and language")
    rows = []
    for c in set_cases:
        for impl, key in (("sklearn per unit and language", "sklearn_extrapolated_s"),
                          ("previous (per-language sorts)", "previous_median_s"), ("ours (one sort)", "ours_median_s")):
            extrapolated = f" (timed on {r_subset} units, x{r_units / r_subset:g} extrapolated)"
            note = extrapolated if impl.startswith("sklearn") else ""
            rows.append({"impl": f"{impl}, {c['dtype']}{note}", "units": r_units, "median_s": c[key],
                         "units_per_s": r_units / c[key]})
    print_table(rows)
    for c in set_cases:
        print(f"{c['dtype']}: ours vs previous {c['ratio_previous']:.2f}x (target >= 2), vs sklearn "
              f"{c['ratio_sklearn']:.1f}x (target >= 15) [sklearn EXTRAPOLATED from {r_subset} units]; "
              f"max |ours - sklearn| {c['max_abs_diff_vs_sklearn']:.3g} (target <= 1e-12, previous "
              f"{c['previous_max_abs_diff_vs_sklearn']:.3g}); quantiles equal numpy's: {c['quantiles_equal_numpy']}, "
              f"off_mean rel diff {c['off_mean_max_rel_diff_vs_numpy']:.3g}")
        print("  max |ours - previous|: " + ", ".join(f"{k} {v:.3g}" for k, v in c["max_abs_diff_vs_previous"].items()))
    finish("ap", args.quick, {
        "sizes": {"n_texts": n_texts, "n_units": n_units, "n_pos": n_pos, "n_dup_rows": n_dup,
                  "baseline_subset_units": subset},
        "baseline_extrapolated": True, "cases": cases, "target_ratio": 100, "target_max_diff": 1e-12,
        "sets": {"sizes": {"n_texts": r_texts, "unique_texts_used": n_unique, "n_rows": n_rows,
                           "n_units": r_units, "n_pos": r_pos, "languages": N_LANGS, "unit_chunk": r_chunk,
                           "sklearn_subset_units": r_subset},
                 "sklearn_extrapolated": True, "cases": set_cases, "target_ratio_previous": 2,
                 "target_ratio_sklearn": 15, "target_max_diff": 1e-12},
    })


if __name__ == "__main__":
    main()
