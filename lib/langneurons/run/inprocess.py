"""A papermill engine that runs a notebook's cells in this Python process (param notebook_engine: inprocess).

By default every stage runs in a Jupyter kernel of its own (papermill's `nbclient` engine): its
memory goes back to the system when it ends, its peak memory is its own, and Ctrl-C stops it
cleanly. The price is a kernel start and importing torch and transformers again at every stage,
~10 s a stage on 2 cores, which is most of the time of a small model's run. `inprocess` runs
the cells here instead, in a fresh namespace per notebook, through papermill all the same:
papermill injects the parameters, writes the executed notebook with each cell's output and raises
PapermillExecutionError for a failed cell, so the pipeline handles both engines alike. What the
cells print still reaches the live progress (stdout_file, stderr_file). The outputs are the same
bytes (tested); a stage's peak memory is then the peak of the whole process so far.

Why not a library: ploomber-engine's `embedded` engine does this too, but it ships telemetry that
calls out to the network, switches the process's matplotlib backend and drops papermill's
stdout_file and stderr_file.
"""

from __future__ import annotations

import ast
import io
import sys
import traceback
from contextlib import redirect_stderr, redirect_stdout
from typing import Any, TextIO

import nbformat
from papermill.engines import Engine, papermill_engines

NAME = "langneurons-inprocess"


class _Tee(io.TextIOBase):
    """Text written to the cell's output and, live, to the pipeline's progress stream."""

    def __init__(self, *streams: TextIO | None):
        self.streams = [s for s in streams if s is not None]

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            if hasattr(stream, "flush"):
                stream.flush()


def _stream(name: str, text: str) -> list[nbformat.NotebookNode]:
    return [nbformat.v4.new_output("stream", name=name, text=text)] if text else []


def run_cell(source: str, namespace: dict[str, Any], name: str) -> None:
    """Run a cell's code; like Jupyter, print the value of a last line that is an expression (not `...;`)."""
    tree = ast.parse(source, name)
    last = tree.body[-1] if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    if last is None or source.rstrip().endswith(";"):
        exec(compile(tree, name, "exec"), namespace)
        return
    exec(compile(ast.Module(tree.body[:-1], type_ignores=[]), name, "exec"), namespace)
    value = eval(compile(ast.Expression(last.value), name, "eval"), namespace)
    if value is not None:
        print(repr(value))


class InProcessEngine(Engine):
    @classmethod
    def execute_managed_notebook(cls, nb_man: Any, kernel_name: str, stdout_file: TextIO | None = None,
                                 stderr_file: TextIO | None = None, **kwargs: Any) -> nbformat.NotebookNode:
        namespace: dict[str, Any] = {"__name__": "__main__"}  # a fresh one per notebook, as a new kernel would have
        try:
            for index, cell in enumerate(nb_man.nb.cells):
                if cell.cell_type != "code":
                    continue
                nb_man.cell_start(cell, index)
                out, err = io.StringIO(), io.StringIO()
                failed = None
                try:
                    with redirect_stdout(_Tee(out, stdout_file)), redirect_stderr(_Tee(err, stderr_file)):
                        run_cell(cell.source, namespace, f"<cell {index}>")
                except Exception as e:  # KeyboardInterrupt and SystemExit go on up, as from a kernel
                    failed = e
                cell.outputs = _stream("stdout", out.getvalue()) + _stream("stderr", err.getvalue())
                cell.execution_count = index
                if failed is not None:
                    cell.outputs.append(nbformat.v4.new_output(
                        "error", ename=type(failed).__name__, evalue=str(failed),
                        traceback=traceback.format_exception(failed)))
                    nb_man.cell_exception(cell, cell_index=index, exception=failed)
                    nb_man.cell_complete(cell, cell_index=index)
                    break
                nb_man.cell_complete(cell, cell_index=index)
        finally:
            if "matplotlib.pyplot" in sys.modules:  # a kernel's figures end with it; here they would pile up
                sys.modules["matplotlib.pyplot"].close("all")
        return nb_man.nb


papermill_engines.register(NAME, InProcessEngine)
