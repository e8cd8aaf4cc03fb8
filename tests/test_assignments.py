"""Course assignments: `make assignments` (otter assign) and `make grade` (otter run) end to end.

The solved notebooks must score full marks, the student notebooks as handed out must run cleanly
and score 0 on every autograded question, the build must give the same bytes twice, and a
submission that crashes, loops or reads the hidden tests is reported without stopping the others.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from langneurons.course import build, grade
from langneurons.course.guard import ENV_PROTECT, Guard

NAMES = ["a1_responses", "a2_expertise", "a3_control", "a4_experiment", "a5_ap_vs_lape"]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")  # built once per worker (module scope rebuilds it when xdist interleaves)
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    for master in build.masters():
        build.build_one(master, out)
    return out


def _processes_with(text: str, where: str = "cmdline") -> list[str]:
    """Running processes whose command line (or environment) mentions `text` (Linux /proc)."""
    found = []
    for entry in Path("/proc").glob(f"[0-9]*/{where}"):
        try:
            line = entry.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in line:
            found.append(line)
    return found


def _cell(source: str) -> dict:
    return {"cell_type": "code", "execution_count": None, "id": "x", "metadata": {}, "outputs": [], "source": source}


def _with_cells(notebook: Path, at: int, *sources: str) -> dict:
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    nb["cells"][at:at] = [_cell(s) for s in sources]
    return nb


def test_sources_are_clean_masters():
    """One master per assignment, named as its config says, stored without outputs."""
    assert [m.stem for m in build.masters()] == NAMES
    for master in build.masters():
        nb = nbformat.read(master, as_version=4)
        config = [c for c in nb.cells if c.cell_type == "raw" and c.source.startswith("# ASSIGNMENT CONFIG")]
        assert len(config) == 1 and f"name: {master.stem}\n" in config[0].source
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


@pytest.mark.xdist_group("course")
def test_build_layout_and_same_bytes_twice(dist: Path, tmp_path: Path):
    for master in build.masters():
        build.build_one(master, tmp_path)
    assert _files(tmp_path) == _files(dist), "make assignments must give the same bytes every time"
    for name in NAMES:
        student = dist / name / "student" / f"{name}.ipynb"
        solved = dist / name / "autograder" / f"{name}.ipynb"
        assert [p.name for p in (dist / name / "student").iterdir()] == [f"{name}.ipynb"]
        text = student.read_text(encoding="utf-8")
        assert "BEGIN SOLUTION" not in text and "hidden=True" not in text, "the student version leaks solutions"
        assert "hidden=False" in json.dumps(json.loads(text)["metadata"]["otter"]["tests"]), "public tests travel with it"
        with zipfile.ZipFile(dist / name / "autograder" / build.AUTOGRADER_ZIP) as z:
            tests = [n for n in z.namelist() if n.startswith("tests/")]
            assert tests and all(z.getinfo(n).date_time == build.ZIP_TIME for n in z.namelist())
            assert any("hidden=True" in z.read(n).decode() for n in tests)
            assert sorted(tests) == sorted(f"tests/{p.name}" for p in (dist / name / "autograder" / "tests").iterdir())
        assert solved.is_file()


@pytest.mark.slow
@pytest.mark.xdist_group("course")
def test_students_notebooks_run_as_handed_out(dist: Path, tmp_path: Path):
    """Student mode (public tests from the notebook itself, no grader): top to bottom without an exception.

    Run by papermill in this process (langneurons' in-process engine): the same cells, without a kernel
    start per notebook (the graded blank notebooks run in kernels, through otter)."""
    import papermill

    from langneurons.run.inprocess import NAME as IN_PROCESS

    for name in NAMES:
        folder = tmp_path / name
        shutil.copytree(dist / name / "student", folder)
        nb = papermill.execute_notebook(str(folder / f"{name}.ipynb"), str(folder / "executed.ipynb"), engine_name=IN_PROCESS,
                                        cwd=str(folder), progress_bar=False)
        errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"{name}: {errors[0]['ename']}: {errors[0]['evalue']}"
        checks = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("grader.check(")]
        assert checks and all(c.outputs for c in checks), f"{name}: a public test printed nothing"


@pytest.fixture(scope="session")  # built once per worker (module scope rebuilds it when xdist interleaves)
def graded(dist: Path, tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """One folder: every solved and every blank notebook, a broken one, an unreadable one and a stray one."""
    folder = tmp_path_factory.mktemp("submissions")
    for name in NAMES:
        shutil.copy(dist / name / "autograder" / f"{name}.ipynb", folder / f"{name}-solved.ipynb")
        shutil.copy(dist / name / "student" / f"{name}.ipynb", folder / f"{name}-blank.ipynb")
    solved = dist / "a1_responses" / "autograder" / "a1_responses.ipynb"
    broken = _with_cells(solved, 6,
                         "raise RuntimeError('student bug')",
                         "import glob\nleaked = glob.glob('tests/*')",
                         "leaked = open('tests/q2.py').read()",
                         "import time\nwhile True:\n    time.sleep(0.05)")
    (folder / "a2_expertise-carol.ipynb").write_text("{ not json", encoding="utf-8")
    stray = json.loads(solved.read_text(encoding="utf-8"))
    del stray["metadata"]["otter"]
    (folder / "stray.ipynb").write_text(json.dumps(stray), encoding="utf-8")
    # a generous cell limit for the honest notebooks (a busy CI machine, the other test worker beside them) ...
    table = grade.grade_folder(folder, dist, time_limit=600, cell_limit=300, jobs=2)
    # ... and a short one for bob, whose endless loop it has to stop
    (folder / "bob").mkdir()
    (folder / "bob" / "bob.ipynb").write_text(json.dumps(broken), encoding="utf-8")  # assignment from the metadata
    bob = grade.grade_folder(folder / "bob", dist, time_limit=300, cell_limit=20, jobs=1)
    return folder, pd.concat([table, bob], ignore_index=True)


@pytest.mark.slow
@pytest.mark.xdist_group("course")
def test_grades_csv(graded):
    folder, table = graded
    on_disk = pd.read_csv(folder / "grades.csv")
    assert list(on_disk.columns[:4]) == ["notebook", "assignment", "score", "max_score"]
    assert sorted(on_disk["notebook"]) == sorted(p.name for p in folder.glob("*.ipynb"))
    by_question = pd.read_csv(folder / "grades_by_question.csv")
    assert set(by_question.columns) == {"notebook", "assignment", "question", "score", "max_score"}
    assert (folder / grade.LOG_DIR / "a1_responses-solved.log").is_file()


@pytest.mark.slow
@pytest.mark.xdist_group("course")
def test_solved_notebooks_score_full_marks(graded):
    _, table = graded
    solved = table[table["notebook"].str.endswith("-solved.ipynb")]
    assert len(solved) == len(NAMES)
    for row in solved.itertuples():
        assert row.status == "ok" and row.max_score > 0 and row.score == row.max_score, row


@pytest.mark.slow
@pytest.mark.xdist_group("course")
def test_blank_notebooks_run_and_score_zero(graded):
    folder, table = graded
    blank = table[table["notebook"].str.endswith("-blank.ipynb")]
    assert (blank["status"] == "ok").all(), blank[["notebook", "status"]].to_string()  # no cell raised
    by_question = pd.read_csv(folder / "grades_by_question.csv")
    rows = by_question[by_question["notebook"].str.endswith("-blank.ipynb")]
    assert len(rows) >= 2 * len(NAMES) - 1 and (rows["score"] == 0).all(), rows.to_string()


@pytest.mark.slow
@pytest.mark.xdist_group("course")
def test_broken_submission_is_reported_and_keeps_what_it_earned(graded):
    _, table = graded
    bob = table.set_index("notebook").loc["bob.ipynb"]
    assert bob["assignment"] == "a1_responses"
    assert bob["score"] == bob["max_score"]  # its functions are right: the crash, the loop and the reads cost nothing else
    assert "raised: RuntimeError: student bug" in bob["status"]
    assert "tried to read the grader's files" in bob["status"] and "3 attempts" not in bob["status"]
    assert "2 attempts, refused" in bob["status"]
    assert "cell time limit" in bob["status"]


def _hidden_test_lines(test_file: Path) -> set[str]:
    """The statements of a test file's hidden tests (those a student must never see), one per line."""
    import ast

    source = test_file.read_text(encoding="utf-8")
    lines: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        hidden = isinstance(node, ast.FunctionDef) and any(
            isinstance(d, ast.Call) and any(k.arg == "hidden" and getattr(k.value, "value", False) is True for k in d.keywords)
            for d in node.decorator_list)
        if hidden:
            for statement in ast.walk(node):
                if isinstance(statement, ast.stmt) and not isinstance(statement, (ast.FunctionDef, ast.Import, ast.ImportFrom)):
                    first = (ast.get_source_segment(source, statement) or "").splitlines()[0].strip()
                    if len(first) >= 20:
                        lines.add(first)
    return lines


@pytest.mark.slow
@pytest.mark.xdist_group("course")
def test_grading_logs_hold_no_hidden_test_source_or_expected_value(graded, dist: Path):
    """Failing submissions (the hand-outs fail every test): their logs and results show messages only."""
    folder, _ = graded
    for name in NAMES:
        log = (folder / grade.LOG_DIR / f"{name}-blank.log").read_text(encoding="utf-8")
        results = json.loads((folder / grade.LOG_DIR / f"{name}-blank.results.json").read_text(encoding="utf-8"))
        shown = log + "\n".join(t.get("output", "") for t in results["tests"])
        assert "Test case failed" in shown  # they did fail, so a leak would show here
        assert "Error at line" not in shown, f"{name}: otter's source-line report is not hidden"
        hidden = set().union(*(_hidden_test_lines(f) for f in sorted((dist / name / "autograder" / "tests").glob("*.py"))))
        assert hidden, name
        leaked = sorted(line for line in hidden if line in shown)
        assert not leaked, f"{name}: hidden test source in the grading log: {leaked[:3]}"
    a2 = (folder / grade.LOG_DIR / "a2_expertise-blank.results.json").read_text(encoding="utf-8")
    assert "0.325" not in a2 and "0.45" not in a2  # the expected values of the ties-by-hand question


@pytest.mark.slow
@pytest.mark.xdist_group("course")
def test_unreadable_and_unknown_notebooks(graded):
    _, table = graded
    rows = table.set_index("notebook")
    assert rows.loc["a2_expertise-carol.ipynb", "score"] == 0
    assert rows.loc["a2_expertise-carol.ipynb", "assignment"] == "a2_expertise"
    assert "not a readable notebook" in rows.loc["a2_expertise-carol.ipynb", "status"]
    assert rows.loc["stray.ipynb", "status"].startswith("unknown assignment")


@pytest.mark.slow
@pytest.mark.xdist_group("course")
def test_time_limit_stops_a_notebook_that_ignores_the_cell_limit(dist: Path, tmp_path: Path):
    solved = dist / "a1_responses" / "autograder" / "a1_responses.ipynb"
    stuck = _with_cells(solved, 1, "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass")
    (tmp_path / "a1_responses-stuck.ipynb").write_text(json.dumps(stuck), encoding="utf-8")
    table = grade.grade_folder(tmp_path, dist, time_limit=15, cell_limit=2)
    row = table.iloc[0]
    assert row["status"].startswith("time limit: grading stopped after 15 s") and row["score"] == 0
    # this session's gradings only: their command line names this dist, their kernels' environment too
    assert not _processes_with(f"--autograder {dist}"), "the killed grading process is still there"
    deadline = time.monotonic() + 30  # the orphaned kernel's parent poller ends it within a few seconds
    while _processes_with(f"{ENV_PROTECT}={dist}", "environ") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _processes_with(f"{ENV_PROTECT}={dist}", "environ"), "the stuck kernel outlived its grading"


def test_grade_refuses_missing_folder_and_missing_build(tmp_path: Path):
    cmd = [sys.executable, "-m", "langneurons.course.grade"]
    missing = subprocess.run([*cmd, str(tmp_path / "nope")], capture_output=True, text=True)
    assert missing.returncode == 2 and "is not a folder" in missing.stderr
    (tmp_path / "a.ipynb").write_text("{}", encoding="utf-8")
    unbuilt = subprocess.run([*cmd, str(tmp_path), "--dist", str(tmp_path / "dist")], capture_output=True, text=True)
    assert unbuilt.returncode == 2 and "make assignments" in unbuilt.stderr


def test_guard_protects_only_the_graders_files(tmp_path: Path):
    guard = Guard(tmp_path / "log.jsonl", [str(tmp_path / "tests")], 0)
    assert guard._protected(tmp_path / "tests" / "q1.py") and guard._protected(str(tmp_path / "tests"))
    assert guard._protected(tmp_path / "tests-not") is None and guard._protected(tmp_path / "mine.csv") is None
    assert guard._protected(3) is None  # a file descriptor
    guard.record("error", error="x")
    assert json.loads((tmp_path / "log.jsonl").read_text())["kind"] == "error"


@pytest.mark.xdist_group("course")
def test_question_points_and_assignment_matching(dist: Path):
    points = grade.question_points(dist / "a1_responses" / "autograder" / build.AUTOGRADER_ZIP)
    assert points == {"q1": 3.0, "q2": 6.0}
    assert grade.assignment_of(Path("x.ipynb"), {"metadata": {"otter": {"assignment_name": "a3_control"}}}, NAMES) == "a3_control"
    assert grade.assignment_of(Path("a2_expertise_alice.ipynb"), None, NAMES) == "a2_expertise"
    assert grade.assignment_of(Path("alice.ipynb"), {"metadata": {}}, NAMES) is None


def test_guard_refuses_notebook_code_and_allows_otter(tmp_path: Path):
    import otter

    tests_dir = tmp_path / "tests"
    guard = Guard(tmp_path / "log.jsonl", [str(tests_dir)], 0)
    with pytest.raises(PermissionError, match="belongs to the grader"):
        guard.audit("open", (str(tests_dir / "q1.py"), "r", 0))  # called from this test: not otter's code
    guard.audit("open", (str(tmp_path / "experiment.csv"), "w", 0))  # a student's own file: fine
    with pytest.raises(PermissionError):
        guard.audit("subprocess.Popen", ("cat", ["cat", str(tests_dir / "q2.py")], None, None))
    as_otter: dict = {}
    fake = str(Path(otter.__file__).parent / "check" / "reader.py")  # code compiled as if it were otter's
    exec(compile("def read(guard, path):\n    guard.audit('open', (path, 'r', 0))\n", fake, "exec"), as_otter)
    as_otter["read"](guard, str(tests_dir / "q1.py"))  # no error: otter reads its own tests
    events = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in events] == ["grader_files", "grader_files"]


def test_guard_allows_a_library_formatting_the_stack_not_a_cell(tmp_path: Path):
    """torch.manual_seed inside a test formats the live stack, so linecache reads the running test's
    file: allowed when a library asks, refused when a notebook cell asks (linecache.getline("tests/q1.py"))."""
    import linecache
    import sysconfig

    tests_dir = tmp_path / "tests"
    guard = Guard(tmp_path / "log.jsonl", [str(tests_dir)], 0)
    as_linecache: dict = {}
    exec(compile("def getline(guard, path):\n    guard.audit('open', (path, 'r', 0))\n", linecache.__file__, "exec"), as_linecache)
    library: dict = {"getline": as_linecache["getline"]}
    fake = str(Path(sysconfig.get_paths()["purelib"]) / "somelib" / "stack.py")  # code compiled as if it were a library's
    exec(compile("def format_stack(guard, path):\n    getline(guard, path)\n", fake, "exec"), library)
    library["format_stack"](guard, str(tests_dir / "q1.py"))  # no error
    with pytest.raises(PermissionError, match="belongs to the grader"):
        as_linecache["getline"](guard, str(tests_dir / "q1.py"))  # from this test's own code: a cell's read
    events = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in events] == ["grader_files"]
