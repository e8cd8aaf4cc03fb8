"""Labelled text sets: for each target language L, its positives (texts in L) and negatives.

Stored as two tables so that a text shared by several sets is kept (and later run through the
model) once:
- texts: text_id, text, lang — every unique text;
- sets:  target, position, text_id, label — per target language, the ordered list that makes up its
  positive/negative set (duplicates kept, as the released sets have them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from langneurons.base.atomic import write_json, write_parquet
from langneurons.base.errors import DataError
from langneurons.base.languages import LANGUAGES

UNKNOWN_LANG = "unknown"


@dataclass(frozen=True)
class LabelledList:
    """One target language's set: positive texts, then negative texts with their language."""

    positives: list[str]
    negatives: list[tuple[str, str]]  # (text, language of that text or "unknown")


@dataclass
class TextSets:
    texts: pd.DataFrame  # text_id, text, lang
    sets: pd.DataFrame  # target, position, text_id, label

    @property
    def targets(self) -> list[str]:
        return list(dict.fromkeys(self.sets["target"]))

    def labelled(self, target: str) -> pd.DataFrame:
        """Rows of one target language's set, in order: position, text_id, label."""
        rows = self.sets[self.sets["target"] == target]
        if rows.empty:
            raise DataError(f"no set for language '{target}': it has {self.targets}")
        return rows.reset_index(drop=True)

    def positive_share(self, target: str) -> float:
        """Share of positives in a set: the AP of a unit that knows nothing (chance level)."""
        return float(self.labelled(target)["label"].mean())

    def summary(self) -> pd.DataFrame:
        """Per target: positives, negatives, unique texts; the numbers a reader checks first."""
        g = self.sets.groupby("target", sort=False)
        return pd.DataFrame({
            "positives": g["label"].sum(),
            "negatives": g["label"].apply(lambda s: int((s == 0).sum())),
            "unique_texts": g["text_id"].nunique(),
        })

    def save(self, out_dir: Path) -> None:
        write_parquet(out_dir / "texts.parquet", self.texts)
        write_parquet(out_dir / "sets.parquet", self.sets)
        write_json(out_dir / "summary.json", {
            "n_unique_texts": int(len(self.texts)),
            "per_target": self.summary().reset_index().to_dict(orient="records"),
        })

    @classmethod
    def load(cls, out_dir: Path) -> TextSets:
        for name in ("texts.parquet", "sets.parquet"):
            if not (out_dir / name).is_file():
                raise DataError(f"{out_dir / name} is missing: run notebook 01 (data prep) first")
        return cls(pd.read_parquet(out_dir / "texts.parquet"), pd.read_parquet(out_dir / "sets.parquet"))

    @classmethod
    def from_lists(cls, lists: dict[str, LabelledList]) -> TextSets:
        """Deduplicate texts across all sets (first appearance fixes the id) and build both tables."""
        ids: dict[str, int] = {}
        langs: list[str] = []
        rows: list[tuple[str, int, int, int]] = []
        for target, lst in lists.items():
            items = [(t, target, 1) for t in lst.positives] + [(t, lang, 0) for t, lang in lst.negatives]
            for position, (text, lang, label) in enumerate(items):
                if text not in ids:
                    ids[text] = len(ids)
                    langs.append(lang)
                elif langs[ids[text]] == UNKNOWN_LANG:
                    langs[ids[text]] = lang
                rows.append((target, position, ids[text], label))
        texts = pd.DataFrame({"text_id": range(len(ids)), "text": list(ids), "lang": langs})
        sets = pd.DataFrame(rows, columns=["target", "position", "text_id", "label"])
        return cls(texts.astype({"text_id": "int64"}), sets.astype({"position": "int64", "text_id": "int64", "label": "int8"}))


def check_texts(texts: list[object], where: str) -> list[str]:
    """Every text must be a non-empty string; name the first bad one."""
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise DataError(f"{where}[{i}] is empty or not a string ({t!r}): remove it from the data file")
    return texts  # type: ignore[return-value]


# ------------------------------------------------------------------------------------ official sets


def _read_official_file(path: Path) -> tuple[list[str], list[str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        positives = data["sentences"]["positive"]
        negatives = data["sentences"]["negative"]
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON ({e}): restore the file from the released data") from e
    except (KeyError, TypeError) as e:
        raise DataError(
            f"{path} does not have the released schema "
            '{"concept", "group", "sentences": {"positive": [...], "negative": [...]}}: missing ' + str(e)
        ) from e
    if not isinstance(positives, list) or not isinstance(negatives, list):
        raise DataError(f"{path}: sentences.positive and sentences.negative must be lists of texts")
    if not positives or not negatives:
        raise DataError(f"{path} has no positive or no negative texts: a set needs both")
    return check_texts(positives, f"{path}: positive"), check_texts(negatives, f"{path}: negative")


def _negative_languages(negatives: list[str], target: str, positive_lang: dict[str, str]) -> list[str]:
    """Language of each negative text.

    The released files do not label negatives, but they hold one block per other language (500
    each). A block's language is the one whose positives it shares texts with (about half of each
    block); texts outside any positive set take their block's language.
    """
    others = [lang for lang in LANGUAGES if lang != target]
    langs = [positive_lang.get(t, UNKNOWN_LANG) for t in negatives]
    if len(negatives) % len(others):
        return langs
    size = len(negatives) // len(others)
    for start in range(0, len(negatives), size):
        votes = {positive_lang[t] for t in negatives[start:start + size] if t in positive_lang}
        if len(votes) == 1:
            langs[start:start + size] = [votes.pop()] * size
    return langs


def load_official(data_dir: Path, languages: list[str]) -> TextSets:
    """The sentence sets released with the original code, exactly (order and duplicates kept)."""
    if not data_dir.is_dir():
        raise DataError(f"official data directory {data_dir} does not exist: set data.official_path")
    files = {lang: data_dir / f"{lang}.json" for lang in LANGUAGES if (data_dir / f"{lang}.json").is_file()}
    missing = [lang for lang in languages if lang not in files]
    if missing:
        raise DataError(f"{data_dir} has no {[m + '.json' for m in missing]}: no data for {missing}")
    raw = {lang: _read_official_file(path) for lang, path in files.items()}
    positive_lang = {t: lang for lang, (pos, _) in raw.items() for t in pos}
    lists = {}
    for lang in languages:
        pos, neg = raw[lang]
        lists[lang] = LabelledList(pos, list(zip(neg, _negative_languages(neg, lang, positive_lang))))
    return TextSets.from_lists(lists)
