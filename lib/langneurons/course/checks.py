"""What the hidden tests use to grade the student's own code, not the environment's.

Two questions a plain comparison with a reference cannot answer:

* **Did the student write it, or call a reference?** `student_call` runs the graded function with
  a profile hook (``sys.setprofile``) that sees every Python function it calls, directly or through
  an alias, a lambda or a helper: a call into langneurons (the course kit included) or scikit-learn
  is recorded, and the test fails with a message naming what was called (`Delegation`), whatever
  the function returned. Student code may use numpy, torch and pandas.
* **Is it vectorized?** `assert_vectorized` counts the Python-level steps the function takes
  (calls of Python functions, of C functions from Python, and lines run) on two inputs that differ
  only in their number of units. Vectorized code makes the same calls for 1,000 units as for 8,000; a loop over
  units, written as `for`, a comprehension, `map`, `np.vectorize` or `np.apply_along_axis`, makes
  at least one more call per unit. The count is exact and machine-independent, unlike a time budget.

Messages name the behaviour checked and never the expected values.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


_OWN_FILE = os.path.normcase(os.path.abspath(__file__))


def _package_dir(name: str) -> str | None:
    """Where a package lives, found without importing it (the grading kernel imports this module at start)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.normcase(os.path.abspath(list(spec.submodule_search_locations)[0])) + os.sep


REFERENCE_ROOTS: dict[str, str] = {
    label: root for label, root in (("langneurons", _package_dir("langneurons")), ("scikit-learn", _package_dir("sklearn")))
    if root is not None
}


class Delegation(AssertionError):
    """The graded code called a reference implementation instead of computing the answer itself."""


@dataclass
class Watch:
    """What the graded code did while it ran: calls made, references reached."""

    calls: int = 0
    references: list[str] = field(default_factory=list)

    def first_reference(self) -> str | None:
        return self.references[0] if self.references else None


def _reference_of(code_file: str) -> str | None:
    path = os.path.normcase(os.path.abspath(code_file)) if code_file and not code_file.startswith("<") else ""
    if not path or path == _OWN_FILE:
        return None
    for label, root in REFERENCE_ROOTS.items():
        if path.startswith(root):
            return label
    return None


@contextmanager
def watching(refuse: bool = True) -> Iterator[Watch]:
    """Count the calls made inside the block and record every call into a reference implementation.

    The hook records and never raises: CPython drops a profile function that raises, so a student's
    `except` could otherwise switch the watching off. The test then fails on the record (`refused`).
    """
    watch = Watch()
    previous = sys.getprofile()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            watch.calls += 1
            if refuse and not watch.references:
                label = _reference_of(frame.f_code.co_filename)
                if label is not None:
                    watch.references.append(f"{label} ({frame.f_globals.get('__name__', '?')}.{frame.f_code.co_name})")
        elif event == "c_call":
            watch.calls += 1

    sys.setprofile(profile)
    try:
        yield watch
    finally:
        sys.setprofile(previous)


def student_call(fn: Callable[..., Any], *args: Any, behaviour: str = "the graded function", **kwargs: Any) -> Any:
    """Call the student's function under watch; fail if it reached a reference implementation."""
    with watching() as watch:
        try:
            result = fn(*args, **kwargs)
        except BaseException:
            refused(watch, behaviour)  # a delegation outranks the error it ended in
            raise
    refused(watch, behaviour)
    return result


def refused(watch: Watch, behaviour: str) -> None:
    """Fail with a message naming the reference reached (not the answer) if the code delegated."""
    reached = watch.first_reference()
    if reached is not None:
        raise Delegation(f"{behaviour}: your code called {reached} instead of computing it itself; "
                         "write it with numpy or torch (calls into langneurons or scikit-learn score 0 here)")


def calls_made(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Python-level steps fn(*args) takes: calls (of Python functions, and of C functions from Python)
    and lines run. A loop made of operators alone (`[x[:, u] / t for u in ...]`) calls nothing per unit
    but runs its line once per unit, so lines count too."""
    lines = 0

    def trace(frame: Any, event: str, arg: Any) -> Any:
        nonlocal lines
        if event == "line":
            lines += 1
        return trace

    previous_trace = sys.gettrace()
    with watching(refuse=False) as watch:
        sys.settrace(trace)
        try:
            fn(*args, **kwargs)
        finally:
            sys.settrace(previous_trace)
    return watch.calls + lines


_VERDICTS: "weakref.WeakKeyDictionary[Callable[..., Any], str | None]" = weakref.WeakKeyDictionary()


def assert_vectorized(fn: Callable[..., Any], make_args: Callable[[int], tuple], behaviour: str, over: str = "units",
                      small: int = 1000, large: int = 8000, per_item: float = 0.1) -> None:
    """Fail if fn makes more Python-level calls for `large` items (units, texts) than for `small` ones.

    `make_args(n)` builds the arguments for n items (same seed, the other dimensions fixed). A loop
    over the items adds at least one call per item; `per_item` (0.1) leaves room for calls whose
    count depends on the data, never for a loop. The verdict is kept per function, so the tests of
    one question can all require it at the cost of one measurement.
    """
    if fn not in _VERDICTS:
        try:
            extra = calls_made(fn, *make_args(large)) - calls_made(fn, *make_args(small))
        except Exception as e:  # noqa: BLE001 - a failing function is the other tests' business
            raise AssertionError(f"{behaviour}: the function raised {type(e).__name__} on {large:,} {over}") from None
        _VERDICTS[fn] = None if extra <= per_item * (large - small) else (
            f"{behaviour}: not vectorized over {over} ({extra:,} more Python steps for {large:,} {over} than for "
            f"{small:,}: a loop over {over}, a comprehension, map, np.vectorize or np.apply_along_axis); "
            "use whole-array operations")
    if _VERDICTS[fn] is not None:
        raise AssertionError(_VERDICTS[fn])


def hide_test_sources() -> None:
    """Make otter's failure messages the exception's own message, without the test's source line.

    otter prints the failing line of a test; for a hidden test that line is its source and often its
    expected value. Grading calls this in the kernel before any test runs (guard.arm).
    """
    from otter.test_files.exception_test import ExceptionTestFile

    def message(self: Any, excp: Exception, context: int = 0) -> str:
        text = str(excp).strip("'").strip()
        return f"{type(excp).__name__}{': ' + text if text else ''}"

    ExceptionTestFile._generate_error_message = message  # type: ignore[method-assign]


__all__ = ["Delegation", "Watch", "watching", "student_call", "refused", "calls_made", "assert_vectorized",
           "hide_test_sources", "REFERENCE_ROOTS"]
