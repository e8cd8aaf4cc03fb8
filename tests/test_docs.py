"""README.md and docs/ name only paths, modules and `make` targets that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lib" / "langneurons"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TOP = ("lib", "notebooks", "params", "tests", "bench", "docs", "assignments", "scripts", "models", ".ci")
SUBPACKAGES = tuple(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
MAKE = re.compile(r"\bmake ([a-z][a-z0-9-]*[a-z0-9])\b")
MODULE = re.compile(r"\blangneurons(?:\.[a-z_0-9]+)+")


def _targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):", (ROOT / "Makefile").read_text(), re.M))


def _repo_path(token: str) -> Path | None:
    """The file a backticked token names, when it names one of ours (generated and user paths are not)."""
    token = token.strip().rstrip(".,:;")
    if " " in token or "<" in token or "*" in token or "=" in token or "{" in token:
        return None
    token = token.split("#")[0]
    first = token.split("/")[0]
    if first in TOP and "/" in token:
        return ROOT / token
    if first == "langneurons" and "/" in token:
        return ROOT / "lib" / token
    if first in SUBPACKAGES and token.endswith(".py"):
        return PACKAGE / token
    return None


def _module_exists(dotted: str) -> bool:
    """langneurons.a.b(.name): a module, or a name defined in one."""
    parts = dotted.split(".")[1:]
    for cut in range(len(parts), 0, -1):
        base = PACKAGE.joinpath(*parts[:cut])
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            rest = parts[cut:]
            if not rest:
                return True
            source = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
            return bool(re.search(rf"^\s*(def|class)\s+{rest[0]}\b|^{rest[0]}\s*[:=]", source.read_text(), re.M))
    return False


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_named_path_module_and_target_exists(page: Path):
    text = page.read_text()
    missing = []
    for token in CODE.findall(text):
        path = _repo_path(token)
        if path is not None and not path.exists():
            missing.append(f"path {token}")
    for link in LINK.findall(text):
        if link.startswith(("http://", "https://", "#", "mailto:")):
            continue
        target = (page.parent / link.split("#")[0]).resolve()
        if not target.exists():
            missing.append(f"link {link}")
    targets = _targets()
    missing += [f"make {t}" for t in MAKE.findall(text) if t not in targets]
    missing += [f"module {m}" for m in MODULE.findall(text) if not _module_exists(m)]
    assert not missing, f"{page.relative_to(ROOT)} names what does not exist: {sorted(set(missing))}"


def test_the_readme_is_short_and_links_every_docs_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for page in (ROOT / "docs").glob("*.md"):
        assert f"docs/{page.name}" in readme, f"README.md does not link docs/{page.name}"


def test_the_checker_catches_what_is_gone():
    assert _repo_path("lib/langneurons/run/no_such.py") == PACKAGE / "run" / "no_such.py"
    assert _repo_path("run/no_such.py") == PACKAGE / "run" / "no_such.py"
    assert _repo_path("run/stages.py").is_file()
    assert _repo_path("runs/<profile>/logs") is None  # generated: not checked
    assert _module_exists("langneurons.run.stages.STAGES") and not _module_exists("langneurons.run.params")
    assert "replicate" in _targets() and "no-such-target" not in _targets()
