"""What grading runs before a submission's first cell, inside its kernel.

Three things a teacher needs to know and otter does not record: a cell that never ends (each cell
gets a time limit, then is interrupted and the rest runs on), cells that raised, and any attempt
to read the grader's files (the hidden tests and the solved notebook). Reads of those are refused
and reported; the submission keeps the points its own code earns. Events are JSON lines in the
file named by LANGNEURONS_GRADE_LOG, which `make grade` reads back. And one thing otter shows that
no student may see: a failing hidden test's source line (hidden by checks.hide_test_sources).

A reader is recognised with Python's audit hooks (PEP 578: open, listdir, scandir, glob, copy and
subprocess events): otter's own code may read its tests, a notebook cell or a library it calls may not.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import sysconfig
from pathlib import Path
from typing import Any

from langneurons.course.checks import hide_test_sources

ENV_LOG = "LANGNEURONS_GRADE_LOG"
ENV_CELL_LIMIT = "LANGNEURONS_GRADE_CELL_LIMIT"
ENV_PROTECT = "LANGNEURONS_GRADE_PROTECT"
_PATH_EVENTS = {"open", "os.listdir", "os.scandir", "glob.glob", "shutil.copyfile", "shutil.copytree",
                "shutil.make_archive"}
_STDLIB = tuple({sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]})
_SITE = tuple({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
_COMMAND_EVENTS = {"subprocess.Popen", "os.system", "os.posix_spawn", "os.exec"}


class CellTimeLimit(BaseException):
    """A cell ran past its time limit (a BaseException, so `except Exception` in the cell cannot hide it)."""


class Guard:
    def __init__(self, log_path: Path, roots: list[str], cell_limit: float):
        self.log_path = log_path
        self.roots = [os.path.normpath(r) for r in roots]
        self.cell_limit = cell_limit
        self.cell = ""
        self.cell_index = 0
        self.timed_out = False
        self.errors: list[str] = []  # the kernel's `grading_cell_errors`: a test can require a clean run
        self._busy = False
        self._trusted = [os.path.dirname(os.path.abspath(__file__))]
        try:
            import otter
            self._trusted.append(os.path.dirname(os.path.abspath(otter.__file__)))
        except ImportError:
            pass

    def record(self, kind: str, **detail: Any) -> None:
        self._busy = True
        try:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"kind": kind, "cell": self.cell_index, "code": self.cell, **detail}) + "\n")
        finally:
            self._busy = False

    def _protected(self, value: Any) -> str | None:
        try:
            path = os.fsdecode(os.fspath(value))
        except TypeError:
            return None
        full = os.path.normpath(os.path.join(os.getcwd(), path))
        return full if any(full == r or full.startswith(r + os.sep) for r in self.roots) else None

    def _from_trusted_code(self) -> bool:
        """The innermost caller outside Python's standard library decides: otter's code (or a test
        itself) may read the tests; a notebook cell, IPython's `!cmd`, pandas ... may not. One
        exception: a library formatting the live stack (torch.manual_seed records a traceback) reads
        the source of the test that is running through linecache; that is not the student's read."""
        frame = sys._getframe(2)
        via_linecache = False
        while frame is not None:
            name = frame.f_code.co_filename
            if name.startswith("<frozen") or (name.startswith(_STDLIB) and not name.startswith(_SITE)):
                via_linecache = via_linecache or name.endswith("linecache.py")
                frame = frame.f_back
                continue
            if via_linecache and name.startswith(_SITE):
                return True
            return any(name.startswith(t) for t in self._trusted) or self._protected(name) is not None
        return True  # only the standard library on the stack: Python itself

    def audit(self, event: str, args: tuple) -> None:
        if self._busy or (event not in _PATH_EVENTS and event not in _COMMAND_EVENTS):
            return
        if event in _PATH_EVENTS:
            candidates = [args[0]] if args else []
        else:
            candidates = [a for arg in args for a in (arg if isinstance(arg, (list, tuple)) else [arg])
                          if isinstance(a, (str, bytes))]
            candidates = [w for c in candidates for w in os.fsdecode(c).split()]
        hits = [p for p in (self._protected(c) for c in candidates) if p]
        if hits and not self._from_trusted_code():
            self.record("grader_files", event=event, path=hits[0])
            raise PermissionError(f"grading: {hits[0]} belongs to the grader; this attempt is reported")

    def pre_run_cell(self, info: Any) -> None:
        self.cell_index += 1
        lines = [ln for ln in (getattr(info, "raw_cell", "") or "").splitlines() if ln.strip()]
        self.cell = lines[0][:80] if lines else ""
        self.timed_out = False
        if self.cell_limit > 0:
            signal.setitimer(signal.ITIMER_REAL, self.cell_limit)

    def post_run_cell(self, result: Any) -> None:
        if self.cell_limit > 0:
            signal.setitimer(signal.ITIMER_REAL, 0)
        error = getattr(result, "error_in_exec", None)
        if self.timed_out:
            self.errors.append(f"time limit in `{self.cell}`")
            self.record("time_limit", seconds=self.cell_limit)
        elif error is not None:
            message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:200]
            self.errors.append(f"{message} in `{self.cell}`")
            self.record("error", error=message)

    def alarm(self, _signum: int, _frame: Any) -> None:
        self.timed_out = True
        raise CellTimeLimit(f"this cell ran past the grading time limit of {self.cell_limit:g} s")


def arm() -> Guard:
    """Install the guard in this kernel (the grader's first cell calls it; the cwd is the submission folder)."""
    from IPython import get_ipython

    cwd = Path.cwd()
    roots = [str(cwd / "tests"), str(cwd.parent / "source"), str(cwd.parent / "results")]
    roots += [p for p in os.environ.get(ENV_PROTECT, "").split(os.pathsep) if p]
    guard = Guard(Path(os.environ.get(ENV_LOG, os.devnull)), roots, float(os.environ.get(ENV_CELL_LIMIT, "0")))
    if guard.cell_limit > 0:
        signal.signal(signal.SIGALRM, guard.alarm)
    shell = get_ipython()
    shell.user_ns["grading_cell_errors"] = guard.errors
    shell.events.register("pre_run_cell", guard.pre_run_cell)
    shell.events.register("post_run_cell", guard.post_run_cell)
    sys.addaudithook(guard.audit)
    hide_test_sources()  # a failing hidden test reports its message, not its source line
    return guard
