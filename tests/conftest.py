"""Shared fixtures: tiny models of each family and small data sets, all built here (no downloads)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

from langneurons.base.languages import LANGUAGES
from langneurons.model.tiny import build_model, train_tokenizer

SHARED_OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "lang_neuron_official"
SHARED_SENSE = SHARED_OFFICIAL / "sense"

# A few sentences per language: enough to train a tokenizer and to tell the languages apart.
SENTENCES: dict[str, list[str]] = {
    "en": ["The cat sleeps on the warm roof.", "We walked to the station in the rain.",
           "Reading books makes the evenings short.", "The river flows past the old mill."],
    "de": ["Die Katze schläft auf dem warmen Dach.", "Wir gingen im Regen zum Bahnhof.",
           "Bücher lesen macht die Abende kurz.", "Der Fluss fließt an der alten Mühle vorbei."],
    "fr": ["Le chat dort sur le toit chaud.", "Nous sommes allés à la gare sous la pluie.",
           "Lire des livres raccourcit les soirées.", "La rivière coule devant le vieux moulin."],
    "es": ["El gato duerme en el tejado caliente.", "Caminamos a la estación bajo la lluvia.",
           "Leer libros acorta las tardes.", "El río pasa junto al viejo molino."],
    "zh": ["猫在温暖的屋顶上睡觉。", "我们在雨中走到车站。", "读书让夜晚变短。", "河水流过老磨坊。"],
    "ja": ["猫は暖かい屋根の上で寝ている。", "私たちは雨の中を駅まで歩いた。", "本を読むと夜が短くなる。", "川は古い水車小屋のそばを流れる。"],
}
ALL_SENTENCES = [s for lang in LANGUAGES for s in SENTENCES[lang]]


@pytest.fixture(autouse=True)
def _fast_tests_start_no_kernel(request, monkeypatch):
    """`make test-fast` leaves out the tests marked slow; a test that is not may not start a Jupyter kernel."""
    if request.node.get_closest_marker("slow"):
        return
    from jupyter_client.provisioning.local_provisioner import LocalProvisioner

    async def refuse(*args, **kwargs):
        raise RuntimeError(f"{request.node.nodeid} starts a Jupyter kernel: mark it @pytest.mark.slow")

    monkeypatch.setattr(LocalProvisioner, "launch_kernel", refuse)


@pytest.fixture(scope="session")
def tiny(request):
    """Factory: (model, tokenizer) of a family, cached per family for the session."""
    cache: dict[str, tuple] = {}

    def make(family: str):
        if family not in cache:
            tokenizer = train_tokenizer(ALL_SENTENCES * 3, family, vocab_size=400)
            cache[family] = (build_model(family, tokenizer, seed=0), tokenizer)
        return cache[family]

    return make


def write_official_dir(root: Path, n_pos: int = 4, n_neg_per_lang: int = 3) -> Path:
    """A made-up directory in the released schema: <lang>.json with positives and negative blocks."""
    root.mkdir(parents=True, exist_ok=True)
    for lang in LANGUAGES:
        positives = [SENTENCES[lang][i % 4] + f" ({i})" for i in range(n_pos)]
        negatives = [SENTENCES[o][i % 4] + f" ({i})" for o in LANGUAGES if o != lang for i in range(n_neg_per_lang)]
        data = {"concept": lang, "group": "sense", "source": "language",
                "sentences": {"positive": positives, "negative": negatives}}
        (root / f"{lang}.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return root


def mirror_shared_release(root: Path) -> Path:
    """../shared's released files laid out like the original repository (what a mirror or a local
    clone of it holds); empty when ../shared is absent."""
    (root / "assets" / "Language" / "sense").mkdir(parents=True, exist_ok=True)
    (root / "assets_translation").mkdir(parents=True, exist_ok=True)
    if SHARED_OFFICIAL.is_dir():
        for f in (SHARED_OFFICIAL / "sense").glob("*.json"):
            shutil.copyfile(f, root / "assets" / "Language" / "sense" / f.name)
        for f in (SHARED_OFFICIAL / "translation_pkl").glob("*.pkl"):
            shutil.copyfile(f, root / "assets_translation" / f.name)
    return root


@pytest.fixture(scope="session", autouse=True)
def release_mirror(tmp_path_factory) -> Path:
    """Every test (and the pipelines they start) fetches released files from a local mirror of
    ../shared into a temporary cache: never the network, never the user's ~/.cache."""
    root = tmp_path_factory.mktemp("release")
    saved = {k: os.environ.get(k) for k in ("LANGNEURONS_RELEASE_URL", "XDG_CACHE_HOME")}
    os.environ["LANGNEURONS_RELEASE_URL"] = str(mirror_shared_release(root / "mirror"))
    os.environ["XDG_CACHE_HOME"] = str(root / "cache")
    yield root / "mirror"
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def write_translation_dir(root: Path, pairs: dict[tuple[str, str], list[tuple[str, str]]]) -> Path:
    """Made-up translation pairs in the released format: translation_text_<task>_en_<lang>.pkl."""
    root.mkdir(parents=True, exist_ok=True)
    for (task, lang), items in pairs.items():
        data = [{"en": src, lang: ref} for src, ref in items]
        (root / f"translation_text_{task}_en_{lang}.pkl").write_bytes(pickle.dumps(data, protocol=4))
    return root


@pytest.fixture()
def official_dir(tmp_path: Path) -> Path:
    return write_official_dir(tmp_path / "sense")


@pytest.fixture()
def shared_sense() -> Path:
    if not (SHARED_SENSE / "en.json").is_file():
        pytest.skip(f"released sentence sets not found at {SHARED_SENSE}")
    return SHARED_SENSE


@pytest.fixture(scope="session")
def shared(release_mirror, tmp_path_factory):
    """The session's one `make replicate-paper` run (shared_runs.py): read its outputs, never write them.

    Every test that uses it is in the xdist group "pipeline", so it is built once per test session."""
    from shared_runs import run_shared

    return run_shared(tmp_path_factory.mktemp("shared"))
