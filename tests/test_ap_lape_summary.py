"""Notebook 07's summary (comparison/summary.py): robust per-method numbers checked by hand on a small
table, the per-language table, the intervals on the forcing rates, Figure 10 drawn with them, and
LAPE's protocol described once in the report's sentence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from langneurons.base.params import load_params
from langneurons.comparison.figures import plot_effects
from langneurons.comparison.summary import (PER_LANGUAGE_COLUMNS, RATE_COLUMNS, SUMMARY_COLUMNS, claim_text, method_summary,
                                            per_language, report_lines, with_intervals)
from langneurons.control.deactivation import diagonal_summary
from langneurons.model.lape_counting import describe

# Ratios ppl / ppl_base of method m with the units of the row language zeroed, on each column language's texts:
# diagonal 2, 4, 64 (+100%, +300%, +6,300%), off-diagonal 1, 1.1 and 1.21 (+0%, +10%, +21%).
RATIOS = {("a", "a"): 2.0, ("a", "b"): 1.0, ("a", "c"): 1.1,
          ("b", "a"): 1.0, ("b", "b"): 4.0, ("b", "c"): 1.21,
          ("c", "a"): 1.1, ("c", "b"): 1.21, ("c", "c"): 64.0}
SIZES = {"a": 2, "b": 3, "c": 1}


def _deactivation() -> pd.DataFrame:
    rows = [{"method": "m", "deactivated": z, "evaluated": e, "log_ppl_change": np.log(r), "n_units": SIZES[z]}
            for (z, e), r in RATIOS.items()]
    return pd.DataFrame(rows)


def _rates() -> pd.DataFrame:
    """Forcing rates of m for a and b (c has none: lid.176 could not measure it), percent of 100 texts."""
    return pd.DataFrame({"method": ["m", "m"], "target": ["a", "b"], "n_units": [2, 3], "none": [0.0, 50.0],
                         "forced": [50.0, 50.0], "rise": [50.0, 0.0]})


def _units() -> pd.DataFrame:
    return pd.DataFrame({"method": "m", "language": [lang for lang, k in SIZES.items() for _ in range(k)]})


def test_the_summary_takes_medians_and_geometric_means_by_hand():
    """Diagonal +100/+300/+6,300%: median +300%, geometric mean (2·4·64)^(1/3) = 8 -> +700%, while the
    arithmetic mean (+2,233%) is mostly the one +6,300%. Off-diagonal 0, 0, 10, 10, 21, 21%: median 10%,
    geometric mean (1.1² · 1.21²)^(1/6) = 1.1 -> +10%, mean 10.33%."""
    s = method_summary(_units(), _deactivation(), with_intervals(_rates(), 100)).set_index("method").loc["m"]
    assert list(method_summary(_units(), _deactivation(), with_intervals(_rates(), 100)).columns) == SUMMARY_COLUMNS
    assert s["mean_units_per_language"] == pytest.approx(2.0)
    assert s["ppl_change_diagonal_median_%"] == pytest.approx(300.0)
    assert s["ppl_change_off_diagonal_median_%"] == pytest.approx(10.0)
    assert s["ppl_change_diagonal_geomean_%"] == pytest.approx(700.0)
    assert s["ppl_change_off_diagonal_geomean_%"] == pytest.approx(10.0)
    assert s["ppl_change_diagonal_mean_%"] == pytest.approx(6700 / 3)
    assert s["ppl_change_off_diagonal_mean_%"] == pytest.approx(62 / 6)
    assert s["mean_rate_rise_points"] == pytest.approx(25.0)
    # a: 0 -> 50 of 100 rises beyond chance; b: 50 -> 50 does not
    assert (s["languages_rise_above_0"], s["languages_forced"]) == (1, 2)
    # the deactivation module's own summary: the mean log ratio is the log of the geometric mean
    log = diagonal_summary(_deactivation())
    assert log["diagonal"] == pytest.approx(np.log(8)) and log["off_diagonal"] == pytest.approx(np.log(1.1))
    assert diagonal_summary(_deactivation(), how="median")["diagonal"] == pytest.approx(np.log(4))


def test_the_per_language_table_shows_which_language_drives_the_mean():
    table = per_language(_deactivation(), with_intervals(_rates(), 100))
    assert list(table.columns) == PER_LANGUAGE_COLUMNS
    assert table[["language", "method"]].values.tolist() == [["a", "m"], ["b", "m"], ["c", "m"]]
    t = table.set_index("language")
    assert t["ppl_change_diagonal_%"].tolist() == pytest.approx([100.0, 300.0, 6300.0])
    # median of each row without its diagonal: a (0, 10), b (0, 21), c (10, 21)
    assert t["ppl_change_off_diagonal_median_%"].tolist() == pytest.approx([5.0, 10.5, 15.5])
    assert t["log_ratio_diagonal"].tolist() == pytest.approx(np.log([2.0, 4.0, 64.0]))
    assert t.loc["a", "log_ratio_off_diagonal_median"] == pytest.approx(np.log(1.1) / 2)
    assert t["share_of_diagonal_sum_%"].tolist() == pytest.approx([100 / 67, 300 / 67, 6300 / 67])
    assert t["n_units"].tolist() == [2, 3, 1]
    assert t.loc["a", ["rate_none", "rate_forced", "rise"]].tolist() == [0.0, 50.0, 50.0]
    assert t.loc[["c"], ["rate_none", "rate_forced", "rise", "rise_low", "rise_high"]].isna().all(axis=None)  # not measured
    # a language with forcing rates but no held-out texts keeps its rates, NaN perplexities
    only_forced = per_language(_deactivation()[lambda d: d.deactivated != "a"], with_intervals(_rates(), 100))
    a = only_forced.set_index("language").loc["a"]
    assert np.isnan(a["ppl_change_diagonal_%"]) and a["rate_forced"] == 50.0


def test_forcing_rates_get_wilson_intervals_and_a_newcombe_interval_on_the_rise():
    """Wilson at 50 of 100: 40.38-59.62%; at 0 of 100: 0-3.70% (textbook values). The rise of a
    (0 -> 50) by Newcombe: 50 - sqrt((50 - 40.38)² + 3.70²) to 50 + (59.62 - 50)."""
    table = with_intervals(_rates(), 100)
    assert list(table.columns) == RATE_COLUMNS and table["n"].eq(100).all()
    a, b = table.iloc[0], table.iloc[1]
    assert (a["none_low"], a["none_high"]) == pytest.approx((0.0, 3.699), abs=1e-3)
    assert (a["forced_low"], a["forced_high"]) == pytest.approx((40.383, 59.617), abs=1e-3)
    assert a["rise_low"] == pytest.approx(50 - np.hypot(50 - 40.383, 3.699), abs=1e-3)
    assert a["rise_high"] == pytest.approx(59.617, abs=1e-3)
    assert b["rise_low"] < 0 < b["rise_high"]  # no rise: the interval holds 0
    with pytest.raises(ValueError, match="not shares of n = 7"):
        with_intervals(_rates(), 7)  # 50% of 7 texts is not a count: the wrong n


def test_report_lines_and_claim_name_the_robust_numbers():
    rates = with_intervals(_rates(), 100)
    summary = method_summary(_units(), _deactivation(), rates)
    text = claim_text(summary)
    assert text.startswith("m: zeroed, perplexity +300% on its language vs +10% on others (medians; geometric means "
                           "+700% vs +10%)") and "above 0 in 1 of 2 languages" in text
    lines = report_lines(summary, per_language(_deactivation(), rates), lambda df, digits: f"<{len(df)} rows>")
    assert "<1 rows>" in lines and "<3 rows>" in lines
    assert any("c's +6,300% makes 94% of m's summed diagonal change" in line for line in lines)


def test_figure_10_draws_with_and_without_intervals():
    deact = pd.concat([_deactivation(), _deactivation().assign(method="n")], ignore_index=True)
    rates = pd.concat([_rates(), _rates().assign(method="n")], ignore_index=True)
    for table in (rates, with_intervals(rates, 100)):
        fig = plot_effects(deact, table, "test")
        assert len(fig.axes) == 4  # two heatmaps, the rates, one shared colour bar
    heat = fig.axes[0]
    assert "6.3k" in [t.get_text() for t in heat.texts]  # labels in %, shortened


def test_lape_protocol_is_named_once_in_the_report_sentence():
    lape = load_params("tiny").selection.lape
    words = describe(lape)
    assert not words.startswith(("texts", "packed")) and "each text alone" in words
    assert describe(lape, named=True) == f"{lape.counting}: {words}"
    sentence = f"LAPE counted by the `{lape.counting}` protocol ({words})"  # report._lape_counting's wording
    assert f"({lape.counting}:" not in sentence and sentence.count(f"`{lape.counting}`") == 1
    packed = describe(load_params("tiny", ["selection.lape.counting=packed", "selection.lape.window=64"]).selection.lape)
    assert "packed" not in packed and "windows of 64" in packed and "LAPE authors" in packed
