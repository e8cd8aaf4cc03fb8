"""make check-figures: a run's figure tables against the committed ones, same / within tolerance / differs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from langneurons.run import check_figures
from langneurons.run.check_figures import compare, main

RATES = pd.DataFrame({"target": ["en", "de"], "none": [14.0, 19.0], "top": [69.0, 63.0], "bottom": [21.0, 47.0],
                      "both": [75.0, 82.0], "rise": [61.0, 63.0]})


def test_same_within_tolerance_and_differs():
    assert compare("fig3_main_rates.csv", RATES, RATES.copy(), 230).status == "same"
    moved = RATES.assign(both=[76.0, 82.0], rise=[62.0, 63.0])  # one more text in English out of 100
    verdict = compare("fig3_main_rates.csv", moved, RATES, 230)
    assert verdict.status == "within tolerance" and "by 1" in verdict.detail
    far = RATES.assign(both=[60.0, 82.0])
    verdict = compare("fig3_main_rates.csv", far, RATES, 230)
    assert verdict.status == "differs" and verdict.detail == "both by 15, tolerance 5"
    assert compare("fig3_main_rates.csv", RATES.assign(target=["en", "fr"]), RATES, 230).status == "differs"
    assert compare("fig3_main_rates.csv", RATES.iloc[:1], RATES, 230).status == "differs"


def test_tolerances_of_ap_and_counts():
    ap = pd.DataFrame({"language": ["de"], "max_ap": [0.9], "top_tie_width": [1]})
    assert compare("fig8_ap_summary.csv", ap.assign(max_ap=0.9 + 5e-7), ap, 230).status == "within tolerance"
    assert compare("fig8_ap_summary.csv", ap.assign(max_ap=0.9 + 5e-6), ap, 230).status == "differs"
    dist = pd.DataFrame({"language": ["de"], "side": ["top"], "block": [0], "count": [100], "depth": [0.0]})
    assert compare("fig1_layer_distribution.csv", dist.assign(count=104), dist, 230).status == "within tolerance"  # 2% of 230
    assert compare("fig1_layer_distribution.csv", dist.assign(count=105), dist, 230).status == "differs"
    assert compare("fig1_layer_distribution.csv", dist.assign(depth=0.5), dist, 230).status == "differs"  # exact column


def test_example_texts_are_not_numbers():
    ex = pd.DataFrame({"condition": ["none", "both"], "text": ["a b", "c d"]})
    verdict = compare("fig7_examples.csv", ex.assign(text=["a b", "x"]), ex, 230)
    assert verdict.status == "within tolerance" and "1 of 2 example texts differ" in verdict.detail


def test_cli_lines_and_exit_code(tmp_path: Path, monkeypatch, capsys):
    figures, runs = tmp_path / "figs", tmp_path / "runs"
    (figures / "tiny").mkdir(parents=True)
    (runs / "tiny" / "stamps").mkdir(parents=True)
    for stage in ("03_scoring", "05_intervention"):  # 04 and 06 have not run
        (runs / "tiny" / "stamps" / f"{stage}.json").write_text("{}")
    committed = {"fig3_main_rates.csv": RATES.to_csv(index=False),
                 "fig2_overlap.csv": "side,language_a,language_b,shared,percent_of_n\ntop,de,de,230,100.0\n"}
    monkeypatch.setattr(check_figures, "committed_text", lambda path: committed.get(path.name))
    RATES.assign(both=[76.0, 82.0]).to_csv(figures / "tiny" / "fig3_main_rates.csv", index=False)
    (figures / "tiny" / "fig3_5_target_rates.csv").write_text("condition,target,target_rate\nnone,de,10.0\n")
    args = ["--profile", "tiny", "--set", f"figures_root={figures} output_root={runs}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "fig3_main_rates.csv" in out and "within tolerance (largest: both by 1, tolerance 5)" in out
    assert "fig2_overlap.csv" in out and "not run" in out
    assert any(line.startswith("fig3_5_target_rates.csv") and " new " in line for line in out.splitlines())
    assert "figures vs committed: 1 within tolerance, 1 not run, 1 new" in out
    RATES.assign(both=[40.0, 82.0]).to_csv(figures / "tiny" / "fig3_main_rates.csv", index=False)
    assert main(args) == 1
    assert "differs (both by 35, tolerance 5)" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(check_figures.TOLERANCES))
def test_every_tolerance_names_a_table_its_notebook_writes(name: str):
    """The registry's figure constant appears in the notebook of the stage the registry names."""
    from langneurons.run.stages import STAGE_OF_FIGURE, Fig

    notebooks = Path(__file__).resolve().parents[1] / "notebooks"
    constant = next(k for k, v in vars(Fig).items() if v == name)
    assert f"Fig.{constant}" in (notebooks / f"{STAGE_OF_FIGURE[name]}.ipynb").read_text(), f"no notebook writes {name}"
