"""Positive/negative sets rebuilt from Hugging Face datasets, the way the paper built them (and
load_hub_split, the one loader of a hub split, shared with the translation tasks).

For each target language L: `n_positive` texts in L, and `n_negative_per_language` texts from each
other language (the five other paper languages, and any other target of the run), each sample
split evenly over the sources that have the language (paper: PAWS-X and FLORES-200; PAWS-X has
seven languages, FLORES+ about two hundred, so another language comes from FLORES+ alone).
Negatives are sampled per target (as the original did), so two targets' negative sets may share
texts; TextSets keeps each unique text once.

Seeding: every draw uses `np.random.default_rng([seed, k_L, role, j])` where k_L is L's index in
LANGUAGES (a CRC-32 of the code for other languages), role is 0 for L's positives and 1 + k_M for
the negatives taken from language M, and j is the source index for the per-source draw or
len(sources) for the shuffle that mixes the sources. The same params therefore give the same sets
whatever subset of targets is asked for.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from langneurons.base.languages import LANGUAGES, check_languages
from langneurons.base.params import HubDataParams, HubSource
from langneurons.base.errors import DataError
from langneurons.data.textsets import LabelledList, TextSets

Pools = dict[tuple[int, str], np.ndarray]  # (source index, language) -> unique texts, first-seen order


def _load_pool(src: HubSource, lang: str) -> np.ndarray:
    """Non-empty stripped texts of one dataset config, deduplicated (first occurrence kept)."""
    if lang not in src.configs:
        raise DataError(f"data.hub source {src.id} has no config for '{lang}': add it under its `configs`")
    config = src.configs[lang]
    where = f"dataset {src.id} (config {config}, split {src.split})"
    ds = load_hub_split(
        src.id, config, src.split, fix="fix that source's `configs` or `split` in data.hub",
        offline="use data.source=official with data.official_path pointing at the released sets.",
    )
    if src.text_field not in ds.column_names:
        raise DataError(
            f"{where} has no column '{src.text_field}' (it has {ds.column_names}): "
            "set that source's text_field to one of them"
        )
    column = ds.data.column(src.text_field)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise DataError(f"{where}: column '{src.text_field}' holds {column.type}, not text: fix text_field")
    texts = pc.utf8_trim_whitespace(column.drop_null()).to_pandas()
    return texts[texts != ""].drop_duplicates().to_numpy(dtype=object)


def _split(n: int, parts: int) -> list[int]:
    """n split evenly over `parts`; the first parts take the remainder."""
    return [n // parts + (i < n % parts) for i in range(parts)]


def _key(lang: str) -> int:
    """A language's number in the seeds: its index among the paper's six, else a CRC-32 of its code."""
    return LANGUAGES.index(lang) if lang in LANGUAGES else zlib.crc32(lang.encode())


def negative_languages(languages: list[str]) -> list[str]:
    """Where negatives come from: the paper's six, then any other target of the run."""
    return [*LANGUAGES, *(lang for lang in languages if lang not in LANGUAGES)]


def covered(hub: HubDataParams) -> tuple[str, ...]:
    """Every language some source has a config for."""
    return tuple(dict.fromkeys(lang for src in hub.sources for lang in src.configs))


def _sample(hub: HubDataParams, pools: Pools, lang: str, n: int, seed: list[int]) -> list[str]:
    """n texts of `lang` split over the sources that have it, drawn without replacement, then shuffled together."""
    n_src = len(hub.sources)
    having = [j for j, src in enumerate(hub.sources) if lang in src.configs]
    drawn = []
    for j, k in zip(having, _split(n, len(having))):
        src = hub.sources[j]
        pool = pools[(j, lang)]
        if k > len(pool):
            raise DataError(
                f"dataset {src.id} (config {src.configs[lang]}, split {src.split}) has {len(pool)} unique "
                f"non-empty texts but {k} were requested from it: lower data.hub.n_positive / "
                "data.hub.n_negative_per_language"
            )
        drawn.append(pool[np.random.default_rng(seed + [j]).choice(len(pool), size=k, replace=False)])
    texts = np.concatenate(drawn)
    return texts[np.random.default_rng(seed + [n_src]).permutation(len(texts))].tolist()


def build_hub_sets(hub: HubDataParams, languages: list[str]) -> TextSets:
    """Sample each target's positives and per-language negatives from the hub sources (see module doc)."""
    if not hub.sources:
        raise DataError("data.hub.sources is empty: list at least one dataset (see params/common.yaml)")
    try:
        check_languages(languages, covered(hub), source="data.hub.sources")
    except ValueError as e:
        raise DataError(str(e)) from e
    missing = [lang for lang in negative_languages(languages) if lang not in covered(hub)]
    if missing:
        raise DataError(f"no data.hub source has a config for {missing}, which every target's negatives need: "
                        "add them under a source's `configs`")
    if hub.seed < 0:
        raise DataError(f"data.hub.seed = {hub.seed} must be >= 0 (numpy seeds are non-negative)")
    # a target's negatives come from every other language: all of them are loaded
    others = negative_languages(languages)
    pools: Pools = {(j, lang): _load_pool(src, lang) for j, src in enumerate(hub.sources)
                    for lang in others if lang in src.configs}
    lists = {}
    for lang in languages:
        positives = _sample(hub, pools, lang, hub.n_positive, [hub.seed, _key(lang), 0])
        negatives = [
            (text, other)
            for other in others if other != lang
            for text in _sample(hub, pools, other, hub.n_negative_per_language, [hub.seed, _key(lang), 1 + _key(other)])
        ]
        lists[lang] = LabelledList(positives, negatives)
    return TextSets.from_lists(lists)


def load_hub_split(dataset_id: str, config: str, split: str, fix: str, offline: str) -> Any:
    """datasets.load_dataset(path=dataset_id, name=config, split=split) — the exact online code path.

    `fix` says which params to correct when the config or split is wrong; `offline` what to use
    instead when the hub cannot be reached.
    """
    import datasets  # imported here: loading it is slow and only the hub sources need it

    where = f"dataset {dataset_id} (config {config}, split {split})"
    try:
        return datasets.load_dataset(path=dataset_id, name=config, split=split)
    except ValueError as e:  # unknown config or split: the dataset loaded, the params are wrong
        raise DataError(f"{where} could not be read ({e}): {fix}") from e
    except (OSError, datasets.exceptions.DatasetsError) as e:  # no network, not found, gated, ...
        raise DataError(
            f"{where} could not be loaded ({type(e).__name__}: {e}). The Hugging Face hub may be "
            "unreachable, or the dataset gated (openlanguagedata/flores_plus needs its terms accepted "
            f"on the hub and `huggingface-cli login`). Offline, {offline}"
        ) from e
