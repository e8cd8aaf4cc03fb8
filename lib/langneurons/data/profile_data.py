"""The released files a profile needs, fetched on first need: `make data`.

The paper's sentence sets and translation pairs are the original code's files (release.py fetches
and verifies them). A profile reads them from the user cache unless it points `data.official_path`
or `translation.official_path` at a folder of its own. This module says which files a profile
needs, where they lie, and fetches them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from langneurons.base import paths
from langneurons.base.languages import LANGUAGES
from langneurons.base.params import Params, ParamsError, load_params
from langneurons.data.release_files import COMMIT, Release, ReleaseError, load_manifest, sense_file, translation_file


# What a stage may read from outside the run (run/stages.py: StageDef.reads)
SENTENCE_SETS = "sentence sets"  # the positive/negative text sets (data.source)
TRANSLATION_PAIRS = "translation pairs"  # the translation tasks' pairs (translation.source)
LAPE_CORPUS = "LAPE's corpus"  # selection.lape.source=files: the folder LAPE counts on
HELDOUT_TEXTS = "held-out texts"  # texts never used for selection (comparison.heldout_path, else the data source's)


def release_for(p: Params, progress: bool = True) -> Release:
    """The release as the params say: url (or $LANGNEURONS_RELEASE_URL, or GitHub) and cache folder."""
    return Release(url=p.release.url, cache_dir=p.release.cache_dir, progress=progress)


def uses_released_sets(p: Params) -> bool:
    return p.data.source == "official" and p.data.official_path is None


def uses_released_pairs(p: Params) -> bool:
    return p.translation.source == "official" and p.translation.official_path is None and bool(translation_pairs(p))


def translation_pairs(p: Params) -> list[tuple[str, str]]:
    """(task, language) of every translation run: the profile's tasks, limited to its languages."""
    return [(task, lang) for task, langs in p.translation.tasks.items() for lang in langs if lang in p.languages]


def sense_files() -> list[str]:
    """All six sets: a set's negatives are labelled by the other languages' positives (textsets.py)."""
    return [sense_file(lang) for lang in LANGUAGES]


def needed_files(p: Params) -> dict[str, list[str]]:
    """Release paths the profile reads, by what they are for (empty when it uses its own folders)."""
    needed = {}
    if uses_released_sets(p):
        needed[SENTENCE_SETS] = sense_files()
    if uses_released_pairs(p):
        needed[TRANSLATION_PAIRS] = [translation_file(task, lang) for task, lang in translation_pairs(p)]
    return needed


def sense_dir(p: Params) -> Path:
    """The folder of <lang>.json sets: the profile's own, or the released ones (fetched if needed)."""
    if p.data.official_path is not None:
        return paths.resolve(p.data.official_path)
    release = release_for(p)
    return release.fetch_all(sense_files())[0].parent


def translation_dir(p: Params) -> Path:
    """The folder of translation_text_<task>_en_<lang>.pkl: the profile's own, or the released ones (fetched)."""
    if p.translation.official_path is not None:
        return paths.resolve(p.translation.official_path)
    files = [translation_file(task, lang) for task, lang in translation_pairs(p)]
    if not files:
        raise ParamsError("translation.tasks lists no task for the run's languages: there are no pairs to read")
    return release_for(p).fetch_all(files)[0].parent


def release_fingerprint(files: list[str]) -> dict[str, str]:
    """What a stage's cache key records for released files: their manifest checksums (no need to read them)."""
    manifest = load_manifest()
    return {"release": COMMIT, **{rel: manifest[rel].sha256 for rel in files}}


def fetch_profile_data(p: Params) -> int:
    """Fetch (or verify in the cache) every released file the profile needs; returns how many."""
    needed = needed_files(p)
    if not needed:
        print(f"profile {p.profile} reads no released files (data.source={p.data.source}, "
              f"translation.source={p.translation.source} with its own folders or no tasks)")
        return 0
    release = release_for(p)
    for what, files in needed.items():
        print(f"{what}: {len(files)} files -> {release.local_path(files[0]).parent}", flush=True)
        release.fetch_all(files)
    return sum(len(f) for f in needed.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="tiny", help="a file in params/profiles/ (without .yaml)")
    parser.add_argument("--set", default="", help='overrides, e.g. "languages=de,ja release.url=/mirror"')
    args = parser.parse_args(argv)
    try:
        n = fetch_profile_data(load_params(args.profile, args.set.split()))
    except (ParamsError, ReleaseError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if n:
        print(f"all {n} released files the profile {args.profile} needs are in place and verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
