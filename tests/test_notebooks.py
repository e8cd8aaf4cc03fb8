"""The notebooks: one `parameters` cell each, stored clean; and all seven chained by papermill (the shared run)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import papermill
import pytest
import yaml

from shared_runs import ALL8, TRANSLATION_PAIRS
from langneurons.base.paths import NOTEBOOKS_DIR, PROJECT_ROOT
from langneurons.run.pipeline import STAGES
from langneurons.run.stages import BY_NAME, STAGE_OF_FIGURE


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
@pytest.mark.xdist_group("pipeline")
def test_seven_notebooks_chained_by_papermill(shared):
    """The shared run's `chain` profile: the embedded model on eight languages through notebooks 01-07."""
    run, figs = shared.run("chain"), shared.figs("chain")
    resolved = yaml.safe_load((run / "params.yaml").read_text())
    assert resolved["scoring"]["n_per_side"] == 20 and resolved["languages"] == ALL8
    for stage in STAGES:
        assert (run / "notebooks" / f"{stage}.ipynb").is_file()
        log = json.loads((run / "logs" / f"{stage}.json").read_text())
        assert log["wall_s"] > 0 and log["peak_rss_mib"] > 0 and log["notebook_engine"] == "kernel"
    # data: sets for all eight languages, each text stored once
    texts = pd.read_parquet(run / "data" / "texts.parquet")
    sets = pd.read_parquet(run / "data" / "sets.parquet")
    assert sets.groupby("target").size().to_dict() == dict.fromkeys(sorted(ALL8), 12 + 7 * 3)
    assert texts.text.is_unique
    # activations: [unique texts x units], the embedded model's 4 blocks x (4 d + ffn + d)
    config = json.loads((PROJECT_ROOT / "models" / "tiny" / "config.json").read_text())
    matrix = np.load(run / "activations" / "activations.npy", mmap_mode="r")
    units = pd.read_parquet(run / "activations" / "units.parquet")
    per_block = 5 * config["d_model"] + config["ffn_dim"]
    assert matrix.shape == (len(texts), config["num_layers"] * per_block) == (len(texts), len(units))
    assert not np.isnan(matrix).any()
    assert json.loads((run / "activations" / "meta.json").read_text())["batching"]["identical"] is not None
    # scores and selections per language
    for lang in ALL8:
        scores = pd.read_parquet(run / "scores" / f"{lang}.parquet")
        assert {"layer", "unit", "ap", "on_p50"} <= set(scores.columns) and len(scores) == len(units)
        assert not scores[["ap", "on_p50"]].isna().any().any() and scores.ap.between(0, 1).all()
        sel = pd.read_csv(run / "selection" / f"{lang}.csv")
        assert sel.side.value_counts().to_dict() == {"top": 20, "bottom": 20}
        assert sel.query("side == 'top'").ap.min() >= sel.query("side == 'bottom'").ap.max()
    for name in ["fig8_ap_distribution", "fig1_layer_distribution", "fig2_overlap", "fig3_target_rate",
                 "fig4_rate_vs_n", "fig5_top_bottom_both"]:
        assert (figs / f"{name}.png").stat().st_size > 1000 and (figs / f"{name}.pdf").stat().st_size > 1000
    # analysis: every selected unit counted once per side; overlap of a language with itself is 100%
    dist = pd.read_csv(figs / "fig1_layer_distribution.csv")
    assert dist.groupby(["language", "side"])["count"].sum().eq(20).all()
    overlap = pd.read_csv(figs / "fig2_overlap.csv")
    assert overlap.query("language_a == language_b").percent_of_n.eq(100).all()
    # intervention: none (shared) + per identifiable language (Toki Pona is not): both at N=1, 20 and the
    # sweep's 1000 capped to half the units, top, bottom and as many random units; 4 samples each, all saved
    gens = pd.read_parquet(run / "generations" / "unconditional.parquet")
    assert len(pd.read_csv(run / "generations" / "unconditional.csv", keep_default_na=False)) == len(gens)  # quoted
    cap = len(units) // 2
    per_lang = {("both", 1), ("both", 20), ("both", cap), ("top", 20), ("bottom", 20), ("random", 20)}
    assert len(gens) == 4 * (1 + 7 * len(per_lang))
    assert set(gens.columns) >= {"profile", "condition", "target", "n_top", "n_bottom", "sample", "text"}
    rates = pd.read_csv(figs / "fig3_main_rates.csv")
    assert rates.target.tolist() == [x for x in ALL8 if x != "tok"] and rates[["none", "top", "bottom", "both"]].notna().all().all()
    # translation: the tasks' targets among the run's languages, both conditions, 3 pairs each
    tr = pd.read_parquet(run / "generations" / "translation.parquet")
    assert {(t, lang) for t, lang in zip(tr.task, tr.target)} == set(TRANSLATION_PAIRS)
    assert len(tr) == 3 * 2 * 3 and set(tr.columns) >= {"source", "reference", "continuation", "answer"}
    metrics = pd.read_csv(figs / "fig6_translation.csv")
    assert set(metrics.condition) == {"none", "both"} and metrics.n.eq(3).all() and metrics.bleu.between(0, 100).all()
    assert (figs / "fig6_translation.png").stat().st_size > 1000
    # AP vs LAPE (notebook 07): matched sizes, forcing of both methods, a full deactivation matrix per method
    lape = {lang: pd.read_csv(run / "lape" / f"selection_{lang}.csv") for lang in ALL8}
    assert all((sel.site == "ffn_act").all() and sel.entropy.is_monotonic_increasing for sel in lape.values())
    matched = pd.read_csv(run / "comparison" / "matched_units.csv")
    sizes = matched.groupby(["method", "language"]).size()
    for lang, sel in lape.items():
        if len(sel):
            assert sizes[("ap", lang)] == sizes[("lape", lang)] == len(sel)
    deact = pd.read_csv(figs / "fig10_deactivation.csv")
    heldout = json.loads((run / "comparison" / "heldout_texts.json").read_text())
    assert set(heldout) == set(ALL8) and not set(sum(heldout.values(), [])) & set(texts.text)
    for method, part in deact.groupby("method"):
        assert len(part) == part.deactivated.nunique() * len(ALL8) and (part.ppl > 0).all()
    forcing = pd.read_csv(figs / "fig10_forcing_rates.csv")
    assert set(forcing.method) <= {"ap", "lape"} and forcing.forced.between(0, 100).all()
    report = (figs / "README.md").read_text()
    for name in ["fig8_ap_distribution.png", "fig1_layer_distribution.png", "fig2_overlap.png", "fig3_target_rate.png",
                 "fig9_ap_vs_lape_units.png", "fig10_ap_vs_lape_effects.png"]:
        assert name in report
    assert "## Responses: exact or within rounding" in report


@pytest.mark.slow
@pytest.mark.xdist_group("pipeline")
def test_every_file_a_notebook_writes_is_known_to_the_stage_registry(shared):
    """A reused stage starts no kernel only if every file its notebook derives is listed in run/stages.py
    (else a deleted figure would not come back): each figure of the run belongs to a stage, and each
    stage recorded the checksums of what it wrote."""
    figs, run = shared.figs("chain"), shared.run("chain")
    written = {p.name for p in figs.iterdir() if p.name != "README.md"}
    assert written <= set(STAGE_OF_FIGURE), sorted(written - set(STAGE_OF_FIGURE))
    for stage in STAGES:
        record = json.loads((run / "stamps" / f"{stage}.derived.json").read_text())
        assert set(record["figures"]) == {f for f in BY_NAME[stage].figures if (figs / f).is_file()}


@pytest.mark.slow
@pytest.mark.xdist_group("pipeline")
def test_every_param_a_stage_reads_is_in_its_cache_key(shared):
    """The stage logs list the params each notebook read (params.ReadLog); every one of them is in
    the stage's key in run/stages.py (or never changes outputs), so no param can cause a stale reuse."""
    run = shared.run("chain")
    for stage in STAGES:
        record = json.loads((run / "logs" / f"{stage}.json").read_text())
        assert record["params_read"], f"{stage} logged no params"
        assert record["params_not_keyed"] == [], f"{stage} read params outside its key: {record['params_not_keyed']}"
    assert "generation.top_p" in json.loads((run / "logs" / "05_intervention.json").read_text())["params_read"]


def test_a_param_outside_the_key_is_reported(tmp_path, capsys):
    """A stage that reads a param its registry entry does not hold says so in its log and on screen."""
    from langneurons.base.params import load_params
    from langneurons.run.stagelog import Stage
    from langneurons.base.params import start_read_log

    p = load_params("tiny", check_files=False)
    stage = Stage("04_analysis", tmp_path, read_log=start_read_log(p))
    _ = p.scoring.n_per_side, p.generation.top_p  # 04's key holds scoring.n_per_side, not generation
    record = stage.finish(notebook=False)
    assert record["params_read"] == ["generation.top_p", "scoring.n_per_side"]
    assert record["params_not_keyed"] == ["generation.top_p"]
    assert "04_analysis read generation.top_p, which its cache key does not hold" in capsys.readouterr().out
