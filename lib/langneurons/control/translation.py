"""The paper's translation experiment: English sources, prompt, answer extraction and BLEU.

The prompt deliberately does not name the target language: the model must pick it up from the
neurons forced on, so a model that answers with a language's name ("Deutsch.") has not translated;
`is_language_name_only` lets such answers be counted apart. Pairs come either from the released
files (translation_text_<task>_en_<lang>.pkl, a pickled list of {"en": source, "<lang>": reference},
read with a restricted unpickler that builds nothing but lists, dicts, strings and integers) or
from the hub.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

import pandas as pd

from langneurons.base.params import TASKS, HubTranslationSource
from langneurons.data.hub_sets import load_hub_split
from langneurons.data.safe_pickle import load_builtin_pickle
from langneurons.base.errors import DataError

SOURCE_LANG = "en"
# task -> target languages, as in the paper (first 100 pairs of each)
ANSWER_MARKER = "Target Language:"
PROMPT = "Translate an English sentence into a target language.\nEnglish: {source}\n" + ANSWER_MARKER


def build_prompt(source: str) -> str:
    """The paper's prompt for one English sentence (target language left unnamed on purpose)."""
    return PROMPT.format(source=source)


# ---------------------------------------------------------------- pairs: released files


def _check_task(task: str, lang: str) -> None:
    """Only the paper's task/language combinations have released files."""
    if lang not in TASKS.get(task, ()):
        valid = ", ".join(f"{t}: {'/'.join(langs)}" for t, langs in TASKS.items())
        raise DataError(f"no translation task '{task}' into '{lang}': valid combinations are {valid}")


def _check_n(n: int) -> None:
    if n < 1:
        raise DataError(f"asked for {n} translation pairs: ask for at least 1 (paper: 100)")


def _pairs_frame(sources: list[Any], references: list[Any], where: str) -> pd.DataFrame:
    """source/reference columns, stripped; a missing or blank text would make the prompt or BLEU meaningless."""
    for i, (src, ref) in enumerate(zip(sources, references)):
        for role, text in (("source", src), ("reference", ref)):
            if not isinstance(text, str):
                raise DataError(f"{where}: pair {i} has a {role} of type {type(text).__name__}, not text: fix the data")
            if not text.strip():
                raise DataError(f"{where}: pair {i} has an empty {role}: fix or drop that pair")
    return pd.DataFrame({"source": [s.strip() for s in sources], "reference": [r.strip() for r in references]})


def official_pairs_file(task: str, lang: str) -> str:
    """The released file name of a task's pairs, as in the original repository's assets_translation/."""
    return f"translation_text_{task}_{SOURCE_LANG}_{lang}.pkl"


def load_official_pairs(data_dir: Path, task: str, lang: str, n: int) -> pd.DataFrame:
    """The first n (source, reference) pairs of <data_dir>/translation_text_<task>_en_<lang>.pkl, in file order.

    Read with a restricted unpickler (never pickle.load): only lists, dicts, strings and integers
    are built. Only the pairs used are checked; a file with fewer than n pairs gives all it has.
    """
    _check_task(task, lang)
    _check_n(n)
    path = Path(data_dir) / official_pairs_file(task, lang)
    if not path.is_file():
        raise DataError(f"{path} is missing: set translation.official_path to a folder of released translation "
                        "pairs (translation_text_<task>_en_<lang>.pkl), or to null to fetch them (make data)")
    items = load_builtin_pickle(path)
    schema = f'a list of {{"{SOURCE_LANG}": source, "{lang}": reference}} dicts'
    if not isinstance(items, list):
        raise DataError(f"{path} holds a {type(items).__name__}, not {schema}: replace it with the released file")
    items = items[:n]
    for i, item in enumerate(items):
        if not isinstance(item, dict) or SOURCE_LANG not in item or lang not in item:
            keys = sorted(item) if isinstance(item, dict) else type(item).__name__
            raise DataError(f"{path}: item {i} is {keys}, but each item must be one of {schema}")
    return _pairs_frame([it[SOURCE_LANG] for it in items], [it[lang] for it in items], str(path))


# ---------------------------------------------------------------- pairs: Hugging Face hub




def _load_split(dataset_id: str, config: str, split: str) -> Any:
    return load_hub_split(
        dataset_id, config, split, fix="fix the source's config template, codes or split",
        offline="use the released translation pairs: translation.source=official (fetched by `make data`, "
        "or from a mirror named by LANGNEURONS_RELEASE_URL).",
    )


def _column(ds: Any, name: str, where: str, k: int) -> list[Any]:
    """The first k values of one column, or a DataError listing the columns there are."""
    if name not in ds.column_names:
        raise DataError(f"{where} has no column '{name}' (it has {ds.column_names}): fix the source spec")
    return list(ds.select(range(min(k, len(ds))))[name])


def _translation_pairs(spec: HubTranslationSource, lang: str, config: str, n: int) -> pd.DataFrame:
    where = f"dataset {spec.id} (config {config}, split {spec.split})"
    rows = _column(_load_split(spec.id, config, spec.split), "translation", where, n)
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or row.get(SOURCE_LANG) is None or row.get(lang) is None:
            keys = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise DataError(f"{where}: row {i} translation has {keys}, needs '{SOURCE_LANG}' and '{lang}': "
                            "pick the config for this language pair")
    return _pairs_frame([r[SOURCE_LANG] for r in rows], [r[lang] for r in rows], where)


def _parallel_pairs(spec: HubTranslationSource, lang: str, config: str, n: int) -> pd.DataFrame:
    assert spec.source_config is not None  # checked in HubTranslationSource
    src_config = spec.source_config.format(lang=SOURCE_LANG, code=spec.codes.get(SOURCE_LANG, SOURCE_LANG))
    src_ds = _load_split(spec.id, src_config, spec.split)
    tgt_ds = _load_split(spec.id, config, spec.split)
    if len(src_ds) != len(tgt_ds):
        raise DataError(f"dataset {spec.id} configs {src_config} ({len(src_ds)} rows) and {config} "
                        f"({len(tgt_ds)} rows) are not aligned row by row: use a parallel split")
    where = f"dataset {spec.id} (configs {src_config}/{config}, split {spec.split})"
    sources = _column(src_ds, spec.text_field, f"{where}, {src_config}", n)
    references = _column(tgt_ds, spec.text_field, f"{where}, {config}", n)
    return _pairs_frame(sources, references, where)


def load_hub_pairs(spec: HubTranslationSource, lang: str, n: int) -> pd.DataFrame:
    """The first n (source, reference) pairs into `lang` from a hub dataset, in dataset order."""
    _check_n(n)
    if lang not in spec.codes:
        raise DataError(f"hub translation source {spec.id} has no code for '{lang}' (it has {sorted(spec.codes)}): "
                        "add it under its `codes`")
    config = spec.config.format(lang=lang, code=spec.codes[lang])
    if spec.kind == "translation_column":
        return _translation_pairs(spec, lang, config, n)
    return _parallel_pairs(spec, lang, config, n)


# ---------------------------------------------------------------- answers


def split_continuation(full_text: str) -> str:
    """What follows the first answer marker, for decoders that echo the prompt; text without it is returned as is."""
    _, marker, tail = full_text.partition(ANSWER_MARKER)
    return tail if marker else full_text


def extract_answer(continuation: str) -> str:
    """The answer line: the model often goes on with a new "English:" line, which is not part of it."""
    text = continuation.lstrip()
    return text.splitlines()[0].strip() if text else ""


# English and native names (lower-cased) of the paper's languages and a few common others.
LANGUAGE_NAMES: frozenset[str] = frozenset({
    "english", "英語", "英语", "英文", "anglais", "englisch", "inglés", "ingles",
    "german", "deutsch", "allemand", "alemán", "aleman", "ドイツ語", "德语", "德語", "德文",
    "french", "français", "francais", "französisch", "francés", "frances", "フランス語", "法语", "法語", "法文",
    "spanish", "español", "espanol", "castellano", "spanisch", "espagnol", "スペイン語", "西班牙语", "西班牙語", "西班牙文",
    "chinese", "mandarin", "mandarin chinese", "simplified chinese", "traditional chinese",
    "中文", "汉语", "漢語", "华语", "華語", "普通话", "普通話", "简体中文", "簡體中文", "繁体中文", "繁體中文",
    "中国語", "中國語", "中国话", "中國話", "chinesisch", "chinois", "chino",
    "japanese", "日本語", "日本语", "日语", "日語", "にほんご", "japanisch", "japonais", "japonés", "japones", "日文",
    "korean", "한국어", "italian", "italiano", "portuguese", "português", "russian", "русский",
    "dutch", "nederlands", "arabic", "العربية", "hindi", "हिन्दी",
})
_QUALIFIER = re.compile(r"[(（\[][^)）\]]*[)）\]]")  # "(Simplified)", "（简体）"
_LANGUAGE_WORD = re.compile(r"\s+language$")  # "German language"


def _strip_marks(text: str) -> str:
    """Drop punctuation, symbols and spaces at both ends ("Deutsch.", "「日本語」", "**German**")."""
    def is_mark(ch: str) -> bool:
        return ch.isspace() or unicodedata.category(ch)[0] in "PSZ"

    start, end = 0, len(text)
    while start < end and is_mark(text[start]):
        start += 1
    while end > start and is_mark(text[end - 1]):
        end -= 1
    return text[start:end]


def is_language_name_only(answer: str) -> bool:
    """True when the answer is just a language's name: the model named the language instead of translating."""
    text = _QUALIFIER.sub(" ", unicodedata.normalize("NFC", answer))
    text = " ".join(_strip_marks(text).casefold().split())
    text = _strip_marks(_LANGUAGE_WORD.sub("", text))
    return text in LANGUAGE_NAMES


# ---------------------------------------------------------------- BLEU


def bleu_tokenizer(lang: str) -> str:
    """sacrebleu's tokenizer for a target language: zh and ja have no spaces between words."""
    return {"zh": "zh", "ja": "ja-mecab"}.get(lang, "13a")


def corpus_bleu(hypotheses: list[str], references: list[str], lang: str) -> float:
    """sacrebleu corpus BLEU (0-100) of the answers against one reference each."""
    from sacrebleu.metrics import BLEU

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references: pass one answer per pair")
    if not references:
        raise ValueError("no pairs to score: pass at least one hypothesis/reference pair")
    try:
        bleu = BLEU(tokenize=bleu_tokenizer(lang))
    except (ImportError, RuntimeError) as e:
        raise ImportError(f"the {bleu_tokenizer(lang)} BLEU tokenizer is unavailable ({e}): "
                          "install the project dependencies (`pip install 'sacrebleu[ja]'` for ja)") from e
    return float(bleu.corpus_score(list(hypotheses), [list(references)]).score)
