"""The `official` loader: exact released sets (order, duplicates), unique texts stored once, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from langneurons.base.languages import LANGUAGES
from langneurons.base.errors import DataError
from langneurons.data.textsets import LabelledList, TextSets, load_official


def test_released_sets_reproduced_exactly(shared_sense: Path, tmp_path: Path):
    sets = load_official(shared_sense, list(LANGUAGES))
    assert len(sets.sets) == 18_000 and len(sets.texts) == 5_873
    texts = sets.texts.set_index("text_id")["text"]
    for lang in LANGUAGES:
        raw = json.loads((shared_sense / f"{lang}.json").read_text(encoding="utf-8"))["sentences"]
        rows = sets.labelled(lang)
        assert texts[rows.text_id].tolist() == raw["positive"] + raw["negative"]  # order and duplicates kept
        assert rows.label.tolist() == [1] * 500 + [0] * 2500
        # every negative block of 500 is one other language, never the target
        neg_langs = sets.texts.set_index("text_id").loc[rows.text_id[500:], "lang"].tolist()
        blocks = [set(neg_langs[i:i + 500]) for i in range(0, 2500, 500)]
        assert all(len(b) == 1 for b in blocks) and {b.pop() for b in blocks} == set(LANGUAGES) - {lang}
    sets.save(tmp_path)
    again = TextSets.load(tmp_path)
    assert again.texts.equals(sets.texts) and again.sets.equals(sets.sets)


def test_made_up_official_dir(official_dir: Path):
    sets = load_official(official_dir, ["de", "ja"])
    assert sets.targets == ["de", "ja"]
    summary = sets.summary()
    assert summary.loc["de", "positives"] == 4 and summary.loc["de", "negatives"] == 15
    # de's Japanese negatives are ja's positives: stored once, with language ja
    assert sets.texts.text.is_unique
    ja_pos = set(sets.labelled("ja").query("label == 1").text_id)
    de_neg = set(sets.labelled("de").query("label == 0").text_id)
    assert ja_pos & de_neg
    assert set(sets.texts.set_index("text_id").loc[sorted(ja_pos), "lang"]) == {"ja"}


def test_from_lists_keeps_duplicates_in_sets_but_stores_texts_once():
    sets = TextSets.from_lists({
        "en": LabelledList(["a", "b", "a"], [("x", "de"), ("y", "fr")]),
        "de": LabelledList(["x"], [("a", "en"), ("y", "fr")]),
    })
    assert sets.texts.text.tolist() == ["a", "b", "x", "y"]
    assert sets.texts.lang.tolist() == ["en", "en", "de", "fr"]
    assert sets.labelled("en").text_id.tolist() == [0, 1, 0, 2, 3]
    assert sets.positive_share("en") == pytest.approx(0.6)


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"concept": "de", "sentences": {"positive": ["a"]}}', "schema"),
    ('{"sentences": {"positive": ["a", "  "], "negative": ["b"]}}', "empty"),
    ('{"sentences": {"positive": [], "negative": ["b"]}}', "no positive"),
])
def test_bad_files_are_clear_errors(official_dir: Path, content: str, message: str):
    (official_dir / "de.json").write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_official(official_dir, ["de"])


def test_missing_language_file(official_dir: Path):
    (official_dir / "ja.json").unlink()
    with pytest.raises(DataError, match="ja.json"):
        load_official(official_dir, ["ja"])
