"""Expertise scoring: per language, the AP of every unit and the statistics used to force it.

The [texts x units] matrix is read in column chunks straight from its file, so peak memory
depends on the chunk size, not on the model size. Each chunk is scored for every language at once:
the languages' sets share texts, so each unit's responses are sorted once over the texts any set
uses, and each set enters as weights (how often it lists a text as positive or negative).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from langneurons.model.activations import matrix_shape, read_columns
from langneurons.scoring.ap import STATS, expertise_sets
from langneurons.base.atomic import write_csv, write_parquet
from langneurons.base.paths import RunLayout
from langneurons.data.textsets import TextSets

STAT_COLUMNS = STATS


class SelectionError(ValueError):
    """N cannot be selected from this model's units."""


@dataclass(frozen=True)
class LabelledRows:
    """One language's set as rows of the activation matrix (duplicates kept) and 0/1 labels."""

    rows: np.ndarray
    labels: np.ndarray


def labelled_rows(text_sets: TextSets, target: str, kept: np.ndarray) -> LabelledRows:
    """Rows of `target`'s set whose text was kept (not longer than seq_len)."""
    df = text_sets.labelled(target)
    df = df[kept[df["text_id"].to_numpy()]]
    labels = df["label"].to_numpy().astype(bool)
    if labels.all() or not labels.any():
        raise ValueError(f"language '{target}' has no positive or no negative texts left after dropping long texts")
    return LabelledRows(df["text_id"].to_numpy(dtype=np.int64, copy=True), labels)


@dataclass(frozen=True)
class SetWeights:
    """All sets over the texts they use: set s lists texts[t] pos[s, t] times as a positive, neg[s, t] as a negative."""

    texts: np.ndarray  # matrix rows used by any set, ascending
    pos: np.ndarray  # int64 [sets, texts]
    neg: np.ndarray


def set_weights(sets: dict[str, LabelledRows]) -> SetWeights:
    """The sets as counts over their unique texts (duplicated rows become weights 2, 3, ...)."""
    texts = np.unique(np.concatenate([lr.rows for lr in sets.values()]))
    pos, neg = np.zeros((2, len(sets), len(texts)), dtype=np.int64)
    for i, lr in enumerate(sets.values()):
        at = np.searchsorted(texts, lr.rows)
        pos[i] = np.bincount(at[lr.labels], minlength=len(texts))
        neg[i] = np.bincount(at[~lr.labels], minlength=len(texts))
    return SetWeights(texts, pos, neg)


def score_block(block: np.ndarray, weights: SetWeights, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Statistics (float64 [sets, units]) of one column chunk of the matrix (all its rows) for every set."""
    if len(weights.texts) < len(block):  # rows no set uses (or dropped as NaN) are not sorted
        block = block[weights.texts]
    x = torch.from_numpy(block).to(device)
    if x.dtype == torch.float16 and x.device.type != "cpu":
        x = x.float()  # exact: every float16 is a float32, ties preserved
    return expertise_sets(x, torch.from_numpy(weights.pos).to(device), torch.from_numpy(weights.neg).to(device))


def score_units(
    matrix_path: Path, sets: dict[str, LabelledRows], unit_chunk: int, device: torch.device | str = "cpu"
) -> dict[str, pd.DataFrame]:
    """Per language: a [units] table of ap, on_p50, on_p90, off_mean, off_p50 (float64).

    Reads `unit_chunk` columns of the stored matrix at a time (see activations.read_columns) and
    scores them for all languages from one sort of each unit's responses (ap.expertise_sets).
    """
    n_units = matrix_shape(matrix_path)[1]
    weights = set_weights(sets)
    out = {lang: {c: np.empty(n_units, dtype=np.float64) for c in STAT_COLUMNS} for lang in sets}
    for start in tqdm(range(0, n_units, unit_chunk), desc="AP", unit="chunk"):
        stop = min(start + unit_chunk, n_units)
        stats = score_block(read_columns(matrix_path, start, stop), weights, device)
        for col, values in stats.items():
            for i, lang in enumerate(sets):
                out[lang][col][start:stop] = values[i].cpu().numpy()
    return {lang: pd.DataFrame(cols) for lang, cols in out.items()}


def scores_table(units: pd.DataFrame, stats: pd.DataFrame) -> pd.DataFrame:
    """Units table joined with their statistics (row i = matrix column i)."""
    return pd.concat([units.reset_index(drop=True), stats.reset_index(drop=True)], axis=1)


def check_n_per_side(n_per_side: int, n_units: int) -> None:
    """N top + N bottom units must exist (checked before scoring, so nothing is computed in vain)."""
    if n_per_side < 1 or 2 * n_per_side > n_units:
        raise SelectionError(
            f"scoring.n_per_side={n_per_side} needs {2 * n_per_side} units but the model has {n_units}: "
            f"use 1 <= scoring.n_per_side <= {n_units // 2}"
        )


def select_units(scores: pd.DataFrame, n_per_side: int) -> pd.DataFrame:
    """Top-N (highest AP: fire for the language) and bottom-N (lowest AP: fire for all but it).

    Ties are broken by matrix column (stable sort), so the selection is deterministic.
    """
    check_n_per_side(n_per_side, len(scores))
    ap = scores["ap"].to_numpy()
    top = np.argsort(-ap, kind="stable")[:n_per_side]
    bottom = np.argsort(ap, kind="stable")[:n_per_side]
    parts = []
    for side, idx in (("top", top), ("bottom", bottom)):
        part = scores.iloc[idx].copy()
        part.insert(0, "rank", np.arange(n_per_side))
        part.insert(0, "side", side)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def boundary_ties(scores: pd.DataFrame, n_per_side: int) -> dict[str, int]:
    """How many units share the AP of the N-th top and N-th bottom unit.

    A width above 1 means the cut-off is decided by tie-breaking (and on another machine by float
    noise), which is worth reporting next to the selection.
    """
    ap = np.sort(scores["ap"].to_numpy())
    return {
        "top": int((ap == ap[-n_per_side]).sum()),
        "bottom": int((ap == ap[n_per_side - 1]).sum()),
    }


def threshold_counts(scores_by_lang: dict[str, pd.DataFrame], thresholds: list[float]) -> pd.DataFrame:
    """Units with AP > t for each threshold t, per language (what the original code records)."""
    return pd.DataFrame(
        {f"ap>{t:g}": [int((s["ap"] > t).sum()) for s in scores_by_lang.values()] for t in thresholds},
        index=pd.Index(list(scores_by_lang), name="language"),
    )


def score_language_sets(
    matrix_path: Path, units: pd.DataFrame, text_sets: TextSets, languages: list[str], unit_chunk: int,
    device: torch.device | str = "cpu",
) -> dict[str, pd.DataFrame]:
    """Scores table (units + ap, on_p50, ...) per language; texts dropped as too long are left out."""
    kept = ~np.isnan(read_columns(matrix_path, 0, 1)[:, 0])  # dropped texts have NaN rows
    sets = {lang: labelled_rows(text_sets, lang, kept) for lang in languages}
    stats = score_units(matrix_path, sets, unit_chunk, device)
    return {lang: scores_table(units, stats[lang]) for lang in languages}


def write_scores(
    scores: dict[str, pd.DataFrame], n_per_side: int, thresholds: list[float], layout: RunLayout
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Save scores/<lang>.parquet and selection/<lang>.csv; return a per-language summary and AP counts."""
    rows = []
    for lang, table in scores.items():
        selection = select_units(table, n_per_side)
        write_parquet(layout.scores / f"{lang}.parquet", table)
        write_csv(layout.selection / f"{lang}.csv", selection)
        ties = boundary_ties(table, n_per_side)
        top, bottom = selection[selection.side == "top"], selection[selection.side == "bottom"]
        rows.append({
            "language": lang, "units": len(table), "max_ap": table["ap"].max(), "min_ap": table["ap"].min(),
            "top_cutoff_ap": top["ap"].iloc[-1], "bottom_cutoff_ap": bottom["ap"].iloc[-1],
            "top_tie_width": ties["top"], "bottom_tie_width": ties["bottom"],
            "selected_share_%": round(100 * 2 * n_per_side / len(table), 3),
        })
    summary = pd.DataFrame(rows).set_index("language")
    counts = threshold_counts(scores, thresholds)
    write_csv(layout.scores / "summary.csv", summary.reset_index())
    write_csv(layout.scores / "ap_thresholds.csv", counts.reset_index())
    return summary, counts


def as_original_expertise(scores: pd.DataFrame, concept: str) -> pd.DataFrame:
    """One language's scores in the layout of the original code's expertise.csv.

    The original names each response `<module path>:0` (the module's first output), orders the
    layers by sorted name (so `...layers.10...` precedes `...layers.2...`), stores float32 values and
    numbers the rows as `uuid`. This makes both tables comparable row by row.
    """
    df = scores.assign(layer=scores["layer"] + ":0")
    df = df.sort_values(["layer", "unit"], kind="stable").reset_index(drop=True)
    out = df[["ap", "off_mean", "off_p50", "on_p50", "on_p90"]].astype(np.float32)
    out["layer"] = df["layer"]
    out["unit"] = df["unit"].astype(np.uint32)
    out["uuid"] = np.arange(len(df))
    out["concept"] = concept
    out["group"] = "sense"
    return out


def read_scores(layout: RunLayout, languages: list[str]) -> dict[str, pd.DataFrame]:
    """Scores tables written by the scoring stage."""
    missing = [lang for lang in languages if not (layout.scores / f"{lang}.parquet").is_file()]
    if missing:
        raise FileNotFoundError(f"no scores for {missing} in {layout.scores}: run notebook 03 (scoring) first")
    return {lang: pd.read_parquet(layout.scores / f"{lang}.parquet") for lang in languages}


def read_score_summary(layout: RunLayout) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-language summary and AP threshold counts written by write_scores."""
    summary = pd.read_csv(layout.scores / "summary.csv").set_index("language")
    return summary, pd.read_csv(layout.scores / "ap_thresholds.csv").set_index("language")


def read_selections(layout: RunLayout, languages: list[str]) -> tuple[dict[str, pd.DataFrame], int]:
    """Selections written by the scoring stage, and the model's number of blocks."""
    missing = [lang for lang in languages if not (layout.selection / f"{lang}.csv").is_file()]
    if missing:
        raise FileNotFoundError(f"no selection for {missing} in {layout.selection}: run notebook 03 (scoring) first")
    meta = json.loads((layout.activations / "meta.json").read_text())
    return {lang: pd.read_csv(layout.selection / f"{lang}.csv") for lang in languages}, int(meta["n_blocks"])
