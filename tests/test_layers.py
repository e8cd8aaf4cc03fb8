"""The package's layers point one way, and no modules import each other in a circle.

base <- data <- model <- scoring, control <- comparison <- run, course: a module may import its
own folder and the folders below it, never one above or beside it (scoring and control share a
level and stay apart). The top-level package __init__ may import the bottom layer only.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from langneurons.base.source_imports import closure, cycles, import_graph, module_files, notebook_imports

LEVEL = {"base": 0, "data": 1, "cluster": 1, "model": 2, "scoring": 3, "control": 3, "comparison": 4, "run": 5, "course": 5}
ROOT = Path(__file__).resolve().parents[1]


def _folder(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None  # None: the package itself (langneurons/__init__.py)


def test_every_folder_has_a_layer():
    folders = {_folder(m) for m in module_files()} - {None}
    assert folders == set(LEVEL), f"a new folder needs a layer in LEVEL: {sorted(folders ^ set(LEVEL))}"


def test_no_import_points_up_or_sideways():
    wrong = []
    for module, imported in import_graph().items():
        src = _folder(module)
        for target in imported:
            dst = _folder(target)
            if dst is None or dst == src:
                continue
            if src is None:
                if dst != "base":
                    wrong.append(f"{module} -> {target} (the package __init__ imports the bottom layer only)")
            elif LEVEL[dst] > LEVEL[src] or (LEVEL[dst] == LEVEL[src]):
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_lower_layers_never_import_run():
    lower = {"base", "data", "model", "scoring", "control", "comparison"}
    assert not [(m, t) for m, ts in import_graph().items() if _folder(m) in lower for t in ts if _folder(t) == "run"]


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for rel, text in files.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(textwrap.dedent(text))
    return root


def test_the_reader_sees_every_import_form(tmp_path):
    """Absolute, relative, `from pkg import module`, inside a function; not under TYPE_CHECKING."""
    root = _package(tmp_path, {
        "__init__.py": "",
        "a/__init__.py": "",
        "a/one.py": "from ..b import two\n",
        "a/three.py": "def f():\n    from pkg.b.four import x\n",
        "a/five.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import six\nimport pkg.a.one\n",
        "b/__init__.py": "", "b/two.py": "from . import four\n", "b/four.py": "x = 1\n", "b/six.py": "from pkg.a import five\n",
    })
    g = import_graph(root)
    assert "pkg.b.two" in g["pkg.a.one"]
    assert "pkg.b.four" in g["pkg.a.three"]
    assert "pkg.b.four" in g["pkg.b.two"]
    assert "pkg.b.six" not in g["pkg.a.five"] and "pkg.a.one" in g["pkg.a.five"]
    assert cycles(g) == []  # five -> six only for type checkers
    assert {"pkg.a.one", "pkg.b.two", "pkg.b.four"} <= closure({"pkg.a.five"}, root)
    assert "pkg.b.six" not in closure({"pkg.a.five"}, root)


def test_a_cycle_is_found(tmp_path):
    root = _package(tmp_path, {"__init__.py": "", "x.py": "from pkg import y\n", "y.py": "def f():\n    import pkg.x\n"})
    assert cycles(import_graph(root)) == [["pkg.x", "pkg.y"]]


def test_a_notebook_depends_on_what_it_imports():
    deps = notebook_imports(ROOT / "notebooks" / "03_scoring.ipynb")
    assert "langneurons.scoring.ap" in deps and "langneurons.base.params" in deps
    assert "langneurons.control.generation" not in deps  # 03 never generates
