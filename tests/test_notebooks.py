"""The notebooks: one `parameters` cell each, stored clean; and the 01-03 chain run by papermill."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import papermill
import pytest
import yaml

from conftest import ALL_SENTENCES, write_official_dir
from langneurons.paths import NOTEBOOKS_DIR
from langneurons.pipeline import STAGES, run_stages
from langneurons.tiny import build_and_save


@pytest.mark.parametrize("stage", STAGES)
def test_notebook_is_clean_and_parameterised(stage: str):
    path = NOTEBOOKS_DIR / f"{stage}.ipynb"
    nb = json.loads(path.read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1
    assert set(papermill.inspect_notebook(str(path))) == {"profile", "overrides", "params"}
    assert not any(c.get("outputs") or c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code")
    assert nb["cells"][0]["cell_type"] == "markdown"


@pytest.mark.slow
def test_papermill_chain_01_to_03(tmp_path: Path):
    model_dir = build_and_save(tmp_path / "model", "xglm", ALL_SENTENCES * 3, vocab_size=300, seed=0,
                               d_model=32, layers=2, heads=4, ffn=64)
    sense = write_official_dir(tmp_path / "sense", n_pos=6, n_neg_per_lang=4)
    overrides = [f"model.path={model_dir}", f"data.official_path={sense}", f"output_root={tmp_path / 'runs'}",
                 f"figures_root={tmp_path / 'figs'}", "scoring.n_per_side=5", "activations.batch_size=4",
                 "languages=en,de,zh", "model.device=cpu"]
    layout = run_stages("tiny", overrides)
    run = tmp_path / "runs" / "tiny"
    assert layout.root == run
    resolved = yaml.safe_load((run / "params.yaml").read_text())
    assert resolved["scoring"]["n_per_side"] == 5 and resolved["languages"] == ["en", "de", "zh"]
    for stage in STAGES:
        assert (run / "notebooks" / f"{stage}.ipynb").is_file()
        log = json.loads((run / "logs" / f"{stage}.json").read_text())
        assert log["wall_s"] > 0 and log["peak_rss_mib"] > 0
    # data: en, de, zh sets over texts of all six languages
    texts = pd.read_parquet(run / "data" / "texts.parquet")
    sets = pd.read_parquet(run / "data" / "sets.parquet")
    assert sets.groupby("target").size().to_dict() == {"de": 26, "en": 26, "zh": 26}
    # activations: [unique texts x units], units = 2 blocks x (4*32 + 64 + 32)
    matrix = np.load(run / "activations" / "activations.npy", mmap_mode="r")
    units = pd.read_parquet(run / "activations" / "units.parquet")
    assert matrix.shape == (len(texts), 2 * (4 * 32 + 64 + 32)) == (len(texts), len(units))
    assert not np.isnan(matrix).any()
    # scores and selections per language
    for lang in ["en", "de", "zh"]:
        scores = pd.read_parquet(run / "scores" / f"{lang}.parquet")
        assert {"layer", "unit", "ap", "on_p50"} <= set(scores.columns) and len(scores) == len(units)
        assert not scores[["ap", "on_p50"]].isna().any().any() and scores.ap.between(0, 1).all()
        sel = pd.read_csv(run / "selection" / f"{lang}.csv")
        assert sel.side.value_counts().to_dict() == {"top": 5, "bottom": 5}
        assert sel.query("side == 'top'").ap.min() >= sel.query("side == 'bottom'").ap.max()
    assert (tmp_path / "figs" / "tiny" / "fig8_ap_distribution.png").stat().st_size > 1000
    assert (tmp_path / "figs" / "tiny" / "fig8_ap_distribution.pdf").stat().st_size > 1000
