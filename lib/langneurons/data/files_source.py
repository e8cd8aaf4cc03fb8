"""The `files` source: your own texts, any language. A folder of <code>.txt files, one text per line.

Per target language L: n_positive lines of L.txt, then n_negative_per_language lines of every other
.txt file in the folder (as the paper takes negatives from every other language), each drawn in a
seeded order. Blank lines are ignored; a line repeated in a file is used once and reported.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from langneurons.base.languages import check_languages, folder_codes
from langneurons.base.errors import DataError
from langneurons.data.textsets import LabelledList, TextSets


@dataclass(frozen=True)
class LanguageFile:
    code: str
    path: Path
    texts: list[str]  # unique non-blank lines, in file order
    duplicates: int  # lines dropped because an earlier line had the same text


def read_language_file(path: Path) -> LanguageFile:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e}): save it as UTF-8") from e
    kept = [line.strip() for line in lines if line.strip()]
    unique = list(dict.fromkeys(kept))
    return LanguageFile(path.stem, path, unique, len(kept) - len(unique))


def _sample(texts: list[str], n: int, seed: int, target: str, source: str) -> list[str]:
    """n texts in an order seeded by (seed, target, source): the same whatever else `languages` holds."""
    order = np.random.default_rng([seed, zlib.crc32(target.encode()), zlib.crc32(source.encode())]).permutation(len(texts))
    return [texts[i] for i in order[:n]]


def load_files(folder: Path, languages: list[str], n_positive: int, n_negative_per_language: int,
               seed: int) -> TextSets:
    """The labelled sets of `languages` from the folder; every other file gives negatives too."""
    codes = folder_codes(folder)
    check_languages(languages, codes, source=f"data.files.path {folder}")
    files = {code: read_language_file(folder / f"{code}.txt") for code in codes}
    for f in files.values():
        if f.duplicates:
            print(f"{f.path.name}: {f.duplicates} repeated line(s) used once")
        if len(f.texts) < n_negative_per_language:
            raise DataError(f"{f.path} has {len(f.texts)} distinct texts; data.files.n_negative_per_language="
                            f"{n_negative_per_language} needs that many from every file: add texts or lower it")
    for lang in languages:
        if len(files[lang].texts) < n_positive:
            raise DataError(f"{files[lang].path} has {len(files[lang].texts)} distinct texts; data.files.n_positive="
                            f"{n_positive} needs that many: add texts or lower it")
    if len(codes) < 2:
        raise DataError(f"{folder} has one language only: negatives come from the other files, add at least one")
    lists = {}
    for lang in languages:
        positives = _sample(files[lang].texts, n_positive, seed, lang, lang)
        negatives = [(text, other) for other in codes if other != lang
                     for text in _sample(files[other].texts, n_negative_per_language, seed, lang, other)]
        lists[lang] = LabelledList(positives, negatives)
    return TextSets.from_lists(lists)
