"""Language codes: the paper's six, a table of names for any other code, and the checks on them."""

from __future__ import annotations

import re
from pathlib import Path

from langneurons.base.errors import DataError

LANGUAGES: tuple[str, ...] = ("en", "de", "fr", "es", "zh", "ja")
# Names for figures and reports. A code not listed here is shown as the code itself.
LANGUAGE_NAMES: dict[str, str] = {
    "en": "English", "de": "German", "fr": "French", "es": "Spanish", "zh": "Chinese", "ja": "Japanese",
    "ar": "Arabic", "bg": "Bulgarian", "bn": "Bengali", "ca": "Catalan", "cs": "Czech", "da": "Danish",
    "el": "Greek", "et": "Estonian", "eu": "Basque", "fa": "Persian", "fi": "Finnish", "ga": "Irish",
    "gl": "Galician", "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "hu": "Hungarian", "hy": "Armenian",
    "id": "Indonesian", "is": "Icelandic", "it": "Italian", "ka": "Georgian", "kk": "Kazakh", "ko": "Korean",
    "lt": "Lithuanian", "lv": "Latvian", "ms": "Malay", "mt": "Maltese", "nl": "Dutch", "no": "Norwegian",
    "pl": "Polish", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sk": "Slovak", "sl": "Slovenian",
    "sq": "Albanian", "sr": "Serbian", "sv": "Swedish", "sw": "Swahili", "ta": "Tamil", "te": "Telugu",
    "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "uk": "Ukrainian", "ur": "Urdu", "vi": "Vietnamese",
    "yo": "Yoruba", "cy": "Welsh", "eo": "Esperanto", "la": "Latin", "tok": "Toki Pona",
}
_CODE = re.compile(r"^[a-z][a-z0-9_-]{0,15}$")


def language_name(code: str) -> str:
    """The language's English name, or the code itself when the table does not know it."""
    return LANGUAGE_NAMES.get(code, code)


def check_languages(languages: list[str] | tuple[str, ...], available: tuple[str, ...] = LANGUAGES,
                    source: str = "the paper's data") -> list[str]:
    """Return the languages as a list, or fail naming the bad code and what `source` offers."""
    if not languages:
        raise ValueError("languages is empty: name at least one of " + ",".join(available))
    malformed = [lang for lang in languages if not isinstance(lang, str) or not _CODE.match(lang)]
    if malformed:
        raise ValueError(f"language code(s) {malformed} are not codes: use lower-case codes such as de, ja, tok")
    unknown = [lang for lang in languages if lang not in available]
    if unknown:
        hint = "" if source != "the paper's data" else " (other languages: data.source=files, a folder of <code>.txt)"
        raise ValueError(f"unknown language code(s) {unknown}: {source} has {list(available)}, e.g. languages="
                         f"{','.join(available[:2])}{hint}")
    if len(set(languages)) != len(languages):
        raise ValueError(f"languages {list(languages)} has duplicates: list each language once")
    return list(languages)


def folder_codes(folder: Path) -> tuple[str, ...]:
    """The language codes the folder provides: the stems of its .txt files, sorted."""
    if not folder.is_dir():
        raise DataError(f"data.files.path {folder} is not a folder: point it at a folder of <code>.txt files")
    codes = tuple(sorted(p.stem for p in folder.glob("*.txt") if p.is_file()))
    if not codes:
        raise DataError(f"{folder} holds no .txt files: add <code>.txt (one text per line) for each language")
    return codes
