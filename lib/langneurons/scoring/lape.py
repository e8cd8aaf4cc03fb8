"""LAPE: language activation probability entropy (Tang et al., ACL 2024), the second selection method.

Where AP asks "do this unit's responses rank L's texts first?", LAPE asks "is this FFN activation
unit switched on (> 0) for the tokens of few languages only?":
1. activation probability p[u, L] = tokens of L on which unit u is > 0 / tokens of L;
2. normalise each unit's probabilities over the languages into a distribution q[u, ·];
3. LAPE(u) = entropy of q[u, ·]: low = active for one or a few languages;
4. filters, as in the paper's code: a unit none of whose probabilities exceeds the `filter_rate`
   quantile of all probabilities is dismissed; of the rest, the `top_rate` share of all units with
   the lowest entropy is kept; each kept unit belongs to every language whose probability exceeds
   the `activation_bar_ratio` quantile. So a language's set has no fixed size, and a unit may
   belong to two languages (e.g. es and fr).
The quantile is the k-th smallest probability with k = round(count x rate), as the authors' code
takes it. Units whose probabilities are all zero have an undefined distribution: their entropy is
taken as the maximum (never selected).

Ties and precision, against the authors' code (RUCAIBox/Language-Specific-Neurons, identify.py):
- Units tied in entropy at the top_rate cut are taken lowest column first (a stable sort). The
  authors take the lowest entropies with torch.topk, which leaves the order of ties unspecified,
  so at an exact tie the two may keep different units; nowhere else do they differ.
- Probabilities, entropies and quantiles are float64 here. The authors divide float32 counts, which
  rounds counts above 2**24 (16.8M tokens of one language): two such counts one apart give the same
  probability there and different ones here.
- With activation_bar_ratio below filter_rate the authors' topk also returns units their filter
  dismissed; here a dismissed unit is never selected.
The counts themselves come from notebook 02 (lape_pass.py: each text alone, the `texts` protocol)
or from the protocol in selection.lape (lape_counting.py: the authors' `packed` windows, special
tokens skipped, or a corpus of LAPE's own).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from langneurons.data.textsets import TextSets
from langneurons.model.lape_pass import COUNTS_FILE, FFN_MATRIX_FILE, FFN_UNITS_FILE, TEXTS_COUNTS_FILE, load_lape_counts
from langneurons.base.atomic import write_csv, write_parquet
from langneurons.base.params import LapeParams

METHOD = "lape"


class LapeError(ValueError):
    """LAPE cannot be computed from these counts or params."""


def activation_probability(positive: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """p [units x languages] from counts [languages x units] and tokens [languages]."""
    if (tokens <= 0).any():
        raise LapeError("a language has no tokens counted: every target language needs texts in the activation pass")
    return (positive / tokens[:, None]).T


def lape_entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each unit's probabilities normalised over the languages; +inf where all are 0."""
    total = probs.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.where(total > 0, probs / total, 0.0)
        terms = np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0)
    entropy = -terms.sum(axis=1)
    entropy[total[:, 0] == 0] = np.inf
    return entropy


def kth_smallest(values: np.ndarray, rate: float) -> float:
    """The k-th smallest value, k = round(len x rate) (at least 1), as torch.kthvalue in the authors' code."""
    flat = values.ravel()
    k = min(max(int(round(len(flat) * rate)), 1), len(flat))
    return float(np.partition(flat, k - 1)[k - 1])


def lape_select(probs: np.ndarray, languages: list[str], params: LapeParams) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per unit: entropy, whether it passed the filter, and the languages it was selected for.

    Returns (table [units] with columns entropy, passes_filter, selected, and one bool column per
    language `for_<lang>`; the two thresholds). Ties in entropy are broken by unit column.
    """
    for key in ("top_rate", "filter_rate", "activation_bar_ratio"):
        value = getattr(params, key)
        if not 0 < value < 1:
            raise LapeError(f"lape.{key} = {value} must lie strictly between 0 and 1 (paper: "
                            f"{ {'top_rate': 0.01}.get(key, 0.95) })")
    n_units = probs.shape[0]
    entropy = lape_entropy(probs)
    filter_value = kth_smallest(probs, params.filter_rate)
    passes = (probs > filter_value).any(axis=1)
    ranked_entropy = np.where(passes, entropy, np.inf)
    n_keep = int(round(n_units * params.top_rate))
    order = np.lexsort((np.arange(n_units), ranked_entropy))[:n_keep]
    order = order[np.isfinite(ranked_entropy[order])]
    selected = np.zeros(n_units, dtype=bool)
    selected[order] = True
    bar = kth_smallest(probs, params.activation_bar_ratio)
    table = pd.DataFrame({"entropy": entropy, "passes_filter": passes, "selected": selected})
    for i, lang in enumerate(languages):
        table[f"p_{lang}"] = probs[:, i]
        table[f"for_{lang}"] = selected & (probs[:, i] > bar)
    return table, {"filter_value": filter_value, "activation_bar": bar, "kept_units": int(selected.sum())}


def language_sets(units: pd.DataFrame, table: pd.DataFrame, languages: list[str]) -> dict[str, pd.DataFrame]:
    """Each language's LAPE units (units table rows + entropy and its probability), lowest entropy first."""
    full = pd.concat([units.reset_index(drop=True), table.reset_index(drop=True)], axis=1)
    out = {}
    for lang in languages:
        rows = full[full[f"for_{lang}"]].sort_values(["entropy", "column"], kind="stable")
        rows = rows.drop(columns=[c for c in rows.columns if c.startswith("for_")])
        rows.insert(0, "rank", np.arange(len(rows)))
        rows.insert(0, "side", METHOD)
        out[lang] = rows.reset_index(drop=True)
    return out


def forcing_values(selection: pd.DataFrame, ffn_matrix: Path, positive_rows: np.ndarray, row_chunk: int = 64) -> pd.DataFrame:
    """Add on_p50 (median mean activation over the language's positive texts, duplicates kept) and on_p90.

    The matrix is read `row_chunk` whole rows at a time, keeping only the selected columns, so
    memory stays at a few rows whatever the model size."""
    out = selection.copy()
    if out.empty:
        return out.assign(on_p50=np.empty(0), on_p90=np.empty(0))
    columns = out["column"].to_numpy()
    unique, inverse = np.unique(positive_rows, return_inverse=True)
    matrix = np.load(ffn_matrix, mmap_mode="r")
    picked = np.concatenate([np.asarray(matrix[unique[i:i + row_chunk]])[:, columns]
                             for i in range(0, len(unique), row_chunk)]).astype(np.float64)
    values = picked[inverse]
    out["on_p50"] = np.nanmedian(values, axis=0)
    out["on_p90"] = np.nanpercentile(values, 90, axis=0)
    return out


def write_lape(folder: Path, table: pd.DataFrame, sets: dict[str, pd.DataFrame], thresholds: dict[str, float],
               per_language: dict[str, dict[str, float]] | None = None) -> pd.DataFrame:
    """lape/units.parquet (every FFN unit), lape/selection_<lang>.csv and lape/summary.csv; returns the summary.
    per_language: more columns of the summary (tokens counted, Jaccard against the `texts` counts)."""
    write_parquet(folder / "units.parquet", table)
    for lang, rows in sets.items():
        write_csv(folder / f"selection_{lang}.csv", rows)
    summary = pd.DataFrame([{"language": lang, "units": len(rows),
                             "shared_with_another_language": int((table.loc[rows["column"], [f"for_{o}" for o in sets if o != lang]].any(axis=1)).sum()) if len(rows) else 0,
                             "mean_entropy": float(rows["entropy"].mean()) if len(rows) else float("nan"),
                             **thresholds, **(per_language or {}).get(lang, {})} for lang, rows in sets.items()])
    write_csv(folder / "summary.csv", summary)
    return summary


def read_lape_selections(folder: Path, languages: list[str]) -> dict[str, pd.DataFrame]:
    """The LAPE sets written by the scoring stage."""
    missing = [lang for lang in languages if not (folder / f"selection_{lang}.csv").is_file()]
    if missing:
        raise FileNotFoundError(f"no LAPE selection for {missing} in {folder}: run notebook 03 with selection.method=lape or both")
    return {lang: pd.read_csv(folder / f"selection_{lang}.csv", keep_default_na=False,
                              dtype={"feeder_layer": str, "part": str}) for lang in languages}


def _select_from(path: Path, languages: list[str], params: LapeParams) -> tuple[pd.DataFrame, dict[str, float], np.ndarray]:
    """The selection table and thresholds from a counts file, and the tokens counted per language."""
    with np.load(path) as saved:
        positive, tokens, counted = saved["positive"], saved["tokens"], [str(x) for x in saved["languages"]]
    missing = [lang for lang in languages if lang not in counted]
    if missing:
        raise LapeError(f"{path} counted no tokens of {missing}: rerun notebook 02")
    idx = [counted.index(lang) for lang in languages]
    table, thresholds = lape_select(activation_probability(positive[idx], tokens[idx]), languages, params)
    return table, thresholds, tokens[idx]


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|a & b| / |a | b| of two boolean selections (1.0 when both are empty)."""
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def score_lape(activations_dir: Path, text_sets: TextSets, languages: list[str], params: LapeParams
               ) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], dict[str, float], dict[str, dict[str, float]]]:
    """LAPE from the counts of notebook 02: (every FFN unit's table, each language's set with its
    forcing values, the thresholds, per language the tokens counted and, when another protocol than
    `texts` counted, the Jaccard similarity of its set to the `texts` counts' set). The entropy runs
    over `languages` (the run's targets)."""
    load_lape_counts(activations_dir)  # a clear error when notebook 02 gathered no counts
    table, thresholds, tokens = _select_from(activations_dir / COUNTS_FILE, languages, params)
    per_language: dict[str, dict[str, float]] = {lang: {"tokens_counted": int(n)} for lang, n in zip(languages, tokens)}
    texts_counts = activations_dir / TEXTS_COUNTS_FILE
    if texts_counts.is_file():
        other, _, other_tokens = _select_from(texts_counts, languages, params)
        for lang, n in zip(languages, other_tokens):
            per_language[lang]["tokens_counted_texts_protocol"] = int(n)
            per_language[lang]["jaccard_vs_texts_protocol"] = jaccard(table[f"for_{lang}"].to_numpy(),
                                                                      other[f"for_{lang}"].to_numpy())
    units = pd.read_parquet(activations_dir / FFN_UNITS_FILE)
    sets = {}
    for lang, rows in language_sets(units, table, languages).items():
        labelled = text_sets.labelled(lang)
        sets[lang] = forcing_values(rows, activations_dir / FFN_MATRIX_FILE,
                                    labelled.loc[labelled["label"] == 1, "text_id"].to_numpy())
    return pd.concat([units, table], axis=1), sets, thresholds, per_language
