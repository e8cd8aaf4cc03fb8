"""The random-unit baseline: as many units as a language's selection, from the same blocks, never its own."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from langneurons.control.forcing_runs import Condition, conditions_for, units_for


def _scores(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    blocks = np.repeat(np.arange(4), 50)
    ap = rng.random(len(blocks))
    ap[blocks == 0] += 1.0  # the top units all sit in block 0 ...
    ap[blocks == 3] -= 1.0  # ... and the bottom ones in block 3
    return pd.DataFrame({"layer": [f"model.layers.{b}.mlp.up_proj" for b in blocks], "unit": np.arange(len(blocks)),
                         "block": blocks, "ap": ap, "on_p50": rng.normal(size=len(blocks))})


def test_random_units_come_from_the_same_blocks_and_avoid_the_selection():
    scores = _scores()
    chosen = units_for(scores, Condition("both", "de", 10, 10))
    drawn = units_for(scores, Condition("random", "de", 10, 10, seed=3))
    assert len(drawn) == len(chosen) == 20
    assert drawn["block"].value_counts().to_dict() == chosen["block"].value_counts().to_dict() == {0: 10, 3: 10}
    assert not set(drawn["unit"]) & set(chosen["unit"])
    # each forced to its own value: the rows are the scores' own rows
    assert (drawn["on_p50"].to_numpy() == scores.set_index("unit").loc[drawn["unit"], "on_p50"].to_numpy()).all()


def test_random_units_are_seeded_per_seed_and_language():
    scores = _scores()
    a = set(units_for(scores, Condition("random", "de", 10, 10, seed=3))["unit"])
    assert a == set(units_for(scores, Condition("random", "de", 10, 10, seed=3))["unit"])
    assert a != set(units_for(scores, Condition("random", "de", 10, 10, seed=4))["unit"])
    assert a != set(units_for(scores, Condition("random", "fr", 10, 10, seed=3))["unit"])


def test_too_few_units_left_in_a_block_is_an_error():
    scores = _scores()
    with pytest.raises(ValueError, match="too few units"):
        units_for(scores, Condition("random", "de", 30, 30))  # 30 of block 0's 50 selected: 20 left to draw


def test_conditions_hold_one_random_baseline_per_language_when_seeded():
    assert not [c for c in conditions_for(["de", "fr"], 10, [1, 10], 200) if c.name == "random"]
    random = [c for c in conditions_for(["de", "fr"], 10, [1, 10], 200, random_seed=7) if c.name == "random"]
    assert [(c.target, c.n_top, c.n_bottom, c.seed) for c in random] == [("de", 10, 10, 7), ("fr", 10, 10, 7)]
