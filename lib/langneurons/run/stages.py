"""The registry: every stage of the pipeline, in order, and everything that is known about it.

Per stage: its notebook, the method it studies, the params its outputs depend on (the cache key),
the stages it reads, its outputs, whether it loads the model, which cost model `make plan` uses,
the figure files it writes with the tolerances `make check-figures` accepts, and the files it
derives into the run folder. pipeline, cache, notebook, check_figures, plan, report and the
notebooks read it; nothing else names a stage or a figure file.

A notebook first reuses or computes its stage's outputs (cache.py), then draws figures and tables
from them. The derived files are listed here so that `make replicate` can tell, without starting a
kernel, that a reused stage has nothing left to do: its outputs match their stamp and every derived
file is the one the stage last wrote from the notebook as it is now (derived_are_current).

Adding a stage: a StageDef here, its notebook notebooks/<name>.ipynb, its library module (see
docs/pipeline.md).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from langneurons.base import paths
from langneurons.base.atomic import write_json
from langneurons.base.manifest import sha256
from langneurons.data.profile_data import HELDOUT_TEXTS, LAPE_CORPUS, SENTENCE_SETS, TRANSLATION_PAIRS

if TYPE_CHECKING:
    from langneurons.base.params import Params


class Fig:
    """The figure files, by what they show (CSV: the table behind a figure; no suffix: a PNG + PDF pair)."""

    AP_SUMMARY = "fig8_ap_summary.csv"
    AP_DISTRIBUTION = "fig8_ap_distribution"
    LAPE_SUMMARY = "lape_summary.csv"
    LAYER_DISTRIBUTION = "fig1_layer_distribution.csv"
    LAYER_DISTRIBUTION_PLOT = "fig1_layer_distribution"
    LAYER_KINDS = "layer_kinds.csv"
    OVERLAP = "fig2_overlap.csv"
    OVERLAP_PLOT = "fig2_overlap"
    OVERLAP_REFERENCE = "fig2_overlap_reference.csv"  # what overlap a null, and AP's rank correlation, would give
    STABILITY = "stability_split_half.csv"  # Jaccard of the selections made on two halves of the texts
    TARGET_RATES = "fig3_5_target_rates.csv"
    MAIN_RATES = "fig3_main_rates.csv"
    FLUENCY = "fig3_fluency.csv"  # perplexity under the unforced model and degenerate share, per condition
    EXAMPLES = "fig7_examples.csv"
    TARGET_RATE_PLOT = "fig3_target_rate"
    RATE_VS_N_PLOT = "fig4_rate_vs_n"
    TOP_BOTTOM_BOTH_PLOT = "fig5_top_bottom_both"
    TRANSLATION = "fig6_translation.csv"
    TRANSLATION_PLOT = "fig6_translation"
    AP_LAPE_OVERLAP = "fig9_overlap.csv"
    AP_LAPE_LAYERS = "fig9_layer_distribution.csv"
    AP_LAPE_FORCING = "fig10_forcing_rates.csv"
    AP_LAPE_DEACTIVATION = "fig10_deactivation.csv"
    AP_LAPE_SUMMARY = "fig10_summary.csv"
    AP_LAPE_PER_LANGUAGE = "fig10_per_language.csv"  # per language and method: what drives the summary's means
    AP_LAPE_UNITS_PLOT = "fig9_ap_vs_lape_units"
    AP_LAPE_EFFECTS_PLOT = "fig10_ap_vs_lape_effects"
    LANGUAGE_DISTRIBUTION = "generations/language_distribution.csv"  # in the run folder


COUNTS = "counts"  # tolerance of unit counts: COUNT_SHARE of N (scoring.n_per_side), at least 2
COUNT_SHARE = 0.02
TEXTS = "texts"  # a table of sampled texts, not numbers: differing texts are within tolerance
Tolerance = dict[str, float | str]  # column ("*": any) -> largest accepted |difference|, or COUNTS


@dataclass(frozen=True)
class StageDef:
    name: str  # notebooks/<name>.ipynb
    method: str | None  # "ap" or "lape": the stage studies that method's units (skipped without it); None: always runs
    params: tuple[str, ...]  # dotted param keys whose values change the outputs (the cache key)
    upstream: tuple[str, ...]  # stages whose outputs this stage reads
    outputs: tuple[str, ...]  # files or folders under the run directory that the stage writes
    cost: str  # make plan's cost model: small | analysis | activations | scoring | generation | translation | comparison
    model: bool = False  # reads the model's weights (its fingerprint joins the key)
    reads: tuple[str, ...] = ()  # from outside the run: SENTENCE_SETS, TRANSLATION_PAIRS, HELDOUT_TEXTS, LAPE_CORPUS
    needs_units: bool = False  # checked against the model's units before the run (N per side, LAPE's blocks)
    generates: bool = False  # generates text (the tokenizer needs a start token)
    tables: dict[str, Tolerance | str] = field(default_factory=dict)  # CSVs in paper_figures/<profile>/ -> check tolerances
    drawn: tuple[str, ...] = ()  # figures drawn as PNG + PDF (stems)
    run_files: tuple[str, ...] = ()  # files the notebook derives into runs/<profile>/ besides the cached outputs
    parts: bool = False  # its work is many independent parts (base/parts.py): LAUNCHER=slurm runs them as array
                         # tasks, then the notebook assembles them (run/shard_parts.py)

    @property
    def figures(self) -> tuple[str, ...]:
        """Every file the notebook writes into paper_figures/<profile>/."""
        return (*self.tables, *(f"{stem}.{ext}" for stem in self.drawn for ext in ("png", "pdf")))


# Model params that change the outputs of a stage that runs the model (how the weights are read)
MODEL_RUN = ("model.dtype", "model.device_map", "model.attn_implementation")
# LAPE's counting protocol and corpus (counted in 02; the filters top_rate etc. act in 03)
LAPE_COUNTING = tuple(f"selection.lape.{k}" for k in ("counting", "special_tokens", "window", "window_cap", "source", "hub",
                                                       "files_path", "max_tokens", "batch_size"))
# Params that never change a stage's outputs: names, folders, bookkeeping (read freely by every stage)
NOT_KEYED = ("profile", "description", "report_note", "force", "halve_batch_on_oom", "notebook_engine", "paper_model",
             "output_root", "figures_root", "release", "paper", "model.device", "scoring.unit_chunk", "launcher")

STAGES: tuple[StageDef, ...] = (
    StageDef("01_data_prep", None, ("languages", "data"), (), ("data",), "small", reads=(SENTENCE_SETS,)),
    StageDef("02_activations", None,
             (*MODEL_RUN, "activations.seq_len", "activations.batch_size", "activations.exact", "activations.storage_dtype",
              "selection.method", *LAPE_COUNTING),
             ("01_data_prep",), ("activations",), "activations", model=True, needs_units=True, reads=(LAPE_CORPUS,)),
    StageDef("03_scoring", None, ("languages", "scoring.n_per_side", "scoring.ap_thresholds", "selection"),
             ("01_data_prep", "02_activations"), ("scores", "selection", "lape"), "scoring", needs_units=True,
             tables={Fig.AP_SUMMARY: {"max_ap": 1e-6, "min_ap": 1e-6, "top_cutoff_ap": 1e-6, "bottom_cutoff_ap": 1e-6,
                                      "top_tie_width": COUNTS, "bottom_tie_width": COUNTS},
                     Fig.LAPE_SUMMARY: {"units": COUNTS, "shared_with_another_language": COUNTS, "mean_entropy": 0.05,
                                        "filter_value": 1e-3, "activation_bar": 1e-3, "kept_units": COUNTS,
                                        "jaccard_vs_texts_protocol": 0.05}},
             drawn=(Fig.AP_DISTRIBUTION,)),
    StageDef("04_analysis", "ap", ("languages", "scoring.n_per_side", "scoring.stability"), ("01_data_prep", "02_activations", "03_scoring"),
             ("analysis",), "analysis",
             tables={Fig.LAYER_DISTRIBUTION: {"count": COUNTS}, Fig.LAYER_KINDS: {"*": COUNTS},
                     Fig.OVERLAP: {"shared": COUNTS, "percent_of_n": 2.0},
                     Fig.OVERLAP_REFERENCE: {"*": 0.05, "chance_shared": COUNTS, "shared_top": COUNTS, "shared_bottom": COUNTS,
                                             "pool_units": COUNTS, "without_pair_shared_top": COUNTS, "percent_top": 2.0,
                                             "percent_bottom": 2.0, "without_pair_percent_top": 2.0},
                     Fig.STABILITY: {"*": 0.05}},
             drawn=(Fig.LAYER_DISTRIBUTION_PLOT, Fig.OVERLAP_PLOT)),
    # Rates are shares of 100 sampled texts. Measured: switching the CPU kernels (AVX-512 -> AVX2, MKL's
    # path) left the selections equal but moved main rates by up to 1 point and one sweep entry by 6.
    StageDef("05_intervention", "ap", ("languages", *MODEL_RUN, "scoring.n_per_side", "generation", "intervention",
                                        "fluency"),
             ("02_activations", "03_scoring"), ("generations/unconditional.parquet", "generations/unconditional.csv"),
             "generation", model=True, generates=True,
             tables={Fig.TARGET_RATES: {"target_rate": 8.0, "n": 0.0, "hits": 8.0, "low": 8.0, "high": 8.0},
                     Fig.MAIN_RATES: {"*": 10.0, "none": 5.0, "top": 5.0, "bottom": 5.0, "both": 5.0, "random": 5.0},
                     Fig.FLUENCY: {"*": 10.0, "n": 0.0, "median_ppl": 50.0, "ppl_low": 50.0, "ppl_high": 50.0},
                     Fig.EXAMPLES: TEXTS},
             drawn=(Fig.TARGET_RATE_PLOT, Fig.RATE_VS_N_PLOT, Fig.TOP_BOTTOM_BOTH_PLOT),
             run_files=(Fig.LANGUAGE_DISTRIBUTION,), parts=True),
    StageDef("06_translation", "ap", ("languages", *MODEL_RUN, "scoring.n_per_side", "intervention.value", "translation"),
             ("03_scoring",), ("generations/translation.parquet", "generations/translation.csv"), "translation", model=True,
             reads=(TRANSLATION_PAIRS,), generates=True,
             tables={Fig.TRANSLATION: {"target_rate": 3.0, "low": 3.0, "high": 3.0, "content_rate": 3.0, "content_low": 3.0,
                                      "content_high": 3.0, "bleu": 1.0, "language_name_only": 3.0, "empty": 3.0}},
             drawn=(Fig.TRANSLATION_PLOT,), parts=True),
    # AP vs LAPE: the matched sets follow both selections, the rates are sampled texts
    StageDef("07_ap_vs_lape", "lape",
             ("languages", *MODEL_RUN, "activations.seq_len", "selection", "generation", "comparison", "data.source",
              "data.files.path"),
             ("01_data_prep", "02_activations", "03_scoring"), ("comparison",), "comparison", model=True,
             reads=(HELDOUT_TEXTS,), generates=True,
             tables={Fig.AP_LAPE_OVERLAP: {"n": COUNTS, "ap_units_feeding_ffn": COUNTS, "shared": COUNTS,
                                           "shared_percent": 5.0, "chance_shared": 2.0, "block_overlap_percent": 5.0},
                     Fig.AP_LAPE_LAYERS: {"count": COUNTS},
                     Fig.AP_LAPE_FORCING: {"n_units": COUNTS, "n": 0.0, "none": 8.0, "none_low": 8.0, "none_high": 8.0,
                                           "forced": 8.0, "forced_low": 8.0, "forced_high": 8.0, "rise": 10.0,
                                           "rise_low": 10.0, "rise_high": 10.0},
                     Fig.AP_LAPE_DEACTIVATION: {"tokens": 0.0, "n_units": COUNTS, "ppl_base": 0.5, "ppl": 2.0,
                                                "ppl_change": 2.0, "log_ppl_change": 0.02},
                     Fig.AP_LAPE_SUMMARY: {"*": 2.0, "mean_units_per_language": COUNTS, "mean_rate_rise_points": 8.0,
                                           "languages_rise_above_0": 1.0, "languages_forced": 0.0},
                     Fig.AP_LAPE_PER_LANGUAGE: {"*": 2.0, "n_units": COUNTS, "log_ratio_diagonal": 0.02,
                                                "log_ratio_off_diagonal_median": 0.02, "rate_none": 8.0, "rate_forced": 8.0,
                                                "rise": 10.0, "rise_low": 10.0, "rise_high": 10.0}},
             drawn=(Fig.AP_LAPE_UNITS_PLOT, Fig.AP_LAPE_EFFECTS_PLOT), parts=True),
)
BY_NAME: dict[str, StageDef] = {s.name: s for s in STAGES}
IN_PARTS: tuple[str, ...] = tuple(s.name for s in STAGES if s.parts)
NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
STAGE_OF_FIGURE: dict[str, str] = {f: s.name for s in STAGES for f in s.figures}  # which stage writes each figure file
def reading(what: str) -> tuple[str, ...]:
    """The stages that read `what` (SENTENCE_SETS, TRANSLATION_PAIRS, HELDOUT_TEXTS) from outside the run."""
    return tuple(s.name for s in STAGES if what in s.reads)


TOLERANCES: dict[str, Tolerance | str] = {f: tol for s in STAGES for f, tol in s.tables.items()}


def runs_with(stage: str, p: Params) -> bool:
    """Whether the stage has anything to do under selection.method (make replicate skips it otherwise)."""
    method = BY_NAME[stage].method
    return method is None or method in p.methods


def keyed(stage: str, read: str) -> bool:
    """Whether a param the stage read is part of its cache key (or never changes outputs)."""
    spec = BY_NAME[stage]
    covering = (*spec.params, *NOT_KEYED, *(("model",) if spec.model else ()))
    return any(read == k or read.startswith(k + ".") for k in covering)


def _derived_record_path(run_dir: Path, stage: str) -> Path:
    return run_dir / "stamps" / f"{stage}.derived.json"


def _stamp_digest(run_dir: Path, stage: str) -> str | None:
    try:
        return json.loads((run_dir / "stamps" / f"{stage}.json").read_text())["digest"]
    except (OSError, ValueError, KeyError):
        return None


def _notebook_digest(stage: str) -> str | None:
    """The notebook's checksum: an edited notebook reruns (on the cached outputs) to redraw its files."""
    nb = paths.NOTEBOOKS_DIR / f"{stage}.ipynb"
    return sha256(nb) if nb.is_file() else None


def record_derived(stage: str, run_dir: Path, figures_dir: Path, since: float) -> None:
    """After a notebook ran: the checksums of the derived files it wrote (modified since `since`,
    a time.time()), tied to the stage's current stamp."""
    spec = BY_NAME[stage]
    digest = _stamp_digest(run_dir, stage)
    if digest is None:
        return

    def written(root: Path, names: tuple[str, ...]) -> dict[str, str]:
        return {n: sha256(root / n) for n in names if (root / n).is_file() and (root / n).stat().st_mtime >= since}

    write_json(_derived_record_path(run_dir, stage), {"stamp": digest, "notebook": _notebook_digest(stage),
                                                      "figures": written(figures_dir, spec.figures),
                                                      "run": written(run_dir, spec.run_files),
                                                      "recorded": time.strftime("%Y-%m-%d %H:%M:%S")})


def derived_are_current(stage: str, run_dir: Path, figures_dir: Path) -> bool:
    """Whether the stage's last notebook run derived its files from the outputs now stamped, and
    every one of them (and the executed notebook) is still there, unchanged."""
    try:
        record = json.loads(_derived_record_path(run_dir, stage).read_text())
    except (OSError, ValueError):
        return False
    if record.get("stamp") != _stamp_digest(run_dir, stage) or record.get("notebook") != _notebook_digest(stage) or not (run_dir / "notebooks" / f"{stage}.ipynb").is_file():
        return False
    files = [(figures_dir / n, h) for n, h in record.get("figures", {}).items()]
    files += [(run_dir / n, h) for n, h in record.get("run", {}).items()]
    return all(f.is_file() and sha256(f) == h for f, h in files)
