"""The stages whose work is many independent parts (stages.IN_PARTS), and how a cluster job makes its share.

Notebooks 05, 06 and 07 spend nearly all their time in parts that do not depend on each other:
05's conditions, 06's (task, language, condition) and 07's forcing conditions and deactivated
languages (base/parts.py). Each part is saved in the stage's partial folder (keyed like the stage's
cache) the moment it finishes. Under `LAUNCHER=slurm SHARDS=K`, K array tasks make the parts side by
side — part i belongs to shard i mod K — and then the stage's notebook runs once, finds every part
finished and only assembles them: its outputs, figures and report are those of a local run.

The lists of parts are built here from the same library calls the notebooks make, in the same order;
base/parts.py refuses a parts folder made from a different list.
"""

from __future__ import annotations

from functools import cache

from langneurons.base.batch_halving import BatchSize
from langneurons.base.parts import Part, missing_parts
from langneurons.base.params import Params
from langneurons.base.paths import RunLayout
from langneurons.run.stages import IN_PARTS


def stage_parts(stage: str, p: Params, layout: RunLayout) -> list[Part]:
    """The stage's parts, in the order its notebook makes them; the model loads when a part is made."""
    from langneurons.model.loading import load_model
    from langneurons.scoring.selection import read_scores

    if stage not in IN_PARTS:
        raise ValueError(f"{stage} is not made of parts: those are {', '.join(IN_PARTS)}")
    load = cache(lambda: load_model(p.model))
    if stage == "05_intervention":
        from langneurons.control.forcing_runs import condition_parts, experiment_conditions
        from langneurons.data.language_id import identifiable

        scores = read_scores(layout, p.languages)
        measured, _ = identifiable(p.languages)
        if not measured:
            return []
        conditions = experiment_conditions(p, measured, len(next(iter(scores.values()))))
        batch = BatchSize("generation.batch_size", p.generation.batch_size, p.halve_batch_on_oom)
        return condition_parts(load, conditions, scores, p.generation, p.intervention.value, batch, p.fluency)
    if stage == "06_translation":
        from langneurons.control.translation_eval import load_pairs, translation_parts

        pairs = load_pairs(p)
        scores = read_scores(layout, sorted({lang for _, lang in pairs}))
        batch = BatchSize("translation.batch_size", p.translation.batch_size, p.halve_batch_on_oom)
        return translation_parts(load, pairs, scores, p.scoring.n_per_side, p.intervention.value,
                                 p.translation.max_new_tokens, batch, p.translation.stop_at_answer_line)
    from langneurons.comparison import ap_vs_lape

    return ap_vs_lape.work(p, layout, load).parts


def shard_of(index: int, shards: int) -> int:
    return index % shards


def shard_indices(n_parts: int, shard: int, shards: int) -> list[int]:
    """The parts shard `shard` of `shards` makes: every shards-th, so that costly neighbours spread out."""
    return [i for i in range(n_parts) if shard_of(i, shards) == shard]


def unfinished_shards(stage: str, p: Params, layout: RunLayout, shards: int) -> list[int] | None:
    """The shards that still have parts to make; None when it cannot be known yet (an upstream stage
    has not finished, so the stage's key, and with it its parts folder, is not known)."""
    from langneurons.run.cache import StageCache, StaleUpstreamError

    try:
        work_dir = StageCache(stage, p, layout, announce=False).work_dir
        n_parts = len(stage_parts(stage, p, layout))
    except (StaleUpstreamError, OSError):
        return None
    missing = set(missing_parts(work_dir, range(n_parts)))
    return [k for k in range(shards) if any(i in missing for i in shard_indices(n_parts, k, shards))]
