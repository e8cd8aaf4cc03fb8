"""The generations scorer on a small hand-made table."""

import pandas as pd
import pytest

from langneurons.control.language_rates import main_rates, score_generations

EN = "The weather was lovely, so we had lunch in the garden with our neighbours."
DE = "Das Wetter war schön, also haben wir mit den Nachbarn im Garten zu Mittag gegessen."
JA = "天気が良かったので、近所の人たちと庭で昼ご飯を食べました。"


def test_rates_and_distribution_from_hand_made_table():
    table = pd.DataFrame({
        "condition": ["none"] * 4 + ["both"] * 4 + ["both"] * 2,
        "target": [""] * 4 + ["de"] * 4 + ["ja"] * 2,
        "n_top": [0] * 4 + [5] * 4 + [5] * 2,
        "n_bottom": [0] * 4 + [5] * 4 + [5] * 2,
        "text": [EN, EN, DE, "", DE, DE, "Das\\nist gut, danke sehr.".replace("\\n", "\n"), EN, JA, ""],
    })
    rates, dist = score_generations(table, ["de", "ja"])
    r = rates.set_index(["condition", "target"])["target_rate"]
    assert r[("none", "de")] == pytest.approx(25.0)  # the shared baseline counts for every language
    assert r[("none", "ja")] == 0.0
    assert r[("both", "de")] == pytest.approx(75.0)  # newline inside a text is fine
    assert r[("both", "ja")] == pytest.approx(50.0)  # empty text is never in the target language
    baseline = dist[dist.condition == "none"].set_index("detected")["percent"]
    assert baseline.to_dict() == {"en": 50.0, "de": 25.0, "": 25.0}
    main = main_rates(rates, n_per_side=5).set_index("target")
    assert main.loc["de", "rise"] == pytest.approx(50.0)
