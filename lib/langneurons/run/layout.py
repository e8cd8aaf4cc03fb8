"""Where a run's files live: runs/<profile>/... and paper_figures/<profile>/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import paths
from .params import Params


@dataclass(frozen=True)
class RunLayout:
    root: Path  # runs/<profile>
    figures: Path  # paper_figures/<profile>

    @classmethod
    def of(cls, p: Params) -> RunLayout:
        return cls(root=p.run_dir, figures=paths.resolve(p.figures_root) / p.profile)

    @property
    def params_file(self) -> Path:
        return self.root / "params.yaml"

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def activations(self) -> Path:
        return self.root / "activations"

    @property
    def scores(self) -> Path:
        return self.root / "scores"

    @property
    def selection(self) -> Path:
        return self.root / "selection"

    @property
    def analysis(self) -> Path:
        return self.root / "analysis"

    @property
    def generations(self) -> Path:
        return self.root / "generations"

    @property
    def lape(self) -> Path:
        return self.root / "lape"

    @property
    def comparison(self) -> Path:
        return self.root / "comparison"
