"""The report's claim table: each row computed from a run's figure tables, verdicts that can be no."""

from __future__ import annotations

import pandas as pd

from langneurons.run.claims import claims_table


def _write(folder, depth_counts: list[int], overlap: float, none: float, both: float) -> None:
    blocks = len(depth_counts)
    pd.DataFrame({"language": "de", "side": "top", "block": range(blocks), "count": depth_counts,
                  "depth": [b / (blocks - 1) for b in range(blocks)]}).to_csv(folder / "fig1_layer_distribution.csv", index=False)
    pd.DataFrame({"side": ["top", "top", "bottom"], "language_a": ["de", "de", "de"], "language_b": ["de", "fr", "fr"],
                  "shared": [10, 1, 0], "percent_of_n": [100.0, overlap, 0.0]}).to_csv(folder / "fig2_overlap.csv", index=False)
    pd.DataFrame({"target": ["de", "fr"], "none": [none, none], "top": [50.0, 50.0], "bottom": [20.0, 20.0],
                  "both": [both, both], "rise": [both - none] * 2}).to_csv(folder / "fig3_main_rates.csv", index=False)


def test_claims_follow_the_tables(tmp_path):
    _write(tmp_path, [40, 2, 2, 2, 2, 52], overlap=1.0, none=2.0, both=80.0)
    table = claims_table(tmp_path, 1000).set_index("claim")
    assert list(table.columns) == ["paper", "this run", "holds"]
    verdicts = table["holds"].tolist()
    assert verdicts == ["yes", "yes", "yes"]  # first + last layers, < 5% overlap, a rise of 78 points
    assert "42% in the first third of the blocks (40% in the first block alone)" in table["this run"].iloc[0] and "2% → 80%" in table["this run"].iloc[2]


def test_a_claim_that_does_not_hold_says_no(tmp_path):
    _write(tmp_path, [2, 2, 40, 52, 2, 2], overlap=12.5, none=5.0, both=5.0)
    verdicts = claims_table(tmp_path, 1000)["holds"].tolist()
    assert verdicts == ["no", "no", "no"]  # the middle, 12.5% shared, no rise


def test_rows_of_stages_not_run_are_left_out(tmp_path):
    assert claims_table(tmp_path, 1000).empty
