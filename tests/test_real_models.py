"""The side-by-side page of real models: built from figure tables, a verdict per claim and model."""

from __future__ import annotations

import pandas as pd

from langneurons.control.language_rates import main_rates
from langneurons.run.real_models import build_page, side_by_side


def _model(folder, none: float, both: float) -> None:
    folder.mkdir(parents=True)
    (folder / "README.md").write_text("# report\n")
    pd.DataFrame({"language": "de", "side": "top", "block": range(6), "count": [40, 2, 2, 2, 2, 52],
                  "depth": [b / 5 for b in range(6)]}).to_csv(folder / "fig1_layer_distribution.csv", index=False)
    rows = [{"condition": c, "target": lang, "n_top": t, "n_bottom": b, "n": 100, "hits": round(r), "target_rate": r}
            for lang in ("de", "fr") for c, r, t, b in (("none", none, 0, 0), ("both", both, 1000, 1000))]
    main_rates(pd.DataFrame(rows), 1000).to_csv(folder / "fig3_main_rates.csv", index=False)


def test_two_models_side_by_side_with_their_verdicts(tmp_path):
    _model(tmp_path / "gemma3-270m", none=2.0, both=80.0)
    _model(tmp_path / "smollm2-135m", none=5.0, both=9.0)
    table, holds, found = side_by_side(tmp_path, ["gemma3-270m", "smollm2-135m", "not-run"])
    assert found == ["gemma3-270m", "smollm2-135m"]
    rates = table.set_index("quantity").loc["target rate, none → forced (mean)"]
    assert rates["gemma3-270m"] == "2% → 80%" and rates["smollm2-135m"] == "5% → 9%"
    forcing = holds[holds.claim.str.startswith("Forcing a language's")].iloc[0]
    assert forcing["gemma3-270m"] == "yes" and forcing["smollm2-135m"] == "not shown"  # 5 -> 9 of 100: undecided
    page = build_page(tmp_path, ["gemma3-270m", "smollm2-135m"])
    assert "[smollm2-135m](smollm2-135m/README.md)" in page and "| not shown |" in page


def test_no_model_run_says_how_to_get_one(tmp_path):
    assert "make replicate PROFILE=gemma3-270m" in build_page(tmp_path, ["gemma3-270m"])
