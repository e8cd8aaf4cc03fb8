"""Course assignments: how long each takes to run solved and to grade, against the 2-minute budget.

Per assignment: `make assignments` (otter assign), the solved notebook run top to bottom as a
student would (nbclient, public tests from the notebook), and `make grade` of the solved and the
blank student notebook (otter run with the grading guard). The ratio is the grading time over the
issue's budget of 120 s per notebook on a 2-core laptop CPU (under 1 = within budget).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import langneurons  # noqa: F401  (first: pins the CPU kernels before torch loads)
import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, print_table  # noqa: E402

from langneurons.course import build, grade  # noqa: E402

BUDGET_S = 120.0


def run_solved(dist: Path, name: str, scratch: Path) -> float:
    folder = scratch / f"run-{name}"
    shutil.copytree(dist / name / "autograder", folder)
    nb = nbformat.read(folder / f"{name}.ipynb", as_version=4)
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="assignment 1 only")
    args = parser.parse_args()
    masters = build.masters()[:1] if args.quick else build.masters()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        dist = scratch / "dist"
        for master in masters:
            name = master.stem
            t0 = time.perf_counter()
            build.build_one(master, dist)
            built = time.perf_counter() - t0
            solved_run = run_solved(dist, name, scratch)
            subs = scratch / f"subs-{name}"
            subs.mkdir()
            shutil.copy(dist / name / "autograder" / f"{name}.ipynb", subs / f"{name}-solved.ipynb")
            shutil.copy(dist / name / "student" / f"{name}.ipynb", subs / f"{name}-blank.ipynb")
            table = grade.grade_folder(subs, dist).set_index("notebook")
            solved, blank = table.loc[f"{name}-solved.ipynb"], table.loc[f"{name}-blank.ipynb"]
            rows.append({"assignment": name, "build_s": built, "solved_run_s": solved_run,
                         "grade_solved_s": float(solved["seconds"]), "grade_blank_s": float(blank["seconds"]),
                         "solved_score": f"{solved['score']:g}/{solved['max_score']:g}",
                         "blank_score": f"{blank['score']:g}/{blank['max_score']:g}",
                         "grading_vs_budget": max(float(solved["seconds"]), float(blank["seconds"])) / BUDGET_S})
    print_table(rows)
    finish("assignments", args.quick, {"budget_s": BUDGET_S, "rows": rows})


if __name__ == "__main__":
    main()
