"""`make data`: the released files a profile needs, fetched into the user cache and used from there.

conftest's session fixture points LANGNEURONS_RELEASE_URL at a local mirror of ../shared laid out
like the original repository, and XDG_CACHE_HOME at a temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import SHARED_OFFICIAL
from langneurons.run.cache import data_fingerprint
from langneurons.data.sources import build_text_sets
from langneurons.base.params import load_params
from langneurons.data.release_files import COMMIT, load_manifest, sense_file, translation_file
from langneurons.data.profile_data import main, needed_files, translation_dir
from langneurons.data.textsets import load_official
from langneurons.control.translation_eval import load_pairs

needs_shared = pytest.mark.skipif(not SHARED_OFFICIAL.is_dir(), reason="released files not found beside the project")


def test_what_a_profile_needs(official_dir: Path):
    paper = needed_files(load_params("xglm-564M", check_files=False))
    assert paper["sentence sets"] == [sense_file(lang) for lang in ("en", "de", "fr", "es", "zh", "ja")]
    assert len(paper["translation pairs"]) == 12 and translation_file("wmt", "zh") in paper["translation pairs"]
    some = needed_files(load_params("xglm-564M", ["languages=de,ja"], check_files=False))
    assert some["translation pairs"] == [translation_file(t, lang) for t, lang in
                                         [("flores200", "de"), ("flores200", "ja"), ("iwslt2017", "de"),
                                          ("iwslt2017", "ja"), ("wmt", "de")]]
    tiny = needed_files(load_params("tiny", check_files=False))  # bundled texts: only the translation pairs
    assert list(tiny) == ["translation pairs"]
    own = load_params("xglm-564M", [f"data.official_path={official_dir}", "translation.tasks={}"], check_files=False)
    assert needed_files(own) == {}
    # the cache key of released files is their manifest checksum: known before anything is fetched
    key = data_fingerprint(load_params("xglm-564M", check_files=False), "01_data_prep")
    assert key["release"] == COMMIT and key[sense_file("de")] == load_manifest()[sense_file("de")].sha256


@needs_shared
def test_make_data_fetches_and_the_pipeline_reads_the_cache(capsys):
    assert main(["--profile", "xglm-564M"]) == 0
    out = capsys.readouterr().out
    assert "18 released files the profile xglm-564M needs are in place and verified" in out
    cache = Path(os.environ["XDG_CACHE_HOME"]) / "langneurons" / "release" / COMMIT
    assert (cache / "assets" / "Language" / "sense" / "ja.json").is_file()
    assert main(["--profile", "xglm-564M"]) == 0 and "already cached (verified)" in capsys.readouterr().out
    p = load_params("xglm-564M")
    sets = build_text_sets(p)  # data.official_path is null: the verified released sets
    expected = load_official(SHARED_OFFICIAL / "sense", p.languages)
    assert sets.texts.equals(expected.texts) and sets.sets.equals(expected.sets) and len(sets.texts) == 5873
    assert translation_dir(p) == cache / "assets_translation"
    pairs = load_pairs(p)
    assert len(pairs) == 12 and all(len(t) == 100 for t in pairs.values())


def test_make_data_offline_is_one_line(tmp_path: Path, capsys):
    assert main(["--profile", "xglm-564M", "--set", f"release.url={tmp_path / 'no-mirror'} "
                 f"release.cache_dir={tmp_path / 'cache'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "make data" in err and "LANGNEURONS_RELEASE_URL" in err
    assert main(["--profile", "tiny", "--set", "translation.tasks={}"]) == 0  # needs nothing
    assert "reads no released files" in capsys.readouterr().out
