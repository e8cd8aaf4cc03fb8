"""`make assignments`: every assignments/source/<name>.ipynb through otter-grader's `otter assign`.

otter assign turns one master notebook (solutions and tests marked in raw cells) into a student
notebook (solutions replaced by `...`, public tests only) and an autograder (the solved notebook,
all tests, and the autograder.zip that `otter run` grades with). We only make its output
byte-for-byte reproducible: otter names the zip after the clock and stamps every entry with it,
so the zip is rewritten with fixed names, times and order, and cell ids are numbered.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import zipfile
from contextlib import redirect_stdout
from pathlib import Path

from langneurons.base import paths

ASSIGNMENTS_DIR = paths.PROJECT_ROOT / "assignments"
SOURCE_DIR = ASSIGNMENTS_DIR / "source"
DIST_DIR = ASSIGNMENTS_DIR / "dist"
AUTOGRADER_ZIP = "autograder.zip"
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class BuildError(RuntimeError):
    """A master notebook could not be turned into an assignment."""


def masters(source_dir: Path = SOURCE_DIR) -> list[Path]:
    found = sorted(source_dir.glob("*.ipynb"))
    if not found:
        raise BuildError(f"no master notebooks in {source_dir}: add assignments/source/<name>.ipynb")
    return found


def _numbered_ids(notebook: Path, name: str) -> None:
    """Cell ids otter made up at random become <name>-<index>; JSON written with sorted keys."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    for i, cell in enumerate(nb["cells"]):
        cell["id"] = f"{name.replace('_', '-')}-{i:02d}"
    notebook.write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def _stable_zip(src: Path, dst: Path) -> list[str]:
    """The same entries as `src`, in name order, with a fixed time and mode: same bytes every build."""
    with zipfile.ZipFile(src) as zin:
        entries = sorted((i.filename, zin.read(i)) for i in zin.infolist() if not i.is_dir())
    with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_DEFLATED) as zout:
        for filename, data in entries:
            info = zipfile.ZipInfo(filename, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o755 if filename == "run_autograder" else 0o644) << 16
            zout.writestr(info, data)
    return [f for f, _ in entries]


def build_one(master: Path, dist_dir: Path = DIST_DIR) -> Path:
    """dist_dir/<name>/student/ and dist_dir/<name>/autograder/ from one master notebook; returns the folder."""
    from otter.assign import main as otter_assign

    name = master.stem
    with tempfile.TemporaryDirectory(prefix=f"assign-{name}-") as tmp:
        staged = Path(tmp) / "master"
        staged.mkdir()
        shutil.copy(master, staged / master.name)
        out = Path(tmp) / name
        log = io.StringIO()
        try:
            with redirect_stdout(log):
                otter_assign(str(staged / master.name), str(out), no_pdfs=True, no_run_tests=True)
        except Exception as e:  # otter's own message names the bad cell
            raise BuildError(f"otter assign failed on {master}: {type(e).__name__}: {e}") from e
        zips = sorted((out / "autograder").glob(f"{name}-autograder_*.zip"))
        if len(zips) != 1:
            raise BuildError(f"otter assign made {len(zips)} autograder zips for {master}: expected one")
        entries = _stable_zip(zips[0], out / "autograder" / AUTOGRADER_ZIP)
        zips[0].unlink()
        with zipfile.ZipFile(out / "autograder" / AUTOGRADER_ZIP) as z:  # the hidden tests, for the teacher to read
            for entry in entries:
                if entry.startswith("tests/"):
                    (out / "autograder" / entry).parent.mkdir(parents=True, exist_ok=True)
                    (out / "autograder" / entry).write_bytes(z.read(entry))
        for notebook in sorted(out.rglob("*.ipynb")):
            _numbered_ids(notebook, name)
        target = dist_dir / name
        dist_dir.mkdir(parents=True, exist_ok=True)
        old = dist_dir / f".{name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        shutil.move(str(out), str(target))  # whole or not at all
        shutil.rmtree(old, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build student and autograder versions of the assignments.")
    parser.add_argument("--source", type=Path, default=SOURCE_DIR, help="folder of master notebooks")
    parser.add_argument("--dist", type=Path, default=DIST_DIR, help="output folder")
    args = parser.parse_args(argv)
    try:
        for master in masters(args.source):
            target = build_one(master, args.dist)
            print(f"{master.stem}: {target / 'student'} (hand out), {target / 'autograder'} (keep)")
    except BuildError as e:
        print(f"make assignments: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
