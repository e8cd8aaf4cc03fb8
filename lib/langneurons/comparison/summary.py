"""Notebook 07's summary: robust per-method numbers, a per-language table, and intervals on the forcing rates.

Why not the mean of percent changes: zeroing a language's units can multiply its perplexity by 65
(+6,466%) while another language's rises 3%; the arithmetic mean of such numbers is one language's
number divided by six. Perplexity changes multiply, so they are summarised on the log scale: the
mean log ratio log(ppl / ppl_base), turned back into a % change (the geometric mean of the ratios),
and the median, which no single language can pull. The arithmetic means stay beside them, named as
such, so the old headline can be traced.

Why intervals: each forcing rate is k of n sampled texts; at n = 100 a rate near 50% is only known
to about ±10 points, so rises are given with Newcombe's interval (base/proportions.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from langneurons.base.proportions import newcombe, wilson
from langneurons.control.deactivation import diagonal_summary

RATE_COLUMNS = ["method", "target", "n_units", "n", "none", "none_low", "none_high", "forced", "forced_low",
                "forced_high", "rise", "rise_low", "rise_high"]
PER_LANGUAGE_COLUMNS = ["language", "method", "n_units", "ppl_change_diagonal_%", "ppl_change_off_diagonal_median_%",
                        "log_ratio_diagonal", "log_ratio_off_diagonal_median", "share_of_diagonal_sum_%",
                        "rate_none", "rate_forced", "rise", "rise_low", "rise_high"]
SUMMARY_COLUMNS = ["method", "mean_units_per_language",
                   "ppl_change_diagonal_median_%", "ppl_change_off_diagonal_median_%",
                   "ppl_change_diagonal_geomean_%", "ppl_change_off_diagonal_geomean_%",
                   "ppl_change_diagonal_mean_%", "ppl_change_off_diagonal_mean_%",
                   "mean_rate_rise_points", "languages_rise_above_0", "languages_forced"]


def percent(log_ratio: np.ndarray | pd.Series | float) -> np.ndarray | pd.Series | float:
    """A log ratio log(ppl / ppl_base) as a % change of perplexity."""
    return 100 * (np.exp(log_ratio) - 1)


def with_intervals(rates: pd.DataFrame, n: int) -> pd.DataFrame:
    """The forcing rates (method, target, n_units, none, forced, rise; percent of n texts) with 95% Wilson
    intervals on both rates and Newcombe's interval on the rise (forced minus none), all in percent."""
    k_none, k_forced = rates["none"].to_numpy(float) * n / 100, rates["forced"].to_numpy(float) * n / 100
    if not (np.allclose(k_none, np.round(k_none), atol=1e-6) and np.allclose(k_forced, np.round(k_forced), atol=1e-6)):
        raise ValueError(f"forcing rates are not shares of n = {n} texts (generation.n_samples): wrong n?")
    k_none, k_forced = np.round(k_none), np.round(k_forced)
    table = rates.assign(n=n)
    table["none_low"], table["none_high"] = (100 * x for x in wilson(k_none, n))
    table["forced_low"], table["forced_high"] = (100 * x for x in wilson(k_forced, n))
    table["rise_low"], table["rise_high"] = (100 * x for x in newcombe(k_none, n, k_forced, n))
    return table[RATE_COLUMNS].reset_index(drop=True)


def _with_percent(deactivation: pd.DataFrame) -> pd.DataFrame:
    d = deactivation.assign(log_ratio=deactivation["log_ppl_change"].astype(float))
    return d.assign(percent=percent(d["log_ratio"]), diagonal=d["deactivated"] == d["evaluated"])


def per_language(deactivation: pd.DataFrame, rates: pd.DataFrame) -> pd.DataFrame:
    """One row per (language, method): perplexity change on the language's own texts when its units are
    zeroed, the median over the other languages' texts, both as log ratios too, the language's share of
    the method's summed diagonal % changes (what drives the arithmetic mean), and the forcing rates.

    `rates` is with_intervals' table; a language missing from one of the two tables gets NaN there."""
    d = _with_percent(deactivation)
    diag = d[d["diagonal"]].set_index(["deactivated", "method"])
    off = d[~d["diagonal"]].groupby(["deactivated", "method"], sort=False)[["percent", "log_ratio"]].median()
    ppl = pd.DataFrame({"n_units": diag["n_units"], "ppl_change_diagonal_%": diag["percent"],
                        "log_ratio_diagonal": diag["log_ratio"]})
    ppl["ppl_change_off_diagonal_median_%"] = off["percent"]
    ppl["log_ratio_off_diagonal_median"] = off["log_ratio"]
    method_sum = ppl.groupby(level="method")["ppl_change_diagonal_%"].transform("sum")
    ppl["share_of_diagonal_sum_%"] = 100 * ppl["ppl_change_diagonal_%"] / method_sum
    ppl.index = ppl.index.set_names(["language", "method"])
    forcing = rates.rename(columns={"target": "language", "none": "rate_none", "forced": "rate_forced"})
    forcing = forcing.set_index(["language", "method"])[["n_units", "rate_none", "rate_forced", "rise", "rise_low",
                                                         "rise_high"]]
    table = ppl.combine_first(forcing) if len(ppl) else forcing
    order = list(dict.fromkeys([*deactivation.get("deactivated", []), *rates.get("target", [])]))
    methods = list(dict.fromkeys([*deactivation.get("method", []), *rates.get("method", [])]))
    full = pd.MultiIndex.from_product([order, methods], names=["language", "method"])
    table = table.reindex(full).dropna(how="all").reset_index()
    return table.reindex(columns=PER_LANGUAGE_COLUMNS)


def method_summary(units: pd.DataFrame, deactivation: pd.DataFrame, rates: pd.DataFrame) -> pd.DataFrame:
    """One row per method: units per language; median, geometric-mean and arithmetic-mean perplexity change
    (%) where the zeroed language is the evaluated one (diagonal) and where it is not; the mean rise of the
    target-language rate (points) and in how many of the forced languages its 95% interval lies above 0.

    `units`: the matched units (method, language); `rates`: with_intervals' table."""
    d = _with_percent(deactivation) if len(deactivation) else pd.DataFrame(
        columns=["method", "deactivated", "evaluated", "log_ratio", "percent"])
    rows = []
    for method in dict.fromkeys(units["method"]):
        part = d[d["method"] == method]
        log_mean = diagonal_summary(part, "log_ratio", "mean")
        median = diagonal_summary(part, "percent", "median")
        mean = diagonal_summary(part, "percent", "mean")
        r = rates[rates["method"] == method]
        rows.append({"method": method,
                     "mean_units_per_language": units[units["method"] == method].groupby("language").size().mean(),
                     "ppl_change_diagonal_median_%": median["diagonal"],
                     "ppl_change_off_diagonal_median_%": median["off_diagonal"],
                     "ppl_change_diagonal_geomean_%": percent(log_mean["diagonal"]),
                     "ppl_change_off_diagonal_geomean_%": percent(log_mean["off_diagonal"]),
                     "ppl_change_diagonal_mean_%": mean["diagonal"], "ppl_change_off_diagonal_mean_%": mean["off_diagonal"],
                     "mean_rate_rise_points": r["rise"].astype(float).mean(),
                     "languages_rise_above_0": int((r["rise_low"] > 0).sum()), "languages_forced": len(r)})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _signed(x: float) -> str:
    return f"{x:+,.0f}%"


def claim_text(summary: pd.DataFrame) -> str:
    """The claims table's "this run" cell for Figure 10: medians first, the geometric mean beside them."""
    return "; ".join(
        f"{m}: zeroed, perplexity {_signed(r['ppl_change_diagonal_median_%'])} on its language vs "
        f"{_signed(r['ppl_change_off_diagonal_median_%'])} on others (medians; geometric means "
        f"{_signed(r['ppl_change_diagonal_geomean_%'])} vs {_signed(r['ppl_change_off_diagonal_geomean_%'])}); "
        f"forcing rise {r['mean_rate_rise_points']:+.0f} points, above 0 in {int(r['languages_rise_above_0'])} of "
        f"{int(r['languages_forced'])} languages (95% interval)"
        for m, r in summary.set_index("method").iterrows())


def report_lines(summary: pd.DataFrame, languages: pd.DataFrame, table: Callable[[pd.DataFrame, int], str]) -> list[str]:
    """The report's Figure 10 paragraphs: the per-method summary, then the per-language table that shows
    which language drives the arithmetic mean. `table` renders a DataFrame as Markdown (run/report's
    markdown_table; passed in because this layer may not import run/)."""
    lines = ["Per method: perplexity change when a language's units are zeroed, on its own held-out texts (diagonal) "
             "and on the other languages' (off-diagonal): the median and the geometric mean (mean log ratio "
             "ppl/ppl_base, as a % change), which no single language dominates, and the arithmetic mean for "
             "reference; then the mean rise of the target-language rate when the units are forced (points) and "
             "in how many languages its 95% interval (Newcombe) lies above 0:\n",
             table(summary, 1), ""]
    if len(languages):
        driver = languages.loc[languages["share_of_diagonal_sum_%"].idxmax()] if languages[
            "share_of_diagonal_sum_%"].notna().any() else None
        lines += ["Per language: the diagonal change, the median over the other languages, both as log ratios, the "
                  "language's share of its method's summed diagonal changes (the arithmetic mean's weight), and the "
                  "forcing rates (percent of the samples; rise with its 95% interval):\n",
                  table(languages, 2), ""]
        if driver is not None:
            lines.append(f"The largest single weight in an arithmetic mean: {driver['language']}'s "
                         f"{_signed(driver['ppl_change_diagonal_%'])} makes {driver['share_of_diagonal_sum_%']:.0f}% "
                         f"of {driver['method']}'s summed diagonal change.\n")
    return lines
