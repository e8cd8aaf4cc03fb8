"""`make paper-numbers`: the authors' released generations, scored by our code, beside our runs.

The 584 released files are not available offline, so the test builds a release of the same
layout (every path of the real manifest, same file format, made-up texts whose scores are known)
with a manifest of its own, and serves it as a local folder.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pandas as pd
import pytest

from conftest import SENTENCES
from langneurons.run import paper_numbers
from langneurons.base.languages import LANGUAGES
from langneurons.base.paths import RunLayout
from langneurons.base.manifest import sha256
from langneurons.run.paper_numbers import RELEASE_MODELS, parse_path
from langneurons.base.params import load_params
from langneurons.data.release_files import Entry, generation_files, load_manifest, translation_file
from langneurons.run.report import build_report
from langneurons.base.errors import DataError
from langneurons.control.translation import build_prompt

# Made-up texts: sentence 1 of each language (FastText labels it right); "" is no language.
TEXT = {lang: SENTENCES[lang][1] for lang in LANGUAGES}
# Unconditional files: how many of their 4 texts are in the forced language, by (N, selection).
HITS = {(2, "both"): 0, (20, "both"): 1, (200, "both"): 2, (2000, "both"): 3, (20000, "both"): 4,
        (200000, "both"): 4, (1000, "top"): 2, (1000, "bottom"): 1}
COLUMNS = ["forcing_value", "num_units", "top_n", "seed", "sentence", "mean_metric", "forced_layer", "perplexity",
           "context", "concept"]


def _pairs(lang: str) -> list[dict[str, str]]:
    refs = [SENTENCES[lang][1], SENTENCES[lang][2], SENTENCES[lang][1] + " " + SENTENCES[lang][2]]
    return [{"en": SENTENCES["en"][i], lang: ref} for i, ref in enumerate(refs)]


def _csv(sentences: list[str], seeds: list[int], n: int, lang: str) -> str:
    rows = [["on_p50", n, 1, seed, text, 0.0, "", "", "", lang] for seed, text in zip(seeds, sentences)]
    return pd.DataFrame(rows, columns=COLUMNS).to_csv()  # an unnamed index column first, as released


def _content(path: str) -> str:
    f = parse_path(path)
    if f.task == "uncond" and f.n_units == 0:  # the shared no-intervention file: one text per language
        return _csv([TEXT[lang] for lang in LANGUAGES] + [""] * 4, list(range(1, 11)), 0, f.lang)
    if f.task == "uncond":
        k = HITS[(f.n_units, f.selection)]
        return _csv([TEXT[f.lang]] * k + [""] * (4 - k), [1, 2, 3, 4], f.n_units, f.lang)
    pairs, seeds = _pairs(f.lang), [3, 1, 2]  # seed = 1-based index of the pair
    answers = [pairs[s - 1]["en"] if f.n_units == 0 else pairs[s - 1][f.lang] for s in seeds]
    texts = [build_prompt(pairs[s - 1]["en"]) + " " + a + "\nEnglish: and so on" for s, a in zip(seeds, answers)]
    return _csv(texts, seeds, f.n_units, f.lang)


@pytest.fixture(scope="session")  # built once per worker (module scope rebuilds it when xdist interleaves)
def fake_release(tmp_path_factory) -> tuple[Path, dict[str, Entry]]:
    root = tmp_path_factory.mktemp("fake_release")
    real = load_manifest()
    manifest = {}
    for rel in generation_files(real):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(_content(rel), encoding="utf-8")
    for rel in (p for p in real if p.startswith("assets_translation/")):
        lang = rel.rsplit("_", 1)[1].removesuffix(".pkl")
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(pickle.dumps(_pairs(lang), protocol=4))
    for rel in [*generation_files(real), *(p for p in real if p.startswith("assets_translation/"))]:
        manifest[rel] = Entry(rel, (root / rel).stat().st_size, sha256(root / rel))
    return root, manifest


@pytest.fixture(scope="session")  # built once per worker (module scope rebuilds it when xdist interleaves)
def scored(fake_release, tmp_path_factory) -> tuple[Path, str]:
    """One `make paper-numbers` (the CLI) on the made-up release: (output folder, what it printed)."""
    import contextlib
    import io

    root, manifest = fake_release
    out = tmp_path_factory.mktemp("figures") / "paper"
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.setattr(paper_numbers, "load_manifest", lambda: manifest)
        code = paper_numbers.main(["--url", f"file://{root}", "--cache-dir", str(tmp_path_factory.mktemp("cache")),
                                   "--out", str(out)])
    assert code == 0
    return out, printed.getvalue()


def test_file_names_are_parsed():
    f = parse_path("outputs/Llama-2-7b-hf/sense/de/expertise/created_sentence_on_p50_2000_expertise_limited_2000_both.csv")
    assert (f.model, f.lang, f.task, f.n_units, f.selection) == ("Llama-2-7b-hf", "de", "uncond", 2000, "both")
    assert (f.condition, f.n_top, f.n_bottom) == ("both", 1000, 1000)
    f = parse_path("outputs/xglm-564M/sense/fr/expertise/created_sentence_on_p50_1000_expertise_limited_1000_bottom.csv")
    assert (f.condition, f.n_top, f.n_bottom) == ("bottom", 0, 1000)
    f = parse_path("outputs/bloom-3b/sense/ja/expertise/"
                   "created_sentence_on_p50_0_expertise_limited_2000_both_iwslt2017_condition_2.csv")
    assert (f.task, f.condition, f.n_units) == ("iwslt2017", "none", 0)
    with pytest.raises(DataError, match="not a released generation file"):
        parse_path("outputs/bloom-3b/sense/ja/expertise/expertise.csv")
    # every released file name parses, 73 per model
    files = [parse_path(p) for p in generation_files(load_manifest())]
    assert len(files) == 584 and {f.model for f in files} == set(RELEASE_MODELS)
    assert all(sum(f.model == m for f in files) == 73 for m in RELEASE_MODELS)


@pytest.mark.slow
@pytest.mark.xdist_group("paper_numbers")
def test_released_scores_one_row_per_file(scored):
    out, printed = scored
    assert "scored 584 released files" in printed
    table = pd.read_csv(out / "released_scores.csv", keep_default_na=False)
    assert list(table.columns) == ["model", "lang", "task", "n_units", "selection", "target_rate", "bleu"]
    assert len(table) == 584 and set(table.model) == set(RELEASE_MODELS)
    uncond = table[table.task == "uncond"]
    assert (uncond.bleu == "").all()
    for (n, selection), hits in HITS.items():
        rows = uncond[(uncond.n_units == n) & (uncond.selection == selection)]
        assert len(rows) == 48 and rows.target_rate.astype(float).eq(25.0 * hits).all()
    none = uncond[uncond.n_units == 0]
    assert len(none) == 8 and none.lang.eq("en").all() and none.target_rate.astype(float).eq(10.0).all()
    trans = table[table.task != "uncond"]
    assert set(trans.task) == {"flores200", "iwslt2017", "wmt"} and len(trans) == 8 * 24
    forced = trans[trans.n_units == 2000]
    assert forced.bleu.astype(float).round(6).eq(100.0).all() and forced.target_rate.astype(float).eq(100.0).all()
    unforced = trans[trans.n_units == 0]  # answered in English: never the target, BLEU far below 100
    assert unforced.target_rate.astype(float).eq(0.0).all() and (unforced.bleu.astype(float) < 50).all()


@pytest.mark.slow
@pytest.mark.xdist_group("paper_numbers")
def test_paper_figures_and_means(scored):
    out, _ = scored
    means = pd.read_csv(out / "mean_rates.csv")
    assert means.target.tolist() == list(LANGUAGES)
    assert means["none"].eq(10.0).all() and means["both"].eq(75.0).all() and means["models"].eq(8).all()
    for model in RELEASE_MODELS:
        for fig in ("fig3_target_rate", "fig4_rate_vs_n", "fig5_top_bottom_both", "fig6_translation"):
            assert (out / f"{fig}-{model}.png").stat().st_size > 1000
    page = (out / "README.md").read_text()
    assert "## Llama-2-13b-hf" in page and "fig6_translation-xglm-564M.png" in page
    rates = pd.read_csv(out / "fig3_5_target_rates.csv", keep_default_na=False)
    rates = rates[rates.model == "bloom-560m"]  # in our rates layout: none, N sweep, top, bottom
    sweep = rates[(rates.condition == "both") & (rates.target == "de")].sort_values("n_top")
    assert sweep.n_top.tolist() == [1, 10, 100, 1000, 10000, 100000]
    assert sweep.target_rate.tolist() == [0.0, 25.0, 50.0, 75.0, 100.0, 100.0]


@pytest.mark.slow
@pytest.mark.xdist_group("paper_numbers")
def test_report_shows_the_papers_numbers_beside_the_run(scored, tmp_path: Path):
    out, _ = scored
    p = load_params("xglm-564M", [f"figures_root={out.parent}", f"output_root={tmp_path / 'runs'}"], check_files=False)
    layout = RunLayout.of(p)
    layout.figures.mkdir(parents=True)
    ours = pd.DataFrame({"condition": ["none", "both", "both", "top"], "target": ["de", "de", "de", "de"],
                         "n_top": [0, 1000, 10, 1000], "n_bottom": [0, 1000, 10, 0], "n": 100,
                         "target_rate": [3.0, 97.0, 12.0, 40.0]})
    ours.to_csv(layout.figures / "fig3_5_target_rates.csv", index=False)
    report = build_report(p, layout)
    assert "## Beside the paper's own numbers" in report and "`xglm-564M`" in report
    assert "| both | de | 1000 | 1000 | 97.0 | 75.0 |" in report  # the run's value, then the paper's
    assert "| none | de | 0 | 0 | 3.0 | 10.0 |" in report and "| top | de | 1000 | 0 | 40.0 | 50.0 |" in report
    tiny = load_params("tiny", [f"figures_root={out.parent}"], check_files=False)
    assert "Beside the paper" not in build_report(tiny, RunLayout.of(tiny))  # not one of the paper's models


def test_cli_without_the_files(tmp_path: Path, capsys):
    """A release missing its files: one line naming make data and LANGNEURONS_RELEASE_URL, exit 2 (the
    successful CLI run is the `scored` fixture)."""
    code = paper_numbers.main(["--url", str(tmp_path / "empty"), "--cache-dir", str(tmp_path / "cache2"),
                               "--out", str(tmp_path / "paper2")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert "make data" in err and "LANGNEURONS_RELEASE_URL" in err


def test_the_real_manifest_lists_what_paper_numbers_fetches():
    manifest = load_manifest()
    files = paper_numbers.release_files(manifest)
    pairs = {translation_file(f.task, f.lang) for f in files if f.task != "uncond"}
    assert len(files) == 584 and pairs <= set(manifest) and len(pairs) == 12
