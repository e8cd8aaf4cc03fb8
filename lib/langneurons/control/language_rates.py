"""Score generations by language: the paper's "probability of target language occurrence".

Works on any table with columns condition, target, text (plus any others, e.g. n_top), so
generations made elsewhere can be scored the same way. Rows of the shared no-intervention
condition have an empty target: they count for every language in `languages`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from langneurons.base.proportions import newcombe, wilson
from langneurons.data.language_id import detect_languages


def detect(generations: pd.DataFrame) -> pd.DataFrame:
    """The table with a `detected` column (FastText lid.176; "" for empty text)."""
    return generations.assign(detected=detect_languages(generations["text"].fillna("").tolist()))


def _expand_shared(detected: pd.DataFrame, languages: list[str]) -> pd.DataFrame:
    shared = detected[detected["target"].fillna("") == ""]
    forced = detected[detected["target"].fillna("") != ""]
    copies = [shared.assign(target=lang) for lang in languages]
    return pd.concat([forced, *copies], ignore_index=True)


def with_interval(table: pd.DataFrame, hits: str = "hits", n: str = "n", prefix: str = "") -> pd.DataFrame:
    """The table with <prefix>low and <prefix>high: the 95% Wilson interval of hits / n, in percent."""
    low, high = wilson(table[hits].to_numpy(), table[n].to_numpy())
    return table.assign(**{f"{prefix}low": 100 * low, f"{prefix}high": 100 * high})


def target_rates(detected: pd.DataFrame, languages: list[str], keys: tuple[str, ...] = ("condition", "target")) -> pd.DataFrame:
    """Share of texts detected as the target language, per condition and target (percent), with the
    number of texts n, of hits, and the 95% Wilson interval (low, high) of the rate."""
    table = _expand_shared(detected, languages)
    keys = tuple(k for k in keys if k in table.columns)
    table = table.assign(hit=table["detected"] == table["target"])
    out = table.groupby(list(keys), sort=False).agg(n=("hit", "size"), hits=("hit", "sum")).reset_index()
    out.insert(len(out.columns), "target_rate", 100 * out["hits"] / out["n"])
    return with_interval(out)


def flag_all_units(rates: pd.DataFrame, n_units: int) -> pd.DataFrame:
    """The rates with `all_units`: True where a `both` condition forces every unit of the model (the
    N sweep's last point on a small model), whose rate is not a language effect."""
    everything = (rates["condition"] == "both") & (rates["n_top"] + rates["n_bottom"] >= n_units - n_units % 2)
    return rates.assign(all_units=everything)


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


def rise_interval(k_from: np.ndarray, n_from: np.ndarray, k_to: np.ndarray, n_to: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """95% Newcombe interval (percent points) of the rise from one rate to another (to minus from)."""
    low, high = newcombe(k_from, n_from, k_to, n_to)
    return 100 * low, 100 * high


def main_rates(rates: pd.DataFrame, n_per_side: int) -> pd.DataFrame:
    """One row per target language: rate with no intervention, top-only, bottom-only and both at N
    (and `random`: as many units drawn at random from the same blocks, where the run has it), the
    rise both - none, and 95% intervals: Wilson for the rates, Newcombe for the rises.

    `over_random` is both - random: how much more the language's units steer than random units."""
    r = rates if "hits" in rates.columns else rates.assign(hits=(rates["target_rate"] * rates["n"] / 100).round().astype(int))
    picks = {"none": r.condition == "none", "top": r.condition == "top", "bottom": r.condition == "bottom",
             "both": (r.condition == "both") & (r.n_top == n_per_side), "random": r.condition == "random"}
    sides = {name: r[mask].set_index("target")[["target_rate", "hits", "n"]] for name, mask in picks.items() if mask.any()}
    table = pd.concat([side["target_rate"].rename(name) for name, side in sides.items()], axis=1).rename_axis("target")
    if "both" in sides and "none" in sides:
        table["rise"] = table["both"] - table["none"]
    if "both" in sides and "random" in sides:
        table["over_random"] = table["both"] - table["random"]
    for name, side in sides.items():
        side = side.reindex(table.index)
        low, high = wilson(side["hits"].to_numpy(), side["n"].to_numpy())
        table[f"{name}_low"], table[f"{name}_high"] = 100 * low, 100 * high
    for name, start, end in (("rise", "none", "both"), ("over_random", "random", "both")):
        if start in sides and end in sides:
            a, b = sides[start].reindex(table.index), sides[end].reindex(table.index)
            table[f"{name}_low"], table[f"{name}_high"] = rise_interval(a["hits"].to_numpy(), a["n"].to_numpy(),
                                                                        b["hits"].to_numpy(), b["n"].to_numpy())
    return table.reset_index()
