"""Score generations by language: the paper's "probability of target language occurrence".

Works on any table with columns condition, target, text (plus any others, e.g. n_top), so
generations made elsewhere can be scored the same way. Rows of the shared no-intervention
condition have an empty target: they count for every language in `languages`.
"""

from __future__ import annotations

import pandas as pd

from langneurons.data.language_id import detect_languages


def detect(generations: pd.DataFrame) -> pd.DataFrame:
    """The table with a `detected` column (FastText lid.176; "" for empty text)."""
    return generations.assign(detected=detect_languages(generations["text"].fillna("").tolist()))


def _expand_shared(detected: pd.DataFrame, languages: list[str]) -> pd.DataFrame:
    shared = detected[detected["target"].fillna("") == ""]
    forced = detected[detected["target"].fillna("") != ""]
    copies = [shared.assign(target=lang) for lang in languages]
    return pd.concat([forced, *copies], ignore_index=True)


def target_rates(detected: pd.DataFrame, languages: list[str], keys: tuple[str, ...] = ("condition", "target")) -> pd.DataFrame:
    """Share of texts detected as the target language, per condition and target (percent)."""
    table = _expand_shared(detected, languages)
    keys = tuple(k for k in keys if k in table.columns)
    table = table.assign(hit=table["detected"] == table["target"])
    out = table.groupby(list(keys), sort=False).agg(n=("hit", "size"), target_rate=("hit", "mean")).reset_index()
    out["target_rate"] = 100 * out["target_rate"]
    return out


def language_distribution(detected: pd.DataFrame, keys: tuple[str, ...] = ("condition", "target")) -> pd.DataFrame:
    """Full detected-language distribution per condition and target (percent; "" = empty text)."""
    keys = tuple(k for k in keys if k in detected.columns)
    counts = detected.groupby([*keys, "detected"], sort=False).size().rename("count").reset_index()
    totals = counts.groupby(list(keys), sort=False)["count"].transform("sum")
    return counts.assign(percent=100 * counts["count"] / totals)


def score_generations(
    generations: pd.DataFrame, languages: list[str], keys: tuple[str, ...] = ("condition", "target", "n_top", "n_bottom")
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(target-language rates, detected-language distributions) for a generations table."""
    detected = detect(generations)
    return target_rates(detected, languages, keys), language_distribution(detected, keys)


def main_rates(rates: pd.DataFrame, n_per_side: int) -> pd.DataFrame:
    """One row per target language: rate with no intervention, top-only, bottom-only and both at N."""
    r = rates
    none = r[r.condition == "none"].set_index("target")["target_rate"].rename("none")
    both = r[(r.condition == "both") & (r.n_top == n_per_side)].set_index("target")["target_rate"].rename("both")
    top = r[r.condition == "top"].set_index("target")["target_rate"].rename("top")
    bottom = r[r.condition == "bottom"].set_index("target")["target_rate"].rename("bottom")
    table = pd.concat([none, top, bottom, both], axis=1)
    table["rise"] = table["both"] - table["none"]
    return table.rename_axis("target").reset_index()
