"""Every path in the project derives from one root, so notebooks run from any working directory;
a run's files live under runs/<profile>/ and paper_figures/<profile>/ (RunLayout)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # params imports this module
    from langneurons.base.params import Params

PROJECT_ROOT = Path(__file__).resolve().parents[3]
PARAMS_DIR = PROJECT_ROOT / "params"
PROFILES_DIR = PARAMS_DIR / "profiles"
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"


def user_cache() -> Path:
    """This project's folder in the user cache ($XDG_CACHE_HOME, else ~/.cache): fetched and derived files."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "langneurons"


def resolve(path: str | Path) -> Path:
    """A path from params: absolute as given, otherwise relative to the project root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (PROJECT_ROOT / p).resolve()


@dataclass(frozen=True)
class RunLayout:
    root: Path  # runs/<profile>
    figures: Path  # paper_figures/<profile>

    @classmethod
    def of(cls, p: Params) -> RunLayout:
        return cls(root=p.run_dir, figures=resolve(p.figures_root) / p.profile)

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
