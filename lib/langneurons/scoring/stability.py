"""Split-half reliability of the AP selection: would another half of the texts pick the same units?

A claim about where the language-specific units sit means little if another draw of the same
kind of texts picks other units. So the texts are split into two halves, every unit is scored on
each half with the scoring stage's own AP code (scoring/ap.py through selection.score_block), the
top-N and bottom-N are selected on each half the way stage 03 selects them (select_units: same
tie-break), and the sets are compared by their Jaccard index |A ∩ B| / |A ∪ B|: with each other,
and with the selection stage 03 made on all texts (read from its outputs, not recomputed).

The split is by unique text, not by row, so a text listed twice (the released sets have a few
duplicates) never lands in both halves. Texts with the same role in every set (how often each
set lists them as positive and as negative) and the same language form a stratum, and each
stratum is halved: every language's positives and negatives, and the negatives of each other
language, are split in two equal halves (±1 text per stratum; an odd stratum's middle text goes
to a seeded random half). One split serves all languages, so each half is scored in one pass
over half the texts, for every language at once: the split-half costs about one scoring pass.

Optionally (`scoring.stability.resamples` > 0) bootstrap draws over the texts: each stratum is
resampled with replacement to its own size (a text drawn k times weighs k), every unit scored on
the draw and its selection compared with stage 03's; mean and 2.5/97.5 percentiles of that
Jaccard are reported. Each draw costs a scoring pass over ~63% of the texts and keeps one float64
per unit and language in memory. With resamples = 0 (the default) the bootstrap columns are
still there, NaN, and `resamples` says 0: the table keeps one schema whatever the params
(check-figures compares columns).

Chance: two random N-subsets of U units share N²/U units on average, a Jaccard of about
(N²/U) / (2N − N²/U) (`jaccard_chance`): units that carry no language signal land near it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from langneurons.data.textsets import TextSets
from langneurons.model.activations import matrix_shape, read_columns
from langneurons.scoring.selection import SetWeights, labelled_rows, score_block, select_units, set_weights

SIDES = ("top", "bottom")
STABILITY_FILE = "stability.csv"  # in runs/<profile>/analysis/
PERCENTILES = (2.5, 97.5)
COLUMNS = ("language", "side", "n", "units", "texts_a", "texts_b", "jaccard_halves", "jaccard_a_full",
           "jaccard_b_full", "jaccard_chance", "resamples", "jaccard_resampled_mean", "jaccard_resampled_low",
           "jaccard_resampled_high")


def text_strata(weights: SetWeights, text_lang: np.ndarray) -> np.ndarray:
    """Stratum id of each of weights.texts: same language and same weight as positive and as
    negative in every set. Halving each stratum halves every set's positives and negatives."""
    codes = np.unique(text_lang, return_inverse=True)[1].reshape(-1)
    roles = np.concatenate([codes[None], weights.pos, weights.neg]).T  # [texts, 1 + 2 sets]
    return np.unique(roles, axis=0, return_inverse=True)[1].reshape(-1)


def _rank_in_stratum(strata: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random order within each stratum: each text's position in it (0-based), and the strata sizes."""
    order = rng.permutation(len(strata))
    order = order[np.argsort(strata[order], kind="stable")]  # grouped by stratum, shuffled within
    sizes = np.bincount(strata)
    starts = np.cumsum(sizes) - sizes
    rank = np.empty(len(strata), dtype=np.int64)
    rank[order] = np.arange(len(order)) - starts[strata[order]]
    return rank, sizes


def split_halves(strata: np.ndarray, seed: int) -> np.ndarray:
    """bool per text: True = half A. Each stratum halved; an odd one's middle text to a random half."""
    rng = np.random.default_rng([seed, 0])
    rank, sizes = _rank_in_stratum(strata, rng)
    extra = (sizes % 2) * (rng.random(len(sizes)) < 0.5)
    return rank < (sizes // 2 + extra)[strata]


def bootstrap_counts(strata: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """int64 per text: how often one bootstrap draw takes it (each stratum resampled to its size)."""
    sizes = np.bincount(strata)
    starts = np.cumsum(sizes) - sizes
    grouped = np.argsort(strata, kind="stable")  # texts in stratum order
    own = strata[grouped]  # one draw per text, from that text's stratum
    picks = grouped[starts[own] + rng.integers(0, sizes[own])]
    return np.bincount(picks, minlength=len(strata)).astype(np.int64)


def reweighted(weights: SetWeights, counts: np.ndarray) -> SetWeights:
    """The sets with text t counted counts[t] times (0: left out): a half (0/1) or a bootstrap draw."""
    keep = counts > 0
    return SetWeights(weights.texts[keep], weights.pos[:, keep] * counts[keep], weights.neg[:, keep] * counts[keep])


def _check_draw(name: str, w: SetWeights, languages: list[str]) -> None:
    empty = [lang for lang, p, q in zip(languages, w.pos.sum(axis=1), w.neg.sum(axis=1)) if p == 0 or q == 0]
    if empty:
        raise ValueError(f"{name} has no positive or no negative texts for {empty}: too few texts to split in two")


def score_draws(matrix_path: Path, draws: dict[str, SetWeights], unit_chunk: int,
                device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """AP (float64 [sets, units]) of every unit for every draw; each column chunk is read once for all draws."""
    n_units = matrix_shape(matrix_path)[1]
    out = {name: np.empty((len(w.pos), n_units), dtype=np.float64) for name, w in draws.items()}
    for start in tqdm(range(0, n_units, unit_chunk), desc="AP per draw", unit="chunk"):
        stop = min(start + unit_chunk, n_units)
        block = read_columns(matrix_path, start, stop)
        for name, w in draws.items():
            out[name][:, start:stop] = score_block(block, w, device)["ap"].cpu().numpy()
    return out


def selected_columns(ap: np.ndarray, n_per_side: int) -> dict[str, np.ndarray]:
    """Matrix columns of the top-N and bottom-N units by `ap`, chosen as stage 03 chooses them."""
    sel = select_units(pd.DataFrame({"column": np.arange(len(ap)), "ap": ap}), n_per_side)
    return {side: sel.loc[sel.side == side, "column"].to_numpy() for side in SIDES}


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|A ∩ B| / |A ∪ B| of two sets of columns."""
    shared = len(np.intersect1d(a, b))
    union = len(a) + len(b) - shared
    return shared / union if union else float("nan")


def chance_jaccard(n: int, units: int) -> float:
    """Jaccard of two independent random N-subsets of U units, from their expected overlap N²/U."""
    shared = n * n / units
    return shared / (2 * n - shared)


def split_half_stability(
    matrix_path: Path, text_sets: TextSets, languages: list[str], full: dict[str, pd.DataFrame], n_per_side: int,
    seed: int, resamples: int = 0, unit_chunk: int = 4096, device: torch.device | str = "cpu",
) -> pd.DataFrame:
    """Per language and side: Jaccard of the two halves' selections, of each with stage 03's
    selection (`full`: selection/<lang>.csv as read_selections gives them), chance, and the
    bootstrap's mean and percentiles (NaN without resamples). Columns: COLUMNS."""
    kept = ~np.isnan(read_columns(matrix_path, 0, 1)[:, 0])  # texts dropped as too long have NaN rows
    weights = set_weights({lang: labelled_rows(text_sets, lang, kept) for lang in languages})
    lang_of = text_sets.texts.set_index("text_id")["lang"]
    strata = text_strata(weights, lang_of.loc[weights.texts].to_numpy().astype(str))
    half_a = split_halves(strata, seed)
    draws = {"half A": reweighted(weights, half_a.astype(np.int64)), "half B": reweighted(weights, (~half_a).astype(np.int64))}
    for r in range(resamples):
        draws[f"resample {r + 1}"] = reweighted(weights, bootstrap_counts(strata, np.random.default_rng([seed, r + 1])))
    for name, w in draws.items():
        _check_draw(name, w, languages)
    ap = score_draws(matrix_path, draws, unit_chunk, device)
    units = ap["half A"].shape[1]

    rows = []
    for i, lang in enumerate(languages):
        picked = {name: selected_columns(values[i], n_per_side) for name, values in ap.items()}
        for side in SIDES:
            whole = full[lang].loc[full[lang].side == side, "column"].to_numpy()
            a, b = picked["half A"][side], picked["half B"][side]
            boot = np.array([jaccard(picked[f"resample {r + 1}"][side], whole) for r in range(resamples)])
            low, high = np.percentile(boot, PERCENTILES) if resamples else (np.nan, np.nan)
            rows.append({"language": lang, "side": side, "n": n_per_side, "units": units,
                         "texts_a": int(draws["half A"].pos[i].sum() + draws["half A"].neg[i].sum()),
                         "texts_b": int(draws["half B"].pos[i].sum() + draws["half B"].neg[i].sum()),
                         "jaccard_halves": jaccard(a, b), "jaccard_a_full": jaccard(a, whole),
                         "jaccard_b_full": jaccard(b, whole), "jaccard_chance": chance_jaccard(n_per_side, units),
                         "resamples": resamples, "jaccard_resampled_mean": boot.mean() if resamples else np.nan,
                         "jaccard_resampled_low": low, "jaccard_resampled_high": high})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def stability_summary(table: pd.DataFrame) -> str:
    """One line for the claims table: the halves' Jaccard per language, top then bottom."""
    parts = []
    for side in SIDES:
        rows = table[table.side == side]
        parts.append(f"{side}: " + ", ".join(f"{r.language} {r.jaccard_halves:.2f}" for r in rows.itertuples()))
    chance = table["jaccard_chance"].iloc[0] if len(table) else float("nan")
    return "split-half Jaccard " + "; ".join(parts) + f" (chance {chance:.3f})"


def stability_lines(table: pd.DataFrame) -> list[str]:
    """The report's section: what was done, then one row per language (Markdown)."""
    n, units = int(table["n"].iloc[0]), int(table["units"].iloc[0])
    boot = int(table["resamples"].iloc[0])
    header = ["language", "top: halves", "top: A vs all", "top: B vs all", "bottom: halves", "bottom: A vs all",
              "bottom: B vs all"] + (["top: resampled vs all (95%)", "bottom: resampled vs all (95%)"] if boot else [])
    lines = ["## Stability of the selection (split-half)\n",
             f"The texts were split into two halves (each language's positives and negatives halved, seeded) and the "
             f"top-{n} and bottom-{n} units selected on each half alone. Jaccard index |A ∩ B| / |A ∪ B| of the two "
             f"halves' sets, and of each half's with the selection on all texts; 1 = the same units, "
             f"{chance_jaccard(n, units):.3f} = two random sets of {n} among {units:,} units."
             + (f" Resampled: {boot} bootstrap draws over the texts, mean and 2.5-97.5 percentiles." if boot else "")
             + "\n",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for lang, rows in table.groupby("language", sort=False):
        cells = [lang]
        for side in SIDES:
            r = rows[rows.side == side].iloc[0]
            cells += [f"{r.jaccard_halves:.2f}", f"{r.jaccard_a_full:.2f}", f"{r.jaccard_b_full:.2f}"]
        if boot:
            for side in SIDES:
                r = rows[rows.side == side].iloc[0]
                cells.append(f"{r.jaccard_resampled_mean:.2f} ({r.jaccard_resampled_low:.2f}-{r.jaccard_resampled_high:.2f})")
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]
