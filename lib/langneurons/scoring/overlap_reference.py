"""A reference for the overlap claim: what would the overlap be if languages did share units?

The paper finds that two languages share under 5% of their top-N units. With one-vs-rest AP that
is close to guaranteed: a unit that ranks the texts of two languages a and b first scores about
0.5 AP for each (b's texts are negatives of a and rank among a's positives), below every top
cut-off. So beside the observed overlap this table gives, per pair of languages:

(a) chance: two independent random N-subsets of U units share N²/U units on average (% of N: 100 N/U);
(b) the Spearman rank correlation of the two languages' AP over all units: do the same units rank
    high (and low) for both? Each language's AP is ranked once (ties: average ranks, as scipy).
    One-vs-rest pushes it negative as well (a's texts are b's negatives), so a positive value
    stands out;
(c) the overlap of the top-N sets when each language's AP is computed against the rest *without
    the other language of the pair* (a's positives against the negatives of every language but b,
    and the reverse): a unit firing for both a and b then scores high for both, so this overlap
    can be large. Computing it exactly means 2 sets for each of the 15 pairs over all units: one
    sort per unit, then 30 sets instead of stage 03's 6, about 4 scoring passes. So it is
    computed on a pool of candidates per pair: the top POOL_FACTOR x N units by a's AP, by b's
    AP, and by the sum of both (the last catches units that fire for a and b alike, which
    one-vs-rest AP puts near 0.5 for each, often below a's and b's own top 5N). Removing negatives only raises a unit's AP, so a unit outside the pool could
    still enter the top-N without b: on the pool, (c) is an approximation that can miss such
    units, not the exact figure; a large value still shows shared units (the reference can fail).
    Bottom-N is not rescored. Cost: on Gemma 3 270M a pair's pool holds ~10,000 of 124,416 units
    and (c) took 0.6 of stage 03's scoring pass, timed beside it; on the tiny model (N = 5% of its
    units) the pools are half the units and (c) costs 2-3 of its (short) passes.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata
from tqdm import tqdm

from langneurons.data.textsets import TextSets
from langneurons.model.activations import matrix_shape, read_columns
from langneurons.scoring.selection import SetWeights, labelled_rows, score_block, set_weights
from langneurons.scoring.stability import selected_columns

POOL_FACTOR = 5  # candidates for (c): the top POOL_FACTOR x N by each language's AP and by their sum
OVERLAP_REFERENCE_FILE = "overlap_reference.csv"  # in runs/<profile>/analysis/
COLUMNS = ("language_a", "language_b", "n", "units", "chance_shared", "chance_percent_of_n", "spearman",
           "shared_top", "percent_top", "shared_bottom", "percent_bottom", "pool_units", "without_pair_shared_top",
           "without_pair_percent_top")


def chance_shared(n: int, units: int) -> float:
    """Units two independent random N-subsets of U units share on average: N * N / U."""
    return n * n / units


def spearman_matrix(ap: np.ndarray) -> np.ndarray:
    """Spearman correlation between the columns of `ap` [units, languages]: Pearson of average ranks."""
    ranks = rankdata(ap, axis=0)  # once per language
    z = ranks - ranks.mean(axis=0)
    norm = np.sqrt((z * z).sum(axis=0))
    return (z.T @ z) / np.outer(norm, norm)


def pair_pool(ap_a: np.ndarray, ap_b: np.ndarray, size: int) -> np.ndarray:
    """Ascending columns among the top `size` by a's AP, by b's AP or by their sum (stage 03's tie-break)."""
    tops = [np.argsort(-x, kind="stable")[:size] for x in (ap_a, ap_b, ap_a + ap_b)]
    return np.unique(np.concatenate(tops))


def without_language(weights: SetWeights, index: int, text_lang: np.ndarray, other: str) -> tuple[np.ndarray, np.ndarray]:
    """Set `index`'s positive and negative weights with the negatives in language `other` removed."""
    return weights.pos[index], weights.neg[index] * (text_lang != other)


def pair_sets(weights: SetWeights, i: int, j: int, text_lang: np.ndarray, languages: list[str]) -> SetWeights:
    """The two sets 'a without b' and 'b without a', over the texts they use."""
    (pa, na), (pb, nb) = (without_language(weights, i, text_lang, languages[j]),
                          without_language(weights, j, text_lang, languages[i]))
    pos, neg = np.stack([pa, pb]), np.stack([na, nb])
    used = (pos + neg).sum(axis=0) > 0
    if (pos.sum(axis=1) == 0).any() or (neg.sum(axis=1) == 0).any():
        raise ValueError(f"{languages[i]}-{languages[j]}: no positives, or no negatives once the other language is removed")
    return SetWeights(weights.texts[used], pos[:, used], neg[:, used])


def without_pair_overlap(
    matrix_path: Path, text_sets: TextSets, languages: list[str], ap: np.ndarray, n_per_side: int,
    unit_chunk: int = 4096, device: torch.device | str = "cpu", pool_factor: int = POOL_FACTOR,
) -> dict[tuple[str, str], tuple[int, int]]:
    """(c) per pair (a, b): (units shared by the top-N of 'a without b' and of 'b without a', pool size).

    `ap` [units, languages] is stage 03's AP; it picks each pair's pool, whose units are rescored
    in one read of the matrix (each chunk's pooled columns, for every pair)."""
    kept = ~np.isnan(read_columns(matrix_path, 0, 1)[:, 0])
    weights = set_weights({lang: labelled_rows(text_sets, lang, kept) for lang in languages})
    text_lang = text_sets.texts.set_index("text_id")["lang"].loc[weights.texts].to_numpy().astype(str)
    n_units = matrix_shape(matrix_path)[1]
    size = min(pool_factor * n_per_side, n_units)
    pairs = list(combinations(range(len(languages)), 2))
    pools = {(i, j): pair_pool(ap[:, i], ap[:, j], size) for i, j in pairs}
    sets = {(i, j): pair_sets(weights, i, j, text_lang, languages) for i, j in pairs}
    rescored = {key: np.empty((2, len(pool)), dtype=np.float64) for key, pool in pools.items()}
    for start in tqdm(range(0, n_units, unit_chunk), desc="AP without the pair's other language", unit="chunk"):
        stop = min(start + unit_chunk, n_units)
        block = read_columns(matrix_path, start, stop)
        for key, pool in pools.items():
            lo, hi = np.searchsorted(pool, [start, stop])
            if hi > lo:
                rescored[key][:, lo:hi] = score_block(block[:, pool[lo:hi] - start], sets[key], device)["ap"].cpu().numpy()
    out = {}
    for (i, j), pool in pools.items():
        top_a, top_b = (pool[selected_columns(rescored[(i, j)][k], n_per_side)["top"]] for k in (0, 1))
        out[(languages[i], languages[j])] = (len(np.intersect1d(top_a, top_b)), len(pool))
    return out


def overlap_reference(
    scores: dict[str, pd.DataFrame], n_per_side: int, matrix_path: Path | None = None, text_sets: TextSets | None = None,
    unit_chunk: int = 4096, device: torch.device | str = "cpu", pool_factor: int = POOL_FACTOR,
) -> pd.DataFrame:
    """One row per pair of languages: observed top/bottom overlap, (a) chance, (b) Spearman and,
    given the matrix and the text sets, (c) the overlap without the pair's other language (NaN otherwise).

    `scores`: stage 03's scores/<lang>.parquet (row i = matrix column i, column `ap`)."""
    languages = list(scores)
    ap = np.stack([scores[lang]["ap"].to_numpy(dtype=np.float64) for lang in languages], axis=1)
    units = ap.shape[0]
    rho = spearman_matrix(ap)
    picked = [selected_columns(ap[:, k], n_per_side) for k in range(len(languages))]
    without = ({} if matrix_path is None or text_sets is None else
               without_pair_overlap(matrix_path, text_sets, languages, ap, n_per_side, unit_chunk, device, pool_factor))
    rows = []
    for i, j in combinations(range(len(languages)), 2):
        a, b = languages[i], languages[j]
        top = len(np.intersect1d(picked[i]["top"], picked[j]["top"]))
        bottom = len(np.intersect1d(picked[i]["bottom"], picked[j]["bottom"]))
        shared, pool = without.get((a, b), (np.nan, np.nan))
        rows.append({"language_a": a, "language_b": b, "n": n_per_side, "units": units,
                     "chance_shared": chance_shared(n_per_side, units), "chance_percent_of_n": 100 * n_per_side / units,
                     "spearman": rho[i, j], "shared_top": top, "percent_top": 100 * top / n_per_side,
                     "shared_bottom": bottom, "percent_bottom": 100 * bottom / n_per_side, "pool_units": pool,
                     "without_pair_shared_top": shared, "without_pair_percent_top": 100 * shared / n_per_side})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def overlap_reference_summary(table: pd.DataFrame) -> str:
    """One line for the claims table: the observed overlap beside chance, Spearman and (c)."""
    top = table.loc[table.percent_top.idxmax()]
    rho = table.loc[table.spearman.idxmax()]
    observed = (f"largest top overlap {top.percent_top:.1f}% of N ({top.language_a}-{top.language_b})"
                if top.percent_top > 0 else "no two languages share a top unit")
    line = (f"{observed} (chance: {table.chance_percent_of_n.iloc[0]:.1f}% of N); AP rank correlation (Spearman) "
            f"{table.spearman.min():+.2f} to {rho.spearman:+.2f} (highest {rho.language_a}-{rho.language_b})")
    if table.without_pair_percent_top.notna().any():
        c = table.loc[table.without_pair_percent_top.idxmax()]
        line += (f"; without the pair's other language in the negatives up to {c.without_pair_percent_top:.1f}% "
                 f"({c.language_a}-{c.language_b})")
    return line


def overlap_reference_lines(table: pd.DataFrame) -> list[str]:
    """The report's section: the three references, then one row per pair (Markdown)."""
    n, units = int(table["n"].iloc[0]), int(table["units"].iloc[0])
    has_c = bool(table.without_pair_percent_top.notna().any())
    header = ["pair", "top shared (% of N)", "bottom shared (% of N)", "chance (% of N)", "Spearman of AP"]
    header += ["top shared without the pair (% of N)"] if has_c else []
    lines = ["## A reference for the overlap\n",
             f"One-vs-rest AP all but rules overlap out: a unit that ranks two languages' texts first scores about 0.5 "
             f"for each, below every top cut-off. So beside the observed overlap: what two random sets of {n} among "
             f"{units:,} units share ({chance_shared(n, units):.1f} units, {100 * n / units:.2f}% of N); the Spearman "
             f"correlation of the two languages' AP over all units (do the same units rank high for both?)"
             + (f"; and the top-{n} overlap when each language is scored against the rest without the pair's other "
                f"language (rescored on a pool of candidates: the top {POOL_FACTOR}N by either AP or by their sum)"
                if has_c else "") + ".\n",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in table.itertuples():
        cells = [f"{r.language_a}-{r.language_b}", f"{r.percent_top:.1f}", f"{r.percent_bottom:.1f}",
                 f"{r.chance_percent_of_n:.2f}", f"{r.spearman:+.2f}"]
        cells += [f"{r.without_pair_percent_top:.1f}"] if has_c else []
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]
