"""What each cluster job runs on its node (submitit pickles a call of one of these functions).

Every job loads the params from the profile and overrides as `make replicate` would, on a node that
sees the same run folder, so its stage cache, partial folders and stamps are the ones a local run
uses. A job writes a one-line log of where and how long it ran (runs/<profile>/logs/cluster/).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from langneurons.base import paths
from langneurons.base.atomic import write_json
from langneurons.base.params import load_params, profile_name
from langneurons.cluster.slurm import Job, job_states, load_record, log_paths, result
from langneurons.base.paths import RunLayout


def node_name() -> str:
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()


def _log(layout: RunLayout, name: str, started: float, **facts: object) -> dict:
    record = {"job": name, "node": node_name(), "slurm_job": os.environ.get("SLURM_JOB_ID", ""),
              "array_task": os.environ.get("SLURM_ARRAY_TASK_ID", ""), "wall_s": round(time.time() - started, 2),
              "finished": time.strftime("%Y-%m-%d %H:%M:%S"), **facts}
    write_json(layout.root / "logs" / "cluster" / f"{name}.json", record)
    return record


def stages_job(profile: str, overrides: list[str], stages: tuple[str, ...], name: str) -> dict:
    """Run these stages as `make replicate` does (a notebook each, reused when cached); with every stage
    of the pipeline and all of them finished, this only writes the report."""
    from langneurons.run.pipeline import run_stages

    started = time.time()
    layout = run_stages(profile, overrides, stages)
    return _log(layout, name, started, stages=list(stages))


def shard_job(profile: str, overrides: list[str], stage: str, shard: int, shards: int) -> dict:
    """Make shard `shard` of `shards` of the stage's parts into its partial folder (nothing else)."""
    from langneurons.base.parts import run_parts
    from langneurons.run.cache import StageCache
    from langneurons.run.shard_parts import shard_indices, stage_parts

    started = time.time()
    p = load_params(profile, overrides)
    layout = RunLayout.of(p)
    cache = StageCache(stage, p, layout, announce=False)
    name = f"{stage}-shard{shard}"
    if cache.hit:
        return _log(layout, name, started, stage=stage, parts=[], made=0, note="stage already finished")
    parts = stage_parts(stage, p, layout)
    mine = shard_indices(len(parts), shard, shards)
    before = {i for i in mine if (cache.work_dir / f"{i:04d}.parquet").is_file()}
    print(f"{stage} shard {shard}/{shards} on {node_name()}: parts {mine} ({len(before)} already finished)", flush=True)
    run_parts(parts, cache.work_dir, mine, crash_as=f"shard-{stage}")
    return _log(layout, name, started, stage=stage, parts=mine, made=len(set(mine) - before))


def profile_job(profile: str, overrides: list[str], stages: tuple[str, ...]) -> object:
    """`make replicate-paper`'s one profile, as one job; a failure becomes a result (replicate_paper.run_profile)."""
    from langneurons.run.replicate_paper import run_profile

    return run_profile(profile, overrides, stages)


def draw_all_job(profiles: list[str], overrides: list[str], record: str) -> dict[str, str]:
    """After every profile job has ended (afterany): paper_figures/all/ from whatever finished, each
    profile's outcome read from its job (a job that died without a result counts as failed)."""
    return draw_all(profiles, overrides, Path(record))


def outcome_of(job: Job) -> str:
    """A profile job's outcome as the local summary writes it: done | reused | failed: <one line>."""
    value = result(job, job.job_id)  # replicate_paper.ProfileResult, where the job returned
    if value is not None:
        return value.outcome + (f"; log {log_paths(job, job.job_id)[0]}" if value.status == "failed" else "")
    state = job_states(job)[0].state
    return f"failed: job {job.job_id} ended {state}; log {log_paths(job, job.job_id)[1]}"


def draw_all(profiles: list[str], overrides: list[str], record: Path) -> dict[str, str]:
    """On the cluster, after every profile job: each profile's outcome, then paper_figures/all/."""
    from langneurons.run.all_profiles import write_all

    jobs, meta = load_record(record)
    by_profile = {j.name: j for j in jobs}
    outcomes = {profile_name(pr): meta["refused"][pr] if pr in meta.get("refused", {})
                else outcome_of(by_profile[f"profile {profile_name(pr)}"]) for pr in profiles}
    figures_root = paths.resolve(load_params("tiny", overrides, check_files=False).figures_root)
    print(f"multi-model figures: {write_all(profiles, overrides, figures_root, outcomes)}")
    return outcomes
