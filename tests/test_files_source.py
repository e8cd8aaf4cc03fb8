"""The `files` source: any language from a folder of <code>.txt files, through notebooks 01-07 (the shared run).

Eight languages: the six of the paper (sentences of the bundled corpus) and two written here,
Italian (lid.176 knows it) and Toki Pona (lid.176 has no label for it: its generation rate cannot
be measured, but its units are still scored and analysed).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from langneurons.data.files_source import load_files
from langneurons.base.languages import language_name
from langneurons.base.errors import DataError
from langneurons.base.params import ParamsError, load_params
from shared_runs import ALL8, HELDOUT_EXTRA, write_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("texts"))


def test_sets_from_any_language(folder: Path, capsys):
    sets = load_files(folder, ["it", "tok"], n_positive=10, n_negative_per_language=3, seed=0)
    assert "it.txt: 1 repeated line(s) used once" in capsys.readouterr().out
    for target in ("it", "tok"):
        rows = sets.labelled(target).merge(sets.texts, on="text_id")
        assert (rows[rows.label == 1].lang == target).all() and (rows.label == 1).sum() == 10
        negatives = rows[rows.label == 0]
        assert negatives.lang.value_counts().to_dict() == {o: 3 for o in ALL8 if o != target}  # every other file
    texts = set(sets.texts.text)
    assert "" not in texts and not any(t != t.strip() for t in texts)  # blank lines ignored, lines stripped
    again = load_files(folder, ["tok", "it"], n_positive=10, n_negative_per_language=3, seed=0)
    assert sorted(again.texts.text) == sorted(sets.texts.text)  # samples do not depend on the order of `languages`


def test_files_errors_name_the_problem(folder: Path, tmp_path: Path):
    with pytest.raises(DataError, match=r"tok\.txt has 16 distinct texts; data\.files\.n_positive=20"):
        load_files(folder, ["tok"], n_positive=20, n_negative_per_language=3, seed=0)
    with pytest.raises(ValueError, match=r"unknown language code\(s\) \['xx'\].*'tok'"):
        load_files(folder, ["xx"], n_positive=2, n_negative_per_language=2, seed=0)
    bad = write_folder(tmp_path / "bad", per_language=4)
    (bad / "la.txt").write_bytes(b"Gallia est omnis divisa\n\xff\xfe in partes tres\n")
    with pytest.raises(DataError, match=r"la\.txt is not UTF-8"):
        load_files(bad, ["la"], n_positive=1, n_negative_per_language=1, seed=0)
    with pytest.raises(DataError, match="is not a folder"):
        load_files(tmp_path / "nowhere", ["it"], n_positive=1, n_negative_per_language=1, seed=0)


def test_params_accept_codes_the_folder_has(folder: Path):
    p = load_params("tiny", ["data.source=files", f"data.files.path={folder}", "languages=it,tok,ja"])
    assert p.languages == ["it", "tok", "ja"]
    with pytest.raises(ParamsError, match=r"unknown language code\(s\) \['nl'\]"):
        load_params("tiny", ["data.source=files", f"data.files.path={folder}", "languages=it,nl"])
    with pytest.raises(ParamsError, match=r"\['it'\].*data.source=files"):
        load_params("tiny", ["languages=en,it"])  # the bundled corpus has the paper's six only
    with pytest.raises(ParamsError, match="needs data.files.path"):
        load_params("tiny", ["data.source=files", "languages=it"])
    assert language_name("tok") == "Toki Pona" and language_name("qq") == "qq"


@pytest.mark.slow
@pytest.mark.xdist_group("pipeline")
def test_eight_languages_through_the_notebooks(shared):
    """The shared run's `chain` profile reads a files folder of eight languages (shared_runs.py)."""
    run, figs = shared.run("chain"), shared.figs("chain")
    sets = pd.read_parquet(run / "data" / "sets.parquet")
    assert sorted(sets.target.unique()) == sorted(ALL8)
    for lang in ALL8:
        scores = pd.read_parquet(run / "scores" / f"{lang}.parquet")
        assert scores.ap.between(0, 1).all() and len(pd.read_csv(run / "selection" / f"{lang}.csv")) == 40
    layers = pd.read_csv(figs / "fig1_layer_distribution.csv")
    overlap = pd.read_csv(figs / "fig2_overlap.csv")
    assert set(layers.language) == set(ALL8) and set(overlap.language_a) == set(ALL8)
    rates = pd.read_csv(figs / "fig3_5_target_rates.csv")
    assert set(rates.target) == set(ALL8) - {"tok"}  # Toki Pona cannot be identified, Italian can
    log = json.loads((run / "notebooks" / "05_intervention.ipynb").read_text())
    printed = "".join("".join(o.get("text", "")) for c in log["cells"] for o in c.get("outputs", []))
    assert "Toki Pona (tok): lid.176 has no label for it" in printed
    assert (figs / "fig1_layer_distribution.png").stat().st_size > 1000
    # AP vs LAPE with two languages outside the six: LAPE's entropy runs over all eight, every language
    # has a perplexity row and column per method, and Toki Pona has no forcing rate (lid.176 lacks it)
    lape = pd.read_csv(run / "lape" / "summary.csv")
    assert set(lape.language) == set(ALL8)
    deact = pd.read_csv(figs / "fig10_deactivation.csv")
    assert set(deact.evaluated) == set(ALL8)
    for _, part in deact.groupby("method"):
        assert len(part) == part.deactivated.nunique() * len(ALL8)
    assert "tok" not in set(pd.read_csv(figs / "fig10_forcing_rates.csv").target)
    held = json.loads((run / "comparison" / "heldout_texts.json").read_text())
    assert held["it"] == HELDOUT_EXTRA["it"] and not set(sum(held.values(), [])) & set(pd.read_parquet(run / "data" / "texts.parquet").text)
    assert (figs / "fig10_ap_vs_lape_effects.png").stat().st_size > 1000
