"""build_hub_sets on local stand-ins for PAWS-X and FLORES, laid out like hub dataset repos.

The hub is unreachable here, so each stand-in is a directory with a README.md whose YAML front
matter declares its configs and data files; `datasets.load_dataset(path=<dir>, name=<config>,
split=<split>)` then runs exactly as it would on the hub id.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import huggingface_hub.constants
import pandas as pd
import pytest

from langneurons.data.hub_sets import build_hub_sets
from langneurons.base.languages import LANGUAGES
from langneurons.base.params import HubDataParams, HubSource
from langneurons.base.errors import DataError

FLORES_CODES = {"en": "eng_Latn", "de": "deu_Latn", "fr": "fra_Latn", "es": "spa_Latn", "zh": "cmn_Hans", "ja": "jpn_Jpan"}
N_ROWS = 30


def _write_repo(root: Path, split: str, configs: dict[str, pd.DataFrame]) -> Path:
    """A hub-like dataset repo: README front matter naming each config's parquet file."""
    lines = ["---", "configs:"]
    for name, frame in configs.items():
        (root / name).mkdir(parents=True)
        frame.to_parquet(root / name / f"{split}.parquet", index=False)
        lines += [f"- config_name: {name}", "  data_files:", f"  - split: {split}", f"    path: {name}/{split}.parquet"]
    (root / "README.md").write_text("\n".join(lines + ["---", "", "Stand-in dataset for tests.", ""]), encoding="utf-8")
    return root


def _paws(root: Path, n: int) -> HubSource:
    configs = {
        lang: pd.DataFrame({
            "id": range(n),
            "sentence1": [f"paws {lang} sentence {i}." for i in range(n)],
            "sentence2": [f"paws {lang} paraphrase {i}." for i in range(n)],
            "label": [i % 2 for i in range(n)],
        })
        for lang in LANGUAGES
    }
    _write_repo(root, "test", configs)
    return HubSource(id=str(root), split="test", text_field="sentence1", configs={lang: lang for lang in LANGUAGES})


def _flores(root: Path, n: int) -> HubSource:
    configs = {
        code: pd.DataFrame({"id": range(n), "text": [f"flores {lang} line {i}." for i in range(n)]})
        for lang, code in FLORES_CODES.items()
    }
    _write_repo(root, "devtest", configs)
    return HubSource(id=str(root), split="devtest", text_field="text", configs=dict(FLORES_CODES))


@pytest.fixture(autouse=True)
def _offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, with a fresh cache per test.

    datasets reads these variables once, at import, so its config is patched as well. A fresh cache
    matters: datasets caches a local repo by its directory name and configs, not its path or content.
    """
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> list[HubSource]:
    root = tmp_path_factory.mktemp("hub")
    return [_paws(root / "paws-x", N_ROWS), _flores(root / "flores", N_ROWS)]


def _hub(sources: list[HubSource], n_positive: int = 10, n_negative: int = 6, seed: int = 0) -> HubDataParams:
    return HubDataParams(sources=sources, n_positive=n_positive, n_negative_per_language=n_negative, seed=seed)


def _origin(text: str) -> tuple[str, str]:
    """(source, language) encoded in a stand-in text."""
    source, lang = text.split()[:2]
    return source, lang


def test_shape_languages_and_labels(sources: list[HubSource]) -> None:
    ts = build_hub_sets(_hub(sources), ["de", "ja"])
    assert ts.targets == ["de", "ja"]
    assert ts.texts["text"].is_unique and ts.texts["text_id"].tolist() == list(range(len(ts.texts)))
    lang_of = dict(zip(ts.texts["text_id"], ts.texts["lang"]))
    text_of = dict(zip(ts.texts["text_id"], ts.texts["text"]))
    for target in ["de", "ja"]:
        rows = ts.labelled(target)
        assert rows["position"].tolist() == list(range(40))
        assert rows["label"].tolist() == [1] * 10 + [0] * 30
        pos = [text_of[t] for t in rows["text_id"][:10]]
        assert all(_origin(t)[1] == target for t in pos)
        assert sorted(_origin(t)[0] for t in pos) == ["flores"] * 5 + ["paws"] * 5
        assert len(set(pos)) == 10
        neg_ids = rows["text_id"][10:].tolist()
        others = [lang for lang in LANGUAGES if lang != target]
        expected = [m for m in others for _ in range(6)]
        assert [_origin(text_of[t])[1] for t in neg_ids] == expected
        assert [lang_of[t] for t in neg_ids] == expected
        for b in range(5):
            block = [text_of[t] for t in neg_ids[6 * b:6 * b + 6]]
            assert sorted(_origin(t)[0] for t in block) == ["flores"] * 3 + ["paws"] * 3
    assert ts.summary().loc["de"].tolist() == [10, 30, 40]


def test_deterministic_and_seeded(sources: list[HubSource]) -> None:
    a = build_hub_sets(_hub(sources), ["de", "ja"])
    b = build_hub_sets(_hub(sources), ["de", "ja"])
    pd.testing.assert_frame_equal(a.texts, b.texts)
    pd.testing.assert_frame_equal(a.sets, b.sets)
    c = build_hub_sets(_hub(sources, seed=1), ["de", "ja"])
    texts_c = dict(zip(c.texts["text_id"], c.texts["text"]))
    texts_a = dict(zip(a.texts["text_id"], a.texts["text"]))
    for target in ["de", "ja"]:
        ids_a, ids_c = a.labelled(target)["text_id"], c.labelled(target)["text_id"]
        assert {texts_a[t] for t in ids_a[:10]} != {texts_c[t] for t in ids_c[:10]}  # positives
        assert {texts_a[t] for t in ids_a[10:]} != {texts_c[t] for t in ids_c[10:]}  # negatives
    # negatives are sampled per target: de's and ja's English blocks differ
    en_block = {target: {texts_a[t] for t in a.labelled(target)["text_id"][10:16]} for target in ["de", "ja"]}
    assert en_block["de"] != en_block["ja"]
    # a target's sample does not depend on which other targets are asked for
    ja_alone = build_hub_sets(_hub(sources), ["ja"])
    texts_j = dict(zip(ja_alone.texts["text_id"], ja_alone.texts["text"]))
    assert [texts_a[t] for t in a.labelled("ja")["text_id"]] == [texts_j[t] for t in ja_alone.labelled("ja")["text_id"]]


def test_sources_are_mixed(sources: list[HubSource]) -> None:
    ts = build_hub_sets(_hub(sources, n_positive=20), ["en", "fr", "zh"])
    text_of = dict(zip(ts.texts["text_id"], ts.texts["text"]))
    for target in ts.targets:
        origins = [_origin(text_of[t])[0] for t in ts.labelled(target)["text_id"][:20]]
        assert set(origins) == {"paws", "flores"}
        assert origins != sorted(origins) and origins != sorted(origins, reverse=True)


def test_shared_negatives_stored_once(tmp_path: Path) -> None:
    tiny = [_paws(tmp_path / "paws-tiny", 4), _flores(tmp_path / "flores-tiny", 4)]
    ts = build_hub_sets(_hub(tiny, n_positive=4, n_negative=8), ["de", "ja"])  # every text of each pool
    assert ts.texts["text"].is_unique
    assert len(ts.texts) == 6 * 8  # 6 languages x (4 paws + 4 flores), each stored once
    de_ids = set(ts.labelled("de")["text_id"])
    ja_ids = set(ts.labelled("ja")["text_id"])
    shared = set(ts.texts.loc[ts.texts["lang"] == "en", "text_id"])
    assert shared <= de_ids & ja_ids and len(shared) == 8


def test_pool_too_small(sources: list[HubSource]) -> None:
    with pytest.raises(DataError) as err:
        build_hub_sets(_hub(sources, n_positive=70), ["de"])
    msg = str(err.value)
    assert sources[0].id in msg and "30" in msg and "35" in msg and "n_positive" in msg


def test_duplicates_and_blanks_not_counted(tmp_path: Path) -> None:
    root = tmp_path / "dups"
    frame = pd.DataFrame({"text": ["a", " a ", "", "   ", "b", "a"]})
    _write_repo(root, "devtest", {code: frame for code in FLORES_CODES.values()})
    src = HubSource(id=str(root), split="devtest", text_field="text", configs=dict(FLORES_CODES))
    with pytest.raises(DataError, match="has 2 unique"):
        build_hub_sets(_hub([src], n_positive=3, n_negative=1), ["en"])


def test_wrong_text_field(sources: list[HubSource]) -> None:
    bad = HubSource(id=sources[0].id, split="test", text_field="sentence", configs=sources[0].configs)
    with pytest.raises(DataError, match="'sentence'.*sentence1"):
        build_hub_sets(_hub([bad, sources[1]]), ["de"])


@pytest.mark.parametrize("dataset_id", ["no-such-org/no-such-dataset", "MISSING_DIR"])
def test_unloadable_dataset(sources: list[HubSource], tmp_path: Path, dataset_id: str) -> None:
    dataset_id = str(tmp_path / "missing") if dataset_id == "MISSING_DIR" else dataset_id
    bad = HubSource(id=dataset_id, split="test", text_field="sentence1", configs=sources[0].configs)
    with pytest.raises(DataError, match="data.source=official") as err:
        build_hub_sets(_hub([bad, sources[1]]), ["de"])
    assert dataset_id in str(err.value) and err.value.__cause__ is not None


def test_a_language_only_flores_has(tmp_path: Path, sources: list[HubSource]) -> None:
    """Italian is in FLORES+, not in PAWS-X: its texts come from FLORES alone, and it joins the others' negatives."""
    flores = _write_repo(tmp_path / "flores-it", "devtest", {
        code: pd.DataFrame({"id": range(N_ROWS), "text": [f"flores {lang} line {i}." for i in range(N_ROWS)]})
        for lang, code in {**FLORES_CODES, "it": "ita_Latn"}.items()})
    with_it = [sources[0], HubSource(id=str(flores), split="devtest", text_field="text",
                                     configs={**FLORES_CODES, "it": "ita_Latn"})]
    ts = build_hub_sets(_hub(with_it), ["it", "de"])
    text_of = dict(zip(ts.texts["text_id"], ts.texts["text"]))
    it_rows = ts.labelled("it")
    assert [_origin(text_of[t]) for t in it_rows["text_id"][:10]] == [("flores", "it")] * 10
    de_negatives = [_origin(text_of[t])[1] for t in ts.labelled("de")["text_id"][10:]]
    assert de_negatives == [m for m in [*LANGUAGES, "it"] if m != "de" for _ in range(6)]
    # the paper's languages draw exactly what they drew before Italian was added
    before = build_hub_sets(_hub(sources), ["de"])
    texts_b = dict(zip(before.texts["text_id"], before.texts["text"]))
    assert [text_of[t] for t in ts.labelled("de")["text_id"][:40]] == [texts_b[t] for t in before.labelled("de")["text_id"]]
    with pytest.raises(DataError, match=r"unknown language code\(s\) \['sw'\]: data.hub.sources has"):
        build_hub_sets(_hub(with_it), ["sw"])
