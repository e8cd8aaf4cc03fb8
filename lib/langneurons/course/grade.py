"""`make grade SUBMISSIONS=<folder>`: every notebook in the folder graded by otter-grader, locally.

Each notebook is matched to its assignment (otter's `assignment_name` in the notebook metadata,
else the assignment name in the file name) and graded with `otter run` against
assignments/dist/<name>/autograder/autograder.zip, in a child process of its own. Before its first
cell the guard (guard.py) is put in: a time limit per cell, a record of cells that raised, and
refusal of reads of the grader's files. A notebook that crashes, runs past the limits or reads the
hidden tests scores what otter could grade and is reported; it never stops the others.

Writes <folder>/grades.csv (notebook, assignment, score, max_score, status, seconds, questions),
<folder>/grades_by_question.csv and, per notebook, otter's log and results (every test's message) in <folder>/grading_logs/.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from langneurons.base.atomic import write_csv, write_text
from langneurons.course.build import AUTOGRADER_ZIP, DIST_DIR
from langneurons.course.guard import ENV_CELL_LIMIT, ENV_LOG, ENV_PROTECT

GUARD_CELL = "from langneurons.course.guard import arm as _arm_grading_guard\n_arm_grading_guard()"
LOG_DIR = "grading_logs"
OUTPUT_FILES = ("grades.csv", "grades_by_question.csv")


class GradeError(RuntimeError):
    """The submissions cannot be graded at all (no folder, no assignments built)."""


@dataclass
class Graded:
    notebook: str
    assignment: str
    score: float
    max_score: float
    status: str
    seconds: float
    questions: list[tuple[str, float, float]] = field(default_factory=list)


def built_assignments(dist_dir: Path) -> dict[str, Path]:
    """Assignment name -> its autograder.zip, for every assignment `make assignments` built."""
    found = {p.parent.parent.name: p for p in sorted(dist_dir.glob(f"*/autograder/{AUTOGRADER_ZIP}"))}
    if not found:
        raise GradeError(f"no autograders in {dist_dir}: run `make assignments` first")
    return found


def question_points(autograder_zip: Path) -> dict[str, float]:
    """Each autograded question's points, read from its test file (`points = N`) without running it."""
    points = {}
    with zipfile.ZipFile(autograder_zip) as z:
        for entry in sorted(n for n in z.namelist() if n.startswith("tests/") and n.endswith(".py")):
            for node in ast.parse(z.read(entry).decode("utf-8")).body:
                if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["points"]:
                    points[Path(entry).stem] = float(ast.literal_eval(node.value))
    return points


def read_notebook(path: Path) -> dict | None:
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return nb if isinstance(nb, dict) and isinstance(nb.get("cells"), list) else None


def assignment_of(path: Path, nb: dict | None, known: list[str]) -> str | None:
    """otter's assignment_name from the notebook, else the longest known name in the file name."""
    name = ((nb or {}).get("metadata", {}).get("otter", {}) or {}).get("assignment_name")
    if name in known:
        return name
    in_name = [k for k in known if k in path.stem]
    return max(in_name, key=len) if in_name else None


def with_guard(nb: dict) -> dict:
    cell = {"cell_type": "code", "execution_count": None, "id": "grading-guard", "metadata": {},
            "outputs": [], "source": GUARD_CELL}
    return {**nb, "cells": [cell, *nb["cells"]]}


def _events(log: Path) -> list[dict]:
    if not log.is_file():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]


def _status(events: list[dict], failure: str | None) -> str:
    parts = []
    if failure:
        parts.append(failure)
    reads = [e for e in events if e["kind"] == "grader_files"]
    if reads:
        parts.append(f"tried to read the grader's files ({'/'.join(Path(reads[0]['path']).parts[-2:])}, "
                     f"{len(reads)} attempt{'s' * (len(reads) > 1)}, refused) in `{reads[0]['code']}`")
    slow = [e for e in events if e["kind"] == "time_limit"]
    if slow:
        parts.append(f"{len(slow)} cell{'s' * (len(slow) > 1)} stopped at the {slow[0]['seconds']:g} s "
                     f"cell time limit: `{slow[0]['code']}`")
    errors = [e for e in events if e["kind"] == "error" and not e["error"].startswith(("CellTimeLimit", "PermissionError: grading:"))]
    if errors:
        parts.append(f"{len(errors)} cell{'s' * (len(errors) > 1)} raised: {errors[0]['error']} in `{errors[0]['code']}`")
    return "; ".join(parts) if parts else "ok"


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def grade_one(path: Path, nb: dict | None, assignment: str, autograder: Path, log_dir: Path,
              time_limit: float, cell_limit: float, protect: list[Path], threads: int = 0) -> Graded:
    """One notebook (`nb`: its parsed JSON, None if unreadable) through `otter run` in a child
    process (its own session, killed at time_limit)."""
    points = question_points(autograder)
    started = time.monotonic()
    if nb is None:
        return Graded(path.name, assignment, 0.0, sum(points.values()), "not a readable notebook (invalid JSON)", 0.0,
                      [(q, 0.0, p) for q, p in points.items()])
    with tempfile.TemporaryDirectory(prefix="grade-") as tmp:
        work = Path(tmp)
        submission = work / "submission" / f"{assignment}.ipynb"  # the name its grader = otter.Notebook(...) opens
        submission.parent.mkdir()
        submission.write_text(json.dumps(with_guard(nb)), encoding="utf-8")
        (work / "tmp").mkdir()
        out = work / "out"
        out.mkdir()
        events_log = work / "events.jsonl"
        env = {**os.environ, ENV_LOG: str(events_log), ENV_CELL_LIMIT: str(cell_limit),
               ENV_PROTECT: os.pathsep.join(str(p.resolve()) for p in protect), "TMPDIR": str(work / "tmp"),
               "PYTHONWARNINGS": "ignore"}
        if threads:  # several notebooks at once: split the cores between their kernels
            env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
        cmd = [sys.executable, "-m", "langneurons.course.grade", "--one", str(submission),
               "--autograder", str(autograder), "--out", str(out)]
        log_path = log_dir / f"{path.stem}.log"
        failure = None
        with open(work / "otter.log", "w", encoding="utf-8") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            try:
                code = proc.wait(timeout=time_limit)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                proc.wait()
                code = None
                failure = f"time limit: grading stopped after {time_limit:g} s"
            _kill_group(proc)  # a kernel left behind by a crash
        otter_log = (work / "otter.log").read_text(encoding="utf-8", errors="replace")
        write_text(log_path, otter_log)
        results = out / "results.json"
        tests = json.loads(results.read_text(encoding="utf-8"))["tests"] if results.is_file() else []
        if results.is_file():  # every test's message, hidden ones included: what the teacher reads
            write_text(log_dir / f"{path.stem}.results.json", results.read_text(encoding="utf-8"))
        if failure is None and (code != 0 or not results.is_file()):
            last = [ln for ln in otter_log.splitlines() if ln.strip()]
            failure = f"crashed: {last[-1][:160] if last else 'otter exited with ' + str(code)}"
        events = _events(events_log)
    scored = {t["name"]: float(t.get("score") or 0.0) for t in tests if t.get("max_score") is not None}
    questions = [(q, scored.get(q, 0.0), p) for q, p in points.items()]
    return Graded(path.name, assignment, sum(s for _, s, _ in questions), sum(points.values()),
                  _status(events, failure), round(time.monotonic() - started, 1), questions)


def grade_folder(folder: Path, dist_dir: Path = DIST_DIR, time_limit: float = 600.0,
                 cell_limit: float = 120.0, jobs: int = 1) -> pd.DataFrame:
    """Grade every .ipynb in `folder`, `jobs` at a time; write grades.csv and grades_by_question.csv there (rows by name)."""
    if jobs < 1:
        raise GradeError(f"jobs={jobs}: grade at least one notebook at a time (JOBS=1, 2, ...)")
    if not folder.is_dir():
        raise GradeError(f"{folder} is not a folder: SUBMISSIONS=<folder holding the students' .ipynb files>")
    notebooks = sorted(p for p in folder.glob("*.ipynb") if p.is_file())
    if not notebooks:
        raise GradeError(f"no .ipynb files in {folder}")
    autograders = built_assignments(dist_dir)
    log_dir = folder / LOG_DIR
    log_dir.mkdir(exist_ok=True)
    protect = [z.parent for z in autograders.values()]  # every solved notebook and every test
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else 0  # torch threads per kernel: jobs x threads = cores

    def grade_path(path: Path) -> Graded:
        nb = read_notebook(path)
        name = assignment_of(path, nb, list(autograders))
        if name is None:
            return Graded(path.name, "", 0.0, float("nan"), "unknown assignment: neither the notebook metadata "
                          f"nor the file name names one of {sorted(autograders)}", 0.0)
        return grade_one(path, nb, name, autograders[name], log_dir, time_limit, cell_limit, protect, threads)

    graded = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:  # each job is a child process: threads only wait
        for done, future in enumerate(as_completed([pool.submit(grade_path, p) for p in notebooks]), 1):
            g = future.result()
            print(f"[{done}/{len(notebooks)}] {g.notebook}: {g.assignment or '?'} {g.score:g}/{g.max_score:g} "
                  f"({g.seconds:.0f} s) {g.status}", flush=True)
            graded.append(g)
    graded.sort(key=lambda g: g.notebook)
    table = pd.DataFrame({
        "notebook": [g.notebook for g in graded], "assignment": [g.assignment for g in graded],
        "score": [g.score for g in graded], "max_score": [g.max_score for g in graded],
        "status": [g.status for g in graded], "seconds": [g.seconds for g in graded],
        "questions": ["; ".join(f"{q} {s:g}/{p:g}" for q, s, p in g.questions) for g in graded],
    })
    by_question = pd.DataFrame(
        [(g.notebook, g.assignment, q, s, p) for g in graded for q, s, p in g.questions],
        columns=["notebook", "assignment", "question", "score", "max_score"])
    write_csv(folder / OUTPUT_FILES[0], table)
    write_csv(folder / OUTPUT_FILES[1], by_question)
    return table


def _run_otter(submission: Path, autograder: Path, out: Path) -> int:
    """The child: otter's own local grading (otter run), no Docker."""
    from otter.run import main as otter_run

    otter_run(str(submission), autograder=str(autograder), output_dir=str(out), no_logo=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Grade a folder of submitted notebooks with otter-grader.")
    parser.add_argument("submissions", nargs="?", type=Path, help="folder of .ipynb files")
    parser.add_argument("--dist", type=Path, default=DIST_DIR, help="where `make assignments` built the autograders")
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds per notebook before grading stops")
    parser.add_argument("--cell-time-limit", type=float, default=120.0, help="seconds per cell before it is interrupted")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks graded at once (each needs ~1 GB of memory)")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--autograder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one is not None:
        return _run_otter(args.one, args.autograder, args.out)
    if args.submissions is None:
        parser.error("name the folder: make grade SUBMISSIONS=<folder>")
    try:
        table = grade_folder(args.submissions, args.dist, args.time_limit, args.cell_time_limit, args.jobs)
    except GradeError as e:
        print(f"make grade: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.submissions / OUTPUT_FILES[0]} ({len(table)} notebooks) and {OUTPUT_FILES[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
