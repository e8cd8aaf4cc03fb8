"""Fluency of generated texts: repetition measures on texts with known repetition, perplexity under a model."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from langneurons.control.fluency import degenerate, fluency_columns, fluency_table, median_interval, repetition


def test_repetition_on_known_token_lists():
    stats = repetition([[1, 2, 3, 4, 5], [7, 7, 7, 7, 7, 7], [1, 2, 1, 2, 1, 2, 1, 2], [9], []])
    assert stats["tokens"].tolist() == [5, 6, 8, 1, 0]
    assert stats["distinct2"].iloc[0] == 1.0  # 4 bigrams, all distinct
    assert stats["distinct2"].iloc[1] == pytest.approx(1 / 5)  # (7, 7) five times
    assert stats["distinct2"].iloc[2] == pytest.approx(2 / 7)  # (1, 2) and (2, 1)
    assert math.isnan(stats["distinct2"].iloc[3]) and math.isnan(stats["top_token_share"].iloc[4])
    assert stats["top_token_share"].tolist()[:3] == [pytest.approx(0.2), 1.0, 0.5]
    flags = degenerate(stats, distinct2_below=0.5, repeat_share_above=0.5).tolist()
    # fluent; one token repeated; a two-token loop; a single token (all one token); empty
    assert flags == [False, True, True, True, True]


def test_degenerate_thresholds_are_the_params():
    stats = repetition([[1, 2, 1, 2, 1, 3]])  # distinct2 = 3/5, top token share = 0.5
    assert not degenerate(stats, 0.5, 0.5).iloc[0]
    assert degenerate(stats, 0.7, 0.5).iloc[0] and degenerate(stats, 0.5, 0.4).iloc[0]


def test_median_interval_from_order_statistics():
    median, low, high = median_interval(np.arange(1, 101, dtype=float))
    # n = 100: ranks 100/2 -/+ 1.96 * 10 / 2 -> 40 and 61 (1-based)
    assert (median, low, high) == (50.5, 40.0, 61.0)
    assert median_interval(np.array([np.nan, 3.0]))[:1] == (3.0,)
    assert all(math.isnan(v) for v in median_interval(np.array([])))


def test_perplexity_of_generated_tokens_only_and_batch_invariant(tiny):
    model, tokenizer = tiny("llama")
    fluent = "The weather is nice today and we are going to the park."
    loop = "the the the the the the the the the the the the"
    stats = fluency_columns(model, tokenizer, [fluent, loop, ""], [tokenizer.bos_token_id or 0], 0.5, 0.5, batch_size=2)
    assert stats["degenerate"].tolist() == [False, True, True]
    assert np.isfinite(stats["ppl"].iloc[:2]).all() and math.isnan(stats["ppl"].iloc[2])
    # one text at a time gives the same perplexities as a padded batch (the padding is masked out)
    alone = fluency_columns(model, tokenizer, [fluent], [tokenizer.bos_token_id or 0], 0.5, 0.5, batch_size=1)
    assert alone["ppl"].iloc[0] == pytest.approx(stats["ppl"].iloc[0], rel=1e-4)


def test_fluency_table_per_condition():
    gens = pd.DataFrame({"condition": ["none"] * 4 + ["both"] * 4, "target": [""] * 4 + ["de"] * 4,
                         "n_top": [0] * 4 + [5] * 4, "n_bottom": [0] * 4 + [5] * 4,
                         "ppl": [10.0, 20.0, 30.0, 40.0, 5.0, 5.0, np.nan, 7.0],
                         "degenerate": [False, False, False, True, True, True, True, False]})
    table = fluency_table(gens).set_index("condition")
    assert table.loc["none", "median_ppl"] == 25.0 and table.loc["both", "median_ppl"] == 5.0
    assert table.loc["none", "degenerate"] == 25.0 and table.loc["both", "degenerate"] == 75.0
    assert table.loc["both", "degenerate_low"] < 75.0 < table.loc["both", "degenerate_high"]
