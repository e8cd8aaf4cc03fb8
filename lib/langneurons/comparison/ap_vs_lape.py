"""Notebook 07's computation: AP against LAPE at matched sizes, every table written to runs/<profile>/comparison/.

Kept in one function because the stage cache records a stage's outputs as one unit: `compute`
writes everything, `read` gives the tables back for the notebook's figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from langneurons.control.deactivation import check_heldout, heldout_texts
from langneurons.comparison.effects import deactivation_from_parts, deactivation_parts, forcing_parts, forcing_table
from langneurons.control.forcing_runs import ModelLoader
from langneurons.base.parts import Part, run_parts
from langneurons.data.language_id import identifiable
from langneurons.control.language_rates import score_generations
from langneurons.data.textsets import TextSets
from langneurons.model.lape_pass import FFN_UNITS_FILE
from langneurons.model.loading import load_model
from langneurons.comparison.unit_sets import layer_distributions, matched_sets, overlap_table, rate_table
from langneurons.scoring.lape import read_lape_selections
from langneurons.scoring.selection import read_scores
from langneurons.base import paths
from langneurons.base.atomic import write_csv, write_json, write_parquet
from langneurons.base.paths import RunLayout
from langneurons.base.params import Params

TABLES = ("matched_units", "overlap", "layer_distribution", "rates", "deactivation")
UNIT_COLUMNS = ["method", "language", "rank", "site", "layer", "unit", "block", "kind", "depth", "on_p50"]


def _matched(p: Params, layout: RunLayout) -> dict[str, dict[str, pd.DataFrame]]:
    lape = read_lape_selections(layout.lape, p.languages)
    ap = read_scores(layout, p.languages) if "ap" in p.methods else {}
    matched = matched_sets(ap, lape, p.comparison.n_units)
    return {m: sets for m, sets in matched.items() if sets}


def _heldout(p: Params, layout: RunLayout) -> dict[str, list[str]]:
    text_sets = TextSets.load(layout.data)
    heldout = heldout_texts(
        text_sets, p.languages, p.comparison.heldout_per_language, p.comparison.seed, p.data.source,
        files_path=paths.resolve(p.data.files.path) if p.data.files.path else None,
        heldout_path=paths.resolve(p.comparison.heldout_path) if p.comparison.heldout_path else None)
    check_heldout(heldout, text_sets)  # again, explicitly: no held-out text was used to select units
    for lang in p.languages:
        if lang not in heldout:
            print(f"{lang}: no held-out texts (none unused by the selection sets): its perplexity column is left out; "
                  "give some with comparison.heldout_path")
    return heldout


@dataclass(frozen=True)
class Work:
    """Notebook 07's model work as parts (base/parts.py): the forcing conditions, then deactivation."""

    parts: list[Part]
    n_forcing: int  # the first n_forcing parts are forcing conditions, the rest deactivation
    zeroed: list[tuple[str, str]]  # (method, language) of each deactivation part after the first
    measured: list[str]  # languages whose forcing rate lid.176 can measure
    matched: dict[str, dict[str, pd.DataFrame]]
    heldout: dict[str, list[str]]


def work(p: Params, layout: RunLayout, load: ModelLoader | None = None) -> Work:
    """The parts of notebook 07's model work; `load` gives the model when a part is made (default: load_model)."""
    load = load or cache(lambda: load_model(p.model))
    matched = _matched(p, layout)
    measured, unmeasured = identifiable(p.languages)
    for lang in unmeasured:
        print(f"{lang}: lid.176 has no label for it, so its forcing rate cannot be measured; deactivation still runs")
    forcing = forcing_parts(load, matched, measured, p.generation) if measured else []
    heldout = _heldout(p, layout)
    deactivation, zeroed = deactivation_parts(load, matched, heldout, p.comparison.batch_size, p.activations.seq_len)
    return Work([*forcing, *deactivation], len(forcing), zeroed, measured, matched, heldout)


def compute(p: Params, layout: RunLayout, parts_dir: Path | None = None) -> None:
    """Matched sets, their overlap and layer distributions, forcing rates and deactivation perplexities.

    With `parts_dir`, each finished forcing condition and deactivated language is kept there and
    reused by a rerun (after an interruption, or made by cluster jobs: run/shard_parts.py)."""
    out = layout.comparison
    w = work(p, layout)
    units = pd.concat([sel.assign(method=m, language=lang) for m, by_lang in w.matched.items()
                       for lang, sel in by_lang.items()], ignore_index=True)
    write_csv(out / "matched_units.csv", units[UNIT_COLUMNS])
    act_units = pd.read_parquet(layout.activations / FFN_UNITS_FILE)
    n_blocks = int(act_units["block"].max()) + 1
    write_csv(out / "overlap.csv", overlap_table(w.matched, act_units, n_blocks))
    write_csv(out / "layer_distribution.csv", layer_distributions(w.matched, n_blocks))

    bar = tqdm(desc="forcing and deactivation", unit="part", total=sum(part.size for part in w.parts))
    frames = list(run_parts(w.parts, parts_dir, bar=bar).values())
    bar.close()
    if w.measured:
        generations = forcing_table(frames[:w.n_forcing], p.generation.n_samples)
        write_parquet(out / "generations.parquet", generations)
        rates, _ = score_generations(generations, w.measured, keys=("condition", "target", "n_units"))
        write_csv(out / "rates.csv", rate_table(rates))
    else:
        write_csv(out / "rates.csv", pd.DataFrame(columns=["method", "target", "n_units", "none", "forced", "rise"]))
    write_json(out / "heldout_texts.json", w.heldout)
    write_csv(out / "deactivation.csv", deactivation_from_parts(frames[w.n_forcing:], w.zeroed, w.matched))


def read(layout: RunLayout) -> dict[str, pd.DataFrame]:
    """The tables `compute` wrote."""
    folder: Path = layout.comparison
    return {name: pd.read_csv(folder / f"{name}.csv") for name in TABLES}

