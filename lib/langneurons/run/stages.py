"""The pipeline's stages in order, and what each one is: its notebook, the method it studies, and
the files it derives from its cached outputs (figures and the tables behind them).

A notebook first reuses or computes its stage's outputs (cache.py), then draws figures and tables
from them. The derived files are listed here so that `make replicate` can tell, without starting a
kernel, that a reused stage has nothing left to do: its outputs match their stamp and every derived
file is the one the stage last wrote (derived_are_current).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..model.manifest import sha256
from .atomic import write_json


@dataclass(frozen=True)
class StageDef:
    name: str  # notebooks/<name>.ipynb
    method: str | None  # "ap" or "lape": the stage studies that method's units (skipped without it); None: always runs
    figures: tuple[str, ...] = ()  # files the notebook writes into paper_figures/<profile>/
    run_files: tuple[str, ...] = ()  # files the notebook derives into runs/<profile>/ besides the cached outputs


def _drawn(*stems: str) -> tuple[str, ...]:
    """A figure's PNG and PDF."""
    return tuple(f"{stem}.{ext}" for stem in stems for ext in ("png", "pdf"))


STAGES: tuple[StageDef, ...] = (
    StageDef("01_data_prep", None),
    StageDef("02_activations", None),
    StageDef("03_scoring", None, ("fig8_ap_summary.csv", "lape_summary.csv", *_drawn("fig8_ap_distribution"))),
    StageDef("04_analysis", "ap", ("fig1_layer_distribution.csv", "layer_kinds.csv", "fig2_overlap.csv",
                                   *_drawn("fig1_layer_distribution", "fig2_overlap"))),
    StageDef("05_intervention", "ap", ("fig3_5_target_rates.csv", "fig3_main_rates.csv", "fig7_examples.csv",
                                       *_drawn("fig3_target_rate", "fig4_rate_vs_n", "fig5_top_bottom_both")),
             ("generations/language_distribution.csv",)),
    StageDef("06_translation", "ap", ("fig6_translation.csv", *_drawn("fig6_translation"))),
    StageDef("07_ap_vs_lape", "lape", ("fig9_overlap.csv", "fig9_layer_distribution.csv", "fig10_forcing_rates.csv",
                                       "fig10_deactivation.csv", "fig10_summary.csv",
                                       *_drawn("fig9_ap_vs_lape_units", "fig10_ap_vs_lape_effects"))),
)
BY_NAME: dict[str, StageDef] = {s.name: s for s in STAGES}
NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
STAGE_OF_FIGURE: dict[str, str] = {f: s.name for s in STAGES for f in s.figures}  # which stage writes each figure file


def _derived_record_path(run_dir: Path, stage: str) -> Path:
    return run_dir / "stamps" / f"{stage}.derived.json"


def _stamp_digest(run_dir: Path, stage: str) -> str | None:
    try:
        return json.loads((run_dir / "stamps" / f"{stage}.json").read_text())["digest"]
    except (OSError, ValueError, KeyError):
        return None


def record_derived(stage: str, run_dir: Path, figures_dir: Path, since: float) -> None:
    """After a notebook ran: the checksums of the derived files it wrote (modified since `since`,
    a time.time()), tied to the stage's current stamp."""
    spec = BY_NAME[stage]
    digest = _stamp_digest(run_dir, stage)
    if digest is None:
        return

    def written(root: Path, names: tuple[str, ...]) -> dict[str, str]:
        return {n: sha256(root / n) for n in names if (root / n).is_file() and (root / n).stat().st_mtime >= since}

    write_json(_derived_record_path(run_dir, stage), {"stamp": digest, "figures": written(figures_dir, spec.figures),
                                                      "run": written(run_dir, spec.run_files),
                                                      "recorded": time.strftime("%Y-%m-%d %H:%M:%S")})


def derived_are_current(stage: str, run_dir: Path, figures_dir: Path) -> bool:
    """Whether the stage's last notebook run derived its files from the outputs now stamped, and
    every one of them (and the executed notebook) is still there, unchanged."""
    try:
        record = json.loads(_derived_record_path(run_dir, stage).read_text())
    except (OSError, ValueError):
        return False
    if record.get("stamp") != _stamp_digest(run_dir, stage) or not (run_dir / "notebooks" / f"{stage}.ipynb").is_file():
        return False
    files = [(figures_dir / n, h) for n, h in record.get("figures", {}).items()]
    files += [(run_dir / n, h) for n, h in record.get("run", {}).items()]
    return all(f.is_file() and sha256(f) == h for f, h in files)
