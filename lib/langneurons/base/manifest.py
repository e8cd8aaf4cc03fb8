"""SHA-256 manifest of a model directory: proves the shipped weights are the ones trained."""

from __future__ import annotations

import hashlib
from pathlib import Path

from langneurons.base.atomic import write_text

MANIFEST = "SHA256SUMS"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(model_dir: Path) -> Path:
    """`sha256sum`-compatible list of every file in the directory (except the manifest itself)."""
    files = sorted(p for p in model_dir.iterdir() if p.is_file() and p.name != MANIFEST)
    return write_text(model_dir / MANIFEST, "".join(f"{sha256(p)}  {p.name}\n" for p in files))


def verify_manifest(model_dir: Path) -> list[str]:
    """Names of files whose hash differs from the manifest (empty list = all good)."""
    bad = []
    for line in (model_dir / MANIFEST).read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        path = model_dir / name.strip()
        if not path.is_file() or sha256(path) != digest:
            bad.append(name.strip())
    return bad
