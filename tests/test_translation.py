"""Translation experiment pieces: prompt, answer extraction, language-name answers, BLEU, pair loading.

Hub loading runs offline on local stand-ins laid out like hub dataset repos (helpers from
test_hub_data), exactly as `datasets.load_dataset` would read the hub ids.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import pandas as pd
import pytest
from sacrebleu.metrics import BLEU
from test_hub_data import _offline, _write_repo  # noqa: F401  (_offline: autouse fixture, offline + fresh cache)

from langneurons.base.errors import DataError
from langneurons.control.translation import (
    PROMPT,
    TASKS,
    HubTranslationSource,
    build_prompt,
    corpus_bleu,
    extract_answer,
    is_language_name_only,
    load_hub_pairs,
    load_official_pairs,
    official_pairs_file,
    split_continuation,
)

SHARED_TRANSLATION = Path(__file__).resolve().parents[2] / "shared" / "data" / "lang_neuron_official" / "translation"
SHARED_PKL = SHARED_TRANSLATION.parent / "translation_pkl"
ALL_TASK_LANGS = [(task, lang) for task, langs in TASKS.items() for lang in langs]


# ---------------------------------------------------------------- prompt and answers


def test_tasks_and_prompt() -> None:
    assert TASKS == {"flores200": ("de", "fr", "es", "zh", "ja"), "iwslt2017": ("de", "fr", "ja", "zh"), "wmt": ("de", "fr", "zh")}
    assert PROMPT == "Translate an English sentence into a target language.\nEnglish: {source}\nTarget Language:"
    prompt = build_prompt("The dog {barks}.")
    assert prompt == "Translate an English sentence into a target language.\nEnglish: The dog {barks}.\nTarget Language:"


@pytest.mark.parametrize(("continuation", "answer"), [
    (" Hallo Welt.\nEnglish: next", "Hallo Welt."),
    ("\n\n  Bonjour\n", "Bonjour"),
    ("", ""),
    ("\n\n", ""),
    ("  Hola mundo.  ", "Hola mundo."),
    (" 你好，世界。\r\nEnglish: x", "你好，世界。"),
])
def test_extract_answer(continuation: str, answer: str) -> None:
    assert extract_answer(continuation) == answer


def test_split_continuation_on_echoed_prompt() -> None:
    continuation = " Der Hund bellt.\nEnglish: The cat sleeps."
    full = build_prompt("The dog barks.") + continuation
    assert split_continuation(full) == continuation
    assert extract_answer(split_continuation(full)) == "Der Hund bellt."
    assert split_continuation(" Der Hund bellt.") == " Der Hund bellt."  # no marker: unchanged


@pytest.mark.parametrize("answer", [
    "Deutsch.", "German", "français", "Español", "中文", "日本語", "Japanese.", "Chinese (Simplified)",
    "  FRENCH!  ", "「日本語」", "**German**", "German language", "简体中文", "Deutsch (German)", "Simplified Chinese",
])
def test_language_name_only(answer: str) -> None:
    assert is_language_name_only(answer)


@pytest.mark.parametrize("answer", [
    "Der Hund.", "German translation: Der Hund", "", "...", "Je parle français.", "日本語を話します。",
    "Deutschland", "Chinese food",
])
def test_not_language_name_only(answer: str) -> None:
    assert not is_language_name_only(answer)


# ---------------------------------------------------------------- BLEU


def test_bleu_identical_and_empty() -> None:
    refs = ["The cat sleeps on the warm roof.", "We walked to the station in the rain."]
    assert corpus_bleu(refs, refs, "de") == pytest.approx(100.0)
    assert corpus_bleu(["", ""], refs, "de") == 0.0  # no n-gram matches at all


def test_bleu_from_first_principles() -> None:
    # every n-gram of the hypothesis is in the reference (precisions 4/4, 3/3, 2/2, 1/1), but it is
    # half as long: brevity penalty exp(1 - 8/4), so BLEU = 100 / e
    assert corpus_bleu(["a b c d"], ["a b c d e f g h"], "fr") == pytest.approx(100 / math.e)


def test_bleu_zh_and_ja_tokenizers() -> None:
    hyp, ref = ["猫は屋根の上で寝ている。"], ["猫は暖かい屋根の上で寝ている。"]
    ja = BLEU(tokenize="ja-mecab").corpus_score(hyp, [ref]).score
    assert ja != BLEU(tokenize="13a").corpus_score(hyp, [ref]).score  # 13a sees one unmatched "word"
    assert corpus_bleu(hyp, ref, "ja") == pytest.approx(ja)
    assert corpus_bleu(ref, ref, "ja") == pytest.approx(100.0)
    hyp, ref = ["我们走到车站。"], ["我们在雨中走到车站。"]
    zh = BLEU(tokenize="zh").corpus_score(hyp, [ref]).score
    assert zh != BLEU(tokenize="13a").corpus_score(hyp, [ref]).score
    assert corpus_bleu(hyp, ref, "zh") == pytest.approx(zh)


def test_bleu_bad_input() -> None:
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        corpus_bleu(["a", "b"], ["a"], "de")
    with pytest.raises(ValueError, match="no pairs"):
        corpus_bleu([], [], "de")


# ---------------------------------------------------------------- released pairs


@pytest.mark.parametrize(("task", "lang"), ALL_TASK_LANGS)
def test_official_shared_files(task: str, lang: str) -> None:
    """The released pickles, read by the restricted unpickler, give exactly their JSON copies."""
    path = SHARED_PKL / f"translation_text_{task}_en_{lang}.pkl"
    if not path.is_file():
        pytest.skip(f"released translation pairs not found at {path}")
    pairs = load_official_pairs(SHARED_PKL, task, lang, 100)
    copy = json.loads((SHARED_TRANSLATION / f"{task}_en_{lang}.json").read_text(encoding="utf-8"))
    assert list(pairs.columns) == ["source", "reference"] and len(pairs) == 100
    assert pairs["source"].tolist() == [it["en"].strip() for it in copy]
    assert pairs["reference"].tolist() == [it[lang].strip() for it in copy]
    assert pairs.map(lambda t: bool(t.strip())).all().all()


def _write_pairs(root: Path, task: str, lang: str, items: object) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / official_pairs_file(task, lang)).write_bytes(pickle.dumps(items, protocol=4))
    return root


def test_official_made_up_file(tmp_path: Path) -> None:
    items = [{"en": f" source {i} ", "ja": f"参照 {i}"} for i in range(5)]
    root = _write_pairs(tmp_path, "flores200", "ja", items)
    pairs = load_official_pairs(root, "flores200", "ja", 3)
    expected = pd.DataFrame({"source": ["source 0", "source 1", "source 2"], "reference": ["参照 0", "参照 1", "参照 2"]})
    pd.testing.assert_frame_equal(pairs, expected)
    assert len(load_official_pairs(root, "flores200", "ja", 100)) == 5  # fewer than asked: all there is


def test_official_only_used_pairs_checked(tmp_path: Path) -> None:
    root = _write_pairs(tmp_path, "wmt", "de", [{"en": "a", "de": "b"}, {"en": "", "de": "c"}])
    assert len(load_official_pairs(root, "wmt", "de", 1)) == 1
    with pytest.raises(DataError, match="pair 1 has an empty source"):
        load_official_pairs(root, "wmt", "de", 2)


@pytest.mark.parametrize(("task", "lang"), [("wmt", "ja"), ("flores", "de"), ("iwslt2017", "es")])
def test_official_unknown_combination(tmp_path: Path, task: str, lang: str) -> None:
    with pytest.raises(DataError, match="valid combinations.*flores200: de/fr/es/zh/ja.*wmt: de/fr/zh"):
        load_official_pairs(tmp_path, task, lang, 10)


def test_official_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="translation.official_path") as err:
        load_official_pairs(tmp_path, "iwslt2017", "fr", 10)
    assert str(tmp_path / "translation_text_iwslt2017_en_fr.pkl") in str(err.value)


def test_official_bad_n(tmp_path: Path) -> None:
    root = _write_pairs(tmp_path, "wmt", "fr", [{"en": "a", "fr": "b"}])
    with pytest.raises(DataError, match="at least 1"):
        load_official_pairs(root, "wmt", "fr", 0)


@pytest.mark.parametrize(("content", "message"), [
    (pickle.dumps([{"en": "a"}])[:-3], "translation_text_wmt_en_zh.pkl"),  # truncated pickle
    (pickle.dumps({"en": "a", "zh": "b"}), "holds a dict, not a list"),
    (pickle.dumps([{"en": "a", "de": "b"}]), r"item 0 is \['de', 'en'\].*\"zh\": reference"),
    (pickle.dumps([["a", "b"]]), "item 0 is list"),
    (pickle.dumps([{"en": "a", "zh": 3}]), "pair 0 has a reference of type int"),
    (pickle.dumps([{"en": "a", "zh": "  "}]), "pair 0 has an empty reference"),
    (pickle.dumps([{"en": "a", "zh": ("b",)}]), "tuple"),  # only lists, dicts, strings and integers are built
])
def test_official_bad_content(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "translation_text_wmt_en_zh.pkl").write_bytes(content)
    with pytest.raises(DataError, match=message) as err:
        load_official_pairs(tmp_path, "wmt", "zh", 10)
    assert str(tmp_path / "translation_text_wmt_en_zh.pkl") in str(err.value)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- hub pairs (offline stand-ins)


def _iwslt(root: Path, n: int) -> HubTranslationSource:
    """Stand-in for IWSLT2017: one config per pair, rows holding a `translation` dict."""
    configs = {
        f"iwslt2017-en-{lang}": pd.DataFrame({
            "translation": [{"en": f"talk {i}.", lang: f"{lang} talk {i}."} for i in range(n)],
        })
        for lang in ("de", "ja")
    }
    _write_repo(root, "test", configs)
    return HubTranslationSource(id=str(root), config="iwslt2017-en-{lang}", split="test",
                                kind="translation_column", codes={"de": "de", "ja": "ja"})


def _flores_plus(root: Path, rows: dict[str, int]) -> HubTranslationSource:
    """Stand-in for FLORES+: one config per language, aligned row by row, sentence in `text`."""
    configs = {code: pd.DataFrame({"id": range(k), "text": [f"{code} line {i}." for i in range(k)]})
               for code, k in rows.items()}
    _write_repo(root, "devtest", configs)
    return HubTranslationSource(id=str(root), config="{code}", split="devtest", kind="parallel_configs",
                                text_field="text", source_config="eng_Latn",
                                codes={"de": "deu_Latn", "zh": "cmn_Hans", "ja": "jpn_Jpan"})


def test_hub_translation_column(tmp_path: Path) -> None:
    spec = _iwslt(tmp_path / "iwslt", 8)
    pairs = load_hub_pairs(spec, "ja", 5)
    expected = pd.DataFrame({"source": [f"talk {i}." for i in range(5)], "reference": [f"ja talk {i}." for i in range(5)]})
    pd.testing.assert_frame_equal(pairs, expected)
    assert len(load_hub_pairs(spec, "de", 100)) == 8


def test_hub_parallel_configs(tmp_path: Path) -> None:
    spec = _flores_plus(tmp_path / "flores", {"eng_Latn": 6, "deu_Latn": 6, "cmn_Hans": 6})
    pairs = load_hub_pairs(spec, "zh", 4)
    assert pairs["source"].tolist() == [f"eng_Latn line {i}." for i in range(4)]
    assert pairs["reference"].tolist() == [f"cmn_Hans line {i}." for i in range(4)]
    assert len(load_hub_pairs(spec, "de", 100)) == 6


def test_hub_spec_errors(tmp_path: Path) -> None:
    spec = _flores_plus(tmp_path / "flores", {"eng_Latn": 6, "deu_Latn": 5, "cmn_Hans": 6})
    with pytest.raises(DataError, match="not aligned row by row"):
        load_hub_pairs(spec, "de", 3)
    with pytest.raises(DataError, match="no code for 'fr'.*codes"):
        load_hub_pairs(spec, "fr", 3)
    with pytest.raises(DataError, match="could not be read.*config"):
        load_hub_pairs(spec, "ja", 3)  # jpn_Jpan is not a config of the stand-in
    bad_field = HubTranslationSource(id=spec.id, config="{code}", split="devtest", kind="parallel_configs",
                                     text_field="sentence", source_config="eng_Latn", codes=spec.codes)
    with pytest.raises(DataError, match="no column 'sentence'.*'text'"):
        load_hub_pairs(bad_field, "zh", 3)
    with pytest.raises(DataError, match="kind 'pairs' is unknown"):
        HubTranslationSource(id="x", config="{code}", split="test", kind="pairs")
    with pytest.raises(DataError, match="needs source_config"):
        HubTranslationSource(id="x", config="{code}", split="test", kind="parallel_configs")


def test_hub_wrong_pair_config(tmp_path: Path) -> None:
    spec = _iwslt(tmp_path / "iwslt", 4)
    swapped = HubTranslationSource(id=spec.id, config="iwslt2017-en-de", split="test",
                                   kind="translation_column", codes={"ja": "ja"})
    with pytest.raises(DataError, match=r"needs 'en' and 'ja'"):
        load_hub_pairs(swapped, "ja", 2)


@pytest.mark.parametrize("dataset_id", ["no-such-org/no-such-dataset", "MISSING_DIR"])
def test_hub_unreachable(tmp_path: Path, dataset_id: str) -> None:
    dataset_id = str(tmp_path / "missing") if dataset_id == "MISSING_DIR" else dataset_id
    spec = HubTranslationSource(id=dataset_id, config="iwslt2017-en-{lang}", split="test",
                                kind="translation_column", codes={"de": "de"})
    with pytest.raises(DataError, match="translation.source=official") as err:
        load_hub_pairs(spec, "de", 3)
    assert dataset_id in str(err.value) and err.value.__cause__ is not None
