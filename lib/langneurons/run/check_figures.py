"""`make check-figures`: did this run replicate the committed figures? One line per figure.

Every figure is drawn from a CSV beside it in paper_figures/<profile>/. This compares each CSV of
the run (the working tree) with the committed one (git HEAD), column by column:
- `same`: every value equal;
- `within tolerance`: keys equal, numbers within the stated tolerance (another CPU, another BLAS,
  another thread count can move a near-tied unit across the top-N cut-off or flip a sampled token);
- `differs`: a key differs or a number is beyond its tolerance (the largest difference is named).
The command exits non-zero only when a figure differs. Tolerances are stated per figure in the stage registry (run/stages.py).
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from langneurons.base import paths
from langneurons.base.params import ParamsError, load_params
from langneurons.run.stages import COUNT_SHARE, COUNTS, STAGE_OF_FIGURE, TEXTS, TOLERANCES

@dataclass(frozen=True)
class Verdict:
    file: str
    status: str  # same | within tolerance | differs | new | missing | not run
    detail: str = ""

    def line(self) -> str:
        return f"{self.file:<28} {self.status}" + (f" ({self.detail})" if self.detail else "")


def committed_text(path: Path) -> str | None:
    """The file as committed at HEAD, or None when it is not committed (or git is unavailable)."""
    try:
        rel = path.resolve().relative_to(paths.PROJECT_ROOT)
        out = subprocess.run(["git", "show", f"HEAD:{rel.as_posix()}"], cwd=paths.PROJECT_ROOT, capture_output=True, check=True)
    except (ValueError, OSError, subprocess.CalledProcessError):  # outside the project, not committed, no git
        return None
    return out.stdout.decode("utf-8")


def _tolerance(spec: dict[str, float | str], column: str, n_per_side: int) -> float:
    tol = spec.get(column, spec.get("*", 0.0))
    return max(2.0, COUNT_SHARE * n_per_side) if tol == COUNTS else float(tol)


def compare(name: str, run: pd.DataFrame, committed: pd.DataFrame, n_per_side: int) -> Verdict:
    """same / within tolerance / differs for one figure's table."""
    if list(run.columns) != list(committed.columns) or len(run) != len(committed):
        return Verdict(name, "differs", f"columns or rows changed: {list(committed.columns)} x {len(committed)} "
                                        f"-> {list(run.columns)} x {len(run)}")
    if TOLERANCES.get(name) == TEXTS:
        changed = int((run.astype(str).to_numpy() != committed.astype(str).to_numpy()).any(axis=1).sum())
        return Verdict(name, "same") if changed == 0 else Verdict(
            name, "within tolerance", f"{changed} of {len(run)} example texts differ: they are samples, not numbers")
    spec = TOLERANCES.get(name, {})
    assert isinstance(spec, dict)
    worst: tuple[float, str] = (0.0, "")
    for column in run.columns:
        a, b = run[column], committed[column]
        if not (pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b)):
            if not a.astype(str).equals(b.astype(str)):
                return Verdict(name, "differs", f"column {column} holds other keys")
            continue
        diff = np.abs(a.to_numpy(dtype=float) - b.to_numpy(dtype=float))
        diff = np.where(np.isnan(a.to_numpy(dtype=float)) & np.isnan(b.to_numpy(dtype=float)), 0.0, diff)
        largest = float(np.nan_to_num(diff, nan=np.inf).max()) if len(diff) else 0.0
        tol = _tolerance(spec, column, n_per_side)
        if largest > tol:
            return Verdict(name, "differs", f"{column} by {largest:g}, tolerance {tol:g}")
        if largest > worst[0]:
            worst = (largest, f"largest: {column} by {largest:g}, tolerance {tol:g}")
    return Verdict(name, "same") if worst[0] == 0 else Verdict(name, "within tolerance", worst[1])


def check(figures_dir: Path, n_per_side: int, run_dir: Path) -> list[Verdict]:
    """A verdict for every CSV of the run's figures and every committed one (run_dir: the run's
    outputs; a table whose stage has not finished there was not made by this run)."""
    verdicts = []
    names = sorted({p.name for p in figures_dir.glob("*.csv")} | set(TOLERANCES))
    for name in names:
        path = figures_dir / name
        committed = committed_text(path) if path.parent.is_dir() else None
        if committed is None and not path.is_file():
            continue
        stage = STAGE_OF_FIGURE.get(name)
        if stage and not (run_dir / "stamps" / f"{stage}.json").is_file():
            verdicts.append(Verdict(name, "not run", f"{stage} has not finished in {run_dir}: nothing of this run to compare"))
        elif committed is None:
            verdicts.append(Verdict(name, "new", "not committed: nothing to compare with"))
        elif not path.is_file():
            verdicts.append(Verdict(name, "missing", "committed but not written by this run (stage skipped?)"))
        else:
            read = dict(keep_default_na=False) if TOLERANCES.get(name) == TEXTS else {}
            verdicts.append(compare(name, pd.read_csv(path, **read), pd.read_csv(io.StringIO(committed), **read), n_per_side))
    return verdicts


def summary(verdicts: list[Verdict]) -> str:
    counts = {s: sum(v.status == s for v in verdicts)
              for s in ("same", "within tolerance", "differs", "missing", "not run", "new")}
    tail = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    return "\n".join([v.line() for v in verdicts] + [f"figures vs committed: {tail or 'nothing to compare'}"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--set", default="", help="the same overrides as the run")
    args = parser.parse_args(argv)
    try:
        p = load_params(args.profile, args.set.split(), check_files=False)
    except ParamsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    figures = paths.resolve(p.figures_root) / p.profile
    verdicts = check(figures, p.scoring.n_per_side, p.run_dir)
    print(summary(verdicts))
    return 1 if any(v.status == "differs" for v in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
