"""The report's claim table: each row computed from a run's figure tables, verdicts that can be no."""

from __future__ import annotations

import pandas as pd

from langneurons.control.language_rates import main_rates
from langneurons.run.claims import claims_table, verdict


def _rates(none: float, both: float, n: int = 100) -> pd.DataFrame:
    """fig3_5_target_rates for two languages: none, top, bottom, both at N = 1000, as main_rates reads them."""
    rows = []
    for lang in ("de", "fr"):
        for cond, rate, n_top, n_bottom in (("none", none, 0, 0), ("top", 50.0, 1000, 0), ("bottom", 20.0, 0, 1000),
                                            ("both", both, 1000, 1000)):
            rows.append({"condition": cond, "target": lang, "n_top": n_top, "n_bottom": n_bottom, "n": n,
                         "hits": round(rate * n / 100), "target_rate": rate})
    return pd.DataFrame(rows)


def _write(folder, depth_counts: list[int], overlap: float, none: float, both: float, n: int = 100) -> None:
    blocks = len(depth_counts)
    pd.DataFrame({"language": "de", "side": "top", "block": range(blocks), "count": depth_counts,
                  "depth": [b / (blocks - 1) for b in range(blocks)]}).to_csv(folder / "fig1_layer_distribution.csv", index=False)
    pd.DataFrame({"side": ["top", "top", "bottom"], "language_a": ["de", "de", "de"], "language_b": ["de", "fr", "fr"],
                  "shared": [10, 1, 0], "percent_of_n": [100.0, overlap, 0.0]}).to_csv(folder / "fig2_overlap.csv", index=False)
    main_rates(_rates(none, both, n), 1000).to_csv(folder / "fig3_main_rates.csv", index=False)


def test_claims_follow_the_tables(tmp_path):
    _write(tmp_path, [40, 2, 2, 2, 2, 52], overlap=1.0, none=2.0, both=80.0)
    table = claims_table(tmp_path, 1000).set_index("claim")
    assert list(table.columns) == ["paper", "this run", "holds"]
    verdicts = table["holds"].tolist()
    assert verdicts == ["yes", "yes", "yes"]  # first + last layers, < 5% overlap, a rise of 78 points
    assert "42% in the first third of the blocks (40% in the first block alone)" in table["this run"].iloc[0] and "2% → 80%" in table["this run"].iloc[2]
    assert "a uniform spread would put 33% in the first third, 17% in the first block, 33% in the last third" in table["this run"].iloc[0]


def test_a_claim_that_does_not_hold_says_no(tmp_path):
    _write(tmp_path, [2, 2, 40, 52, 2, 2], overlap=12.5, none=60.0, both=5.0)
    verdicts = claims_table(tmp_path, 1000)["holds"].tolist()
    assert verdicts == ["no", "no", "no"]  # the middle, 12.5% shared, the rate falls (intervals below 0)


def test_a_rise_the_intervals_do_not_decide_is_not_shown(tmp_path):
    # 5 -> 9 of 100 samples: a rise of 4 points, but its 95% interval holds 0
    _write(tmp_path, [40, 2, 2, 2, 2, 52], overlap=1.0, none=5.0, both=9.0)
    assert claims_table(tmp_path, 1000)["holds"].tolist()[2] == "not shown"
    # the same rates from 10 times the samples decide it
    _write(tmp_path, [40, 2, 2, 2, 2, 52], overlap=1.0, none=5.0, both=9.0, n=1000)
    assert claims_table(tmp_path, 1000)["holds"].tolist()[2] == "yes"


def test_verdicts_from_intervals():
    assert verdict([1, 2], [5, 6]) == "yes"
    assert verdict([1, -2], [5, 6]) == "partly (1 of 2)"
    assert verdict([-5, -6], [-1, -2]) == "no"
    assert verdict([-5, -6], [1, -2]) == "not shown"


def test_the_paper_column_comes_from_make_paper_numbers(tmp_path):
    _write(tmp_path, [40, 2, 2, 2, 2, 52], overlap=1.0, none=2.0, both=80.0)
    paper = tmp_path / "paper"
    paper.mkdir()
    pd.DataFrame({"target": ["en", "de", "fr"], "none": [51.0, 1.0, 5.9], "both": [79.0, 67.1, 66.4], "models": [8, 8, 8],
                  "none_n": 800, "none_low": [47.5, 0.5, 4.4], "none_high": [54.5, 2.0, 7.7], "both_n": 800,
                  "both_low": [76.0, 63.8, 63.0], "both_high": [81.7, 70.3, 69.6]}).to_csv(paper / "mean_rates.csv", index=False)
    row = claims_table(tmp_path, 1000, paper).iloc[2]
    assert "1-6% without, 66-67% with (de/fr/es/zh/ja, means of 8 models" in row["paper"]
    assert "make paper-numbers" in claims_table(tmp_path, 1000).iloc[2]["paper"]  # no paper folder: says how to get it


def test_rows_of_stages_not_run_are_left_out(tmp_path):
    assert claims_table(tmp_path, 1000).empty
