"""Positive/negative sets rebuilt from Hugging Face datasets, the way the paper built them.

For each target language L: `n_positive` texts in L, and `n_negative_per_language` texts from each
of the five other paper languages, each sample split evenly over the sources (paper: PAWS-X and
FLORES-200). Negatives are sampled per target (as the original did), so two targets' negative sets
may share texts; TextSets keeps each unique text once.

Seeding: every draw uses `np.random.default_rng([seed, i_L, role, j])` where i_L is L's index in
LANGUAGES, role is 0 for L's positives and 1 + i_M for the negatives taken from language M, and j is
the source index for the per-source draw or len(sources) for the shuffle that mixes the sources.
The same params therefore give the same sets whatever subset of targets is asked for.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .languages import LANGUAGES, check_languages
from ..run.params import HubDataParams, HubSource
from .hub_load import load_hub_split
from .textsets import DataError, LabelledList, TextSets

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


def _sample(hub: HubDataParams, pools: Pools, lang: str, n: int, seed: list[int]) -> list[str]:
    """n texts of `lang` split over the sources, drawn without replacement, then shuffled together."""
    n_src = len(hub.sources)
    drawn = []
    for j, (src, k) in enumerate(zip(hub.sources, _split(n, n_src))):
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
    try:
        check_languages(languages)
    except ValueError as e:
        raise DataError(str(e)) from e
    if not hub.sources:
        raise DataError("data.hub.sources is empty: list at least one dataset (see params/common.yaml)")
    if hub.seed < 0:
        raise DataError(f"data.hub.seed = {hub.seed} must be >= 0 (numpy seeds are non-negative)")
    # every paper language is needed: a target's negatives come from all five others
    pools: Pools = {(j, lang): _load_pool(src, lang) for j, src in enumerate(hub.sources) for lang in LANGUAGES}
    lists = {}
    for lang in languages:
        i = LANGUAGES.index(lang)
        positives = _sample(hub, pools, lang, hub.n_positive, [hub.seed, i, 0])
        negatives = [
            (text, other)
            for m, other in enumerate(LANGUAGES) if other != lang
            for text in _sample(hub, pools, other, hub.n_negative_per_language, [hub.seed, i, 1 + m])
        ]
        lists[lang] = LabelledList(positives, negatives)
    return TextSets.from_lists(lists)
