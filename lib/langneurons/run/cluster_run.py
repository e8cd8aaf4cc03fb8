"""`make replicate LAUNCHER=slurm SHARDS=K`: the pipeline as Slurm jobs (submitit), followed from here.

What happens, in order:
1. params are checked and the released files fetched here, as a local run does (nodes often have no
   internet); stages whose outputs are cached and current get no job;
2. a small job checks that the run folder, the figures and the user cache are the same on the nodes
   (cluster/shared_fs.py); where they are not, nothing is submitted;
3. the jobs of run/cluster_plan.py are submitted at once, with Slurm dependencies; for a stage made
   of parts only the shards with unfinished parts are submitted (a rerun after a failure or scancel
   submits only what is missing);
4. the jobs are followed (one line per job when its state changes); Ctrl-C stops following and
   leaves them running. `make cluster-status` follows again, `make cluster-cancel` cancels.

Every job uses the same stage cache as a local run, so the outputs are the ones a local run writes
(byte for byte on the same machine: tests/test_slurm.py).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from langneurons.base import paths
from langneurons.base.params import Params, load_params, save_params
from langneurons.base.paths import RunLayout
from langneurons.cluster.shared_fs import check_on_a_node, remove_tokens, write_tokens
from langneurons.cluster.slurm import (DONE, FINISHED_OK, Job, Resources, SlurmError, Submitter, follow, job_states,
                                       load_record, save_record)
from langneurons.run.cache import StageCache, StaleUpstreamError
from langneurons.run.cluster_plan import JobSpec, format_jobs, job_graph
from langneurons.run.stages import IN_PARTS, derived_are_current, runs_with

RECORD_DIR = "cluster"  # runs/<profile>/cluster/: jobs.json and submitit's folders (logs, results)


def record_path(layout_root: Path) -> Path:
    return layout_root / RECORD_DIR / "jobs.json"


def reusable(stage: str, p: Params, layout: RunLayout) -> bool:
    """A stage whose outputs and derived figures are current needs no job (what `make replicate` reuses)."""
    try:
        return StageCache(stage, p, layout, announce=False).hit and derived_are_current(stage, layout.root, layout.figures)
    except StaleUpstreamError:
        return False


def still_running(record: Path) -> list[Job]:
    """Jobs of an earlier submission from this run folder that have not ended."""
    if not record.is_file():
        return []
    try:
        jobs, _ = load_record(record)
    except SlurmError:
        return []
    return [j for j in jobs if any(s.state not in DONE for s in job_states(j))]


def shared_folders(p: Params, layout: RunLayout) -> dict[str, Path]:
    """What the nodes must see as this machine does, by the param (or place) that moves it."""
    folders = {"output_root (the run folder and its stage cache)": layout.root,
               "figures_root (the figures and report)": layout.figures,
               "XDG_CACHE_HOME (the user cache: released files, model copies)": paths.user_cache(),
               "the project folder (its code and notebooks; clone it on a shared filesystem)": paths.PROJECT_ROOT}
    if p.release.cache_dir:
        folders["release.cache_dir"] = paths.resolve(p.release.cache_dir)
    return folders


def sbatch_options(r: Resources) -> list[str]:
    """The options that say where a job may run (partition, account, qos, any additional ones)."""
    out = [f"--{k}={getattr(r, k)}" for k in ("partition", "account", "qos") if getattr(r, k)]
    return out + [f"--{k}={v}" for k, v in r.additional.items()]


def check_shared(folders: dict[str, Path], resources: Resources, timeout_s: float) -> None:
    """Write a token into each folder and have a job on the cluster read them back (cluster/shared_fs.py);
    NotSharedError names the param to change."""
    tokens = write_tokens(folders)
    try:
        check_on_a_node(tokens, sbatch_options(resources), timeout_s)
    finally:
        remove_tokens(tokens)


def plan_jobs(p: Params, layout: RunLayout, stages: tuple[str, ...]) -> tuple[list[JobSpec], object]:
    """The jobs for the stages not reused, and make plan's Plan (None where the model's config is not at hand)."""
    from langneurons.run.plan import PlanError, make_plan
    from langneurons.run.shard_parts import unfinished_shards

    try:
        plan = make_plan(p)
    except PlanError as e:
        print(f"(no plan: {e}; jobs ask for 2 GB and 30 minutes unless launcher.slurm.mem/time say otherwise)")
        plan = None
    unfinished = {s: unfinished_shards(s, p, layout, p.launcher.shards) for s in stages
                  if s in IN_PARTS and p.launcher.shards > 1}
    return job_graph(p, stages, plan, unfinished), plan


def submit(p: Params, profile: str, overrides: list[str], jobs: list[JobSpec], submitter: Submitter,
           all_stages: tuple[str, ...]) -> list[Job]:
    """Submit the planned jobs in order, each waiting (afterok) for the jobs it reads from."""
    from langneurons.run.cluster_jobs import shard_job, stages_job

    ids: dict[str, str] = {}
    out = []
    for spec in jobs:
        after = [ids[a] for a in spec.after]
        if spec.kind == "shards":
            stage = spec.stages[0]
            job = submitter.submit_array(spec.name, shard_job, [(profile, overrides, stage, k, p.launcher.shards)
                                                                for k in spec.tasks], spec.resources, after)
        else:
            stages = all_stages if spec.kind == "report" else spec.stages
            job = submitter.submit(spec.name, stages_job, (profile, overrides, stages, spec.name.replace(" ", "-")),
                                   spec.resources, after)
        ids[spec.name] = job.job_id
        out.append(job)
    return out


def follow_record(record: Path, poll_s: float, out=sys.stdout) -> int:
    """Follow the jobs of a record until they end; 0 when every one completed. Ctrl-C leaves them running."""
    jobs, meta = load_record(record)
    try:
        states = follow(jobs, poll_s=poll_s, out=out)
    except KeyboardInterrupt:
        print(f"\nstopped following; the jobs keep running. Follow again: {meta.get('status', '')}\n"
              f"cancel them: {meta.get('cancel', '')}", file=out, flush=True)
        return 130
    failed = [(j, s) for j in jobs for s in states[j.job_id] if s.state != FINISHED_OK]
    if not failed:
        print(f"all {len(jobs)} jobs completed", file=out, flush=True)
        return 0
    print(f"{len(failed)} job task(s) did not complete: " + ", ".join(f"{j.name} {s.task} {s.state}" for j, s in failed),
          file=out, flush=True)
    print(f"finished parts and stages are kept: run the same command again ({meta.get('command', '')}) "
          "to submit only what is missing", file=out, flush=True)
    return 1


def replicate_on_slurm(profile: str, overrides: list[str], stages: tuple[str, ...]) -> int:
    from langneurons.run.pipeline import fetch_released_files
    from langneurons.run.preflight import check_before_running, drop_stages_with_nothing_to_do

    p = load_params(profile, overrides)
    layout = RunLayout.of(p)
    record = record_path(layout.root)
    running = still_running(record)
    if running:
        raise SlurmError(f"{len(running)} job(s) of an earlier submission from {layout.root} have not ended "
                         f"({', '.join(j.job_id for j in running)}): follow them (make cluster-status PROFILE={profile}) "
                         f"or cancel them (make cluster-cancel PROFILE={profile}) first")
    save_params(p, layout.params_file)
    stages = tuple(s for s in stages if runs_with(s, p))
    stages = fetch_released_files(p, drop_stages_with_nothing_to_do(p, stages))
    job_overrides = list(overrides)
    if p.force:  # FORCE=1: every stage recomputes once; the jobs themselves must not force again
        for stage in stages:
            (layout.root / "stamps" / f"{stage}.json").unlink(missing_ok=True)
            for partial in (layout.root / "partial").glob(f"{stage}-*"):
                shutil.rmtree(partial, ignore_errors=True)
        job_overrides.append("force=false")
    todo = tuple(s for s in stages if not reusable(s, p, layout))
    for stage in stages:
        if stage not in todo:
            print(f"{stage}: reused — outputs and figures current (no job)")
    if todo:
        check_before_running(p, todo)
    jobs, plan = plan_jobs(p, layout, todo)
    if not jobs:
        print("every stage is finished: nothing to submit")
        from langneurons.run.pipeline import run_stages

        run_stages(profile, overrides, stages)  # writes the report, as a local rerun does
        return 0
    print(format_jobs(jobs, plan, p.launcher.shards))
    submitter = Submitter(layout.root / RECORD_DIR)
    if p.launcher.slurm.check_shared:
        check_shared(shared_folders(p, layout), jobs[-1].resources, p.launcher.slurm.check_timeout_s)
        print("shared folders: a job on the cluster sees the run folder, figures, user cache and project as this machine does")
    submitted = submit(p, profile, job_overrides, jobs, submitter, stages)
    set_text = " ".join(o for o in overrides if o != "force=true")  # rerunning it resumes; it does not force again
    save_record(record, submitted, command=f'make replicate PROFILE={profile} SET="{set_text}"',
                meta={"status": f"make cluster-status PROFILE={profile} SET=\"{set_text}\"",
                      "cancel": f"make cluster-cancel PROFILE={profile} SET=\"{set_text}\""})
    print(f"[{time.strftime('%H:%M:%S')}] submitted {len(submitted)} jobs ({record}); following them "
          "(Ctrl-C stops following, the jobs keep running)", flush=True)
    code = follow_record(record, p.launcher.slurm.poll_s)
    if code == 0:
        print(f"report: {layout.figures / 'README.md'}")
    return code
