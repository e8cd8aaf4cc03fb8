"""The notebooks: one `parameters` cell each, stored clean; and the 01-03 chain run by papermill."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import papermill
import pytest
import yaml

from conftest import ALL_SENTENCES, write_official_dir, write_translation_dir
from langneurons.run.paths import NOTEBOOKS_DIR
from langneurons.run.pipeline import STAGES, run_stages
from langneurons.model.tiny import build_and_save


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
def test_papermill_chain(tmp_path: Path):
    model_dir = build_and_save(tmp_path / "model", "xglm", ALL_SENTENCES * 3, vocab_size=300, seed=0,
                               d_model=32, layers=2, heads=4, ffn=64)
    sense = write_official_dir(tmp_path / "sense", n_pos=6, n_neg_per_lang=4)
    translation = write_translation_dir(tmp_path / "translation", {  # en is never a target
        (task, lang): [(ALL_SENTENCES[i], ALL_SENTENCES[i + 4 * (1 + (lang == "zh") * 3)]) for i in range(4)]
        for task, lang in [("flores200", "de"), ("flores200", "zh"), ("wmt", "de")]})
    overrides = [f"model.path={model_dir}", "data.source=official", f"data.official_path={sense}", f"output_root={tmp_path / 'runs'}",
                 f"figures_root={tmp_path / 'figs'}", "scoring.n_per_side=5", "activations.batch_size=4",
                 "languages=en,de,zh", "model.device=cpu", "generation.n_samples=4", "generation.batch_size=3",
                 "generation.max_new_tokens=6", "intervention.sweep=1,1000",
                 f"translation.official_path={translation}", "translation.n_pairs=3", "translation.max_new_tokens=5",
                 "translation.batch_size=2", "translation.tasks={flores200: [de, zh, ja], wmt: [de]}"]
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
    figs = tmp_path / "figs" / "tiny"
    for name in ["fig8_ap_distribution", "fig1_layer_distribution", "fig2_overlap", "fig3_target_rate",
                 "fig4_rate_vs_n", "fig5_top_bottom_both"]:
        assert (figs / f"{name}.png").stat().st_size > 1000 and (figs / f"{name}.pdf").stat().st_size > 1000
    # analysis: every selected unit counted once per side; overlap of a language with itself is 100%
    dist = pd.read_csv(figs / "fig1_layer_distribution.csv")
    assert dist.groupby(["language", "side"])["count"].sum().eq(5).all()
    shared = pd.read_csv(figs / "fig2_overlap.csv")
    assert shared.query("language_a == language_b").percent_of_n.eq(100).all()
    # intervention: none (shared) + per language: both at N=1 and 5 (1000 capped to half the units... >5),
    # top and bottom; 4 samples each, all saved
    gens = pd.read_parquet(run / "generations" / "unconditional.parquet")
    assert len(pd.read_csv(run / "generations" / "unconditional.csv", keep_default_na=False)) == len(gens)  # quoted
    cap = len(units) // 2
    per_lang = {("both", 1), ("both", 5), ("both", cap), ("top", 5), ("bottom", 5)}
    assert len(gens) == 4 * (1 + 3 * len(per_lang))
    assert set(gens.columns) >= {"profile", "condition", "target", "n_top", "n_bottom", "sample", "text"}
    rates = pd.read_csv(figs / "fig3_main_rates.csv")
    assert rates.target.tolist() == ["en", "de", "zh"] and rates[["none", "top", "bottom", "both"]].notna().all().all()
    # translation: tasks with files for the run's languages (en, de, zh), both conditions, 3 pairs each
    tr = pd.read_parquet(run / "generations" / "translation.parquet")
    assert {(t, lang) for t, lang in zip(tr.task, tr.target)} == {("flores200", "de"), ("flores200", "zh"), ("wmt", "de")}
    assert len(tr) == 3 * 2 * 3 and set(tr.columns) >= {"source", "reference", "continuation", "answer"}
    metrics = pd.read_csv(figs / "fig6_translation.csv")
    assert set(metrics.condition) == {"none", "both"} and metrics.n.eq(3).all() and metrics.bleu.between(0, 100).all()
    assert (figs / "fig6_translation.png").stat().st_size > 1000
    # AP vs LAPE (notebook 07): matched sizes, forcing of both methods, a full deactivation matrix per method
    lape = {lang: pd.read_csv(run / "lape" / f"selection_{lang}.csv") for lang in ["en", "de", "zh"]}
    assert all((sel.site == "ffn_act").all() and sel.entropy.is_monotonic_increasing for sel in lape.values())
    matched = pd.read_csv(run / "comparison" / "matched_units.csv")
    sizes = matched.groupby(["method", "language"]).size()
    for lang, sel in lape.items():
        if len(sel):
            assert sizes[("ap", lang)] == sizes[("lape", lang)] == len(sel)
    deact = pd.read_csv(figs / "fig10_deactivation.csv")
    heldout = json.loads((run / "comparison" / "heldout_texts.json").read_text())
    assert set(heldout) == {"en", "de", "zh"} and not set(sum(heldout.values(), [])) & set(texts.text)
    for method, part in deact.groupby("method"):
        assert len(part) == part.deactivated.nunique() * 3 and (part.ppl > 0).all()
    forcing = pd.read_csv(figs / "fig10_forcing_rates.csv")
    assert set(forcing.method) <= {"ap", "lape"} and forcing.forced.between(0, 100).all()
    report = (figs / "README.md").read_text()
    for name in ["fig8_ap_distribution.png", "fig1_layer_distribution.png", "fig2_overlap.png", "fig3_target_rate.png",
                 "fig9_ap_vs_lape_units.png", "fig10_ap_vs_lape_effects.png"]:
        assert name in report
