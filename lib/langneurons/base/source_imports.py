"""Which of the package's modules import which, read from the source (nothing is imported).

Two uses: the layer test (tests/test_layers.py: no cycle, no import from a higher layer) and the
stage cache key (run/cache.py: a stage's key holds the checksums of the library files its notebook
imports, directly or through other modules, so an edit to lib/ recomputes exactly the stages it can
affect). Every import counts, also one inside a function; imports under `if TYPE_CHECKING:` are
for type checkers only and do not.
"""

from __future__ import annotations

import ast
import json
from functools import lru_cache
from pathlib import Path

PACKAGE = "langneurons"
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def module_files(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package (packages by __init__.py)."""
    out = {}
    for f in sorted(package_dir.rglob("*.py")):
        parts = [package_dir.name, *f.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Dotted names an import statement may refer to (a module, or a name inside one)."""
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
        todo.extend(ast.iter_child_nodes(node))
    return names


def imports_of_source(source: str, module: str, modules: dict[str, Path], is_package: bool = False) -> set[str]:
    """The package's modules that a piece of source imports (a module importing a.b.c imports a and a.b too)."""
    found = set()
    for name in _imported_names(ast.parse(source), module, is_package):
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in modules and prefix != module:
                found.add(prefix)
    return found


@lru_cache(maxsize=4)
def _graph(package_dir: Path) -> dict[str, frozenset[str]]:
    modules = module_files(package_dir)
    return {m: frozenset(imports_of_source(f.read_text(encoding="utf-8"), m, modules, f.name == "__init__.py"))
            for m, f in modules.items()}


def import_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, frozenset[str]]:
    """Module -> the package's modules it imports."""
    return _graph(package_dir)


def closure(roots: set[str], package_dir: Path = PACKAGE_DIR) -> set[str]:
    """The modules `roots` import, directly or through others, `roots` included."""
    graph = import_graph(package_dir)
    seen: set[str] = set()
    todo = [r for r in roots if r in graph]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m] - seen)
    return seen


def notebook_source(path: Path) -> str:
    """The code cells of a notebook, as one piece of source (IPython magics dropped)."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    lines = [line for c in cells if c["cell_type"] == "code"
             for line in "".join(c["source"]).splitlines() if not line.lstrip().startswith(("%", "!"))]
    return "\n".join(lines)


def notebook_imports(path: Path, package_dir: Path = PACKAGE_DIR) -> set[str]:
    """The package's modules a notebook uses, directly or through the modules it imports."""
    modules = module_files(package_dir)
    return closure(imports_of_source(notebook_source(path), "__notebook__", modules), package_dir)


def cycles(graph: dict[str, frozenset[str]]) -> list[list[str]]:
    """Groups of modules that import each other in a circle (strongly connected, more than one)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm; the package is small, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found
