"""`make replicate-paper LAUNCHER=slurm`: one Slurm job per profile, submitted at once, then paper_figures/all/.

Each profile's job runs the whole profile as `make replicate` does on one node (cached and resumable:
a finished profile costs seconds). A last job waits for all of them (afterany: a failed profile is
reported and the others still count) and draws paper_figures/all/ from whatever finished. A profile
whose params do not load fails here, before anything is submitted for it, and is reported the same way.
"""

from __future__ import annotations

import time
from pathlib import Path

from langneurons.base import paths
from langneurons.base.params import Params, ParamsError, load_params, profile_name
from langneurons.base.paths import RunLayout
from langneurons.cluster.slurm import SlurmError, Submitter, result, save_record
from langneurons.run.cluster_plan import resources_for
from langneurons.run.cluster_run import check_shared, follow_record, shared_folders, still_running

RECORD_DIR = "replicate-paper"


def paper_record_path(p: Params) -> Path:
    return paths.resolve(p.output_root) / RECORD_DIR / "cluster" / "jobs.json"


def _profile_resources(p: Params):
    """A whole profile as one job: make plan's peak memory and total time, with the margins."""
    from langneurons.run.plan import PlanError, make_plan

    try:
        plan = make_plan(p)
    except PlanError:
        return resources_for(p, None, None, 3600)
    peak = max(plan.stages, key=lambda c: c.host_bytes)
    return resources_for(p, plan, peak, plan.total_seconds)


def replicate_paper_on_slurm(profiles: list[str], overrides: list[str], stages: tuple[str, ...]) -> int:
    from langneurons.run.cluster_jobs import draw_all_job, profile_job

    base = load_params("tiny", overrides, check_files=False)
    record = paper_record_path(base)
    running = still_running(record)
    if running:
        raise SlurmError(f"jobs of an earlier replicate-paper submission have not ended ({', '.join(j.job_id for j in running)}): "
                          "make cluster-status PAPER=1, or make cluster-cancel PAPER=1")
    submitter = Submitter(record.parent)
    loaded, refused = {}, {}
    for profile in profiles:
        try:
            loaded[profile] = load_params(profile, overrides)
        except ParamsError as e:
            refused[profile] = f"failed: ParamsError: {str(e).splitlines()[0]}"[:300]
            print(f"{profile_name(profile)}: not submitted ({refused[profile]})")
    small = resources_for(base, None, None, 600)
    if base.launcher.slurm.check_shared:
        folders = shared_folders(base, RunLayout.of(base))
        for p in loaded.values():
            folders[f"output_root of {p.profile}"] = p.run_dir.parent
        check_shared(folders, small, base.launcher.slurm.check_timeout_s)
        print("shared folders: a job on the cluster sees the run folders, figures, user cache and project as this machine does")
    jobs = [submitter.submit(f"profile {p.profile}", profile_job, (profile, overrides, stages), _profile_resources(p))
            for profile, p in loaded.items()]
    meta = {"status": f'make cluster-status PAPER=1 SET="{" ".join(overrides)}"',
            "cancel": f'make cluster-cancel PAPER=1 SET="{" ".join(overrides)}"', "refused": refused}
    command = f'make replicate-paper PROFILES="{" ".join(profiles)}" SET="{" ".join(overrides)}"'
    save_record(record, jobs, command, meta)  # the drawing job reads the profile jobs' ids from here
    jobs.append(submitter.submit("all profiles", draw_all_job, (profiles, overrides, str(record)), small,
                                 after_any=[j.job_id for j in jobs]))
    save_record(record, jobs, command, meta)
    print(f"[{time.strftime('%H:%M:%S')}] submitted {len(jobs)} jobs ({record}); following them "
          "(Ctrl-C stops following, the jobs keep running)", flush=True)
    code = follow_record(record, base.launcher.slurm.poll_s)
    if code == 130:
        return code
    outcomes = result(jobs[-1], jobs[-1].job_id) or {}
    print("\nprofile          outcome")
    for profile in profiles:
        name = profile_name(profile)
        print(f"{name:<16} {outcomes.get(name, 'unknown: the drawing job did not finish (see its log)')}")
    ok = [n for n, o in outcomes.items() if not o.startswith("failed")]
    print(f"{len(ok)} of {len(profiles)} profiles succeeded")
    return 0 if code == 0 and len(ok) == len(profiles) else 1
