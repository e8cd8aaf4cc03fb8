"""The jobs of `make replicate LAUNCHER=slurm SHARDS=K`, what each asks Slurm for, and the wall time they take.

The jobs follow the stage registry: a stage waits (afterok) for the jobs of the stages it reads; 01-04
are one job each (02 needs the whole model once); a stage made of parts (05, 06, 07) is an array of
K shard tasks and then one job that runs its notebook on the finished parts; a last job writes the
report. Requests come from `make plan`'s estimates (memory x launcher.slurm.mem_margin, time x
time_margin + 10 minutes, one GPU where the model runs on cuda) unless launcher.slurm.* sets them.

`expected_wall` replays the jobs on N identical nodes, one task per node, each task starting when
its dependencies have ended and a node is free: the wall time a user waits, queueing aside.
"""

from __future__ import annotations

import heapq
import math
import os
from dataclasses import dataclass, field

from langneurons.base.params import Params
from langneurons.cluster.slurm import Resources
from langneurons.run.plan import GIB, Plan, StageCost, fmt_memory, fmt_time
from langneurons.run.stages import BY_NAME, IN_PARTS

JOB_START_SECONDS = 30  # assumed for a real cluster: scheduling, a job's Python start, imports, params and cache
                        # check (measured on the one-host cluster: 10-13 s, BENCHMARKS.md section 9)
ASSEMBLE_SHARE = 0.05  # assumed: a notebook on finished parts spends this share of the stage (scoring, figures)
REPORT_SECONDS = 30  # the report job: every stage reused, the report written


@dataclass(frozen=True)
class JobSpec:
    name: str  # unique within a run, e.g. "02_activations", "05_intervention shards", "report"
    kind: str  # stages (run notebooks) | shards (an array over parts) | report
    stages: tuple[str, ...]  # the stages it runs (shards: the one stage whose parts it makes)
    tasks: tuple[int, ...]  # shards: the shard of each array task; () for a single job
    after: tuple[str, ...]  # names of the jobs it waits for (afterok)
    seconds: float  # planned wall time of one task
    resources: Resources = field(compare=False, default=None)  # type: ignore[assignment]


def resources_for(p: Params, plan: Plan | None, cost: StageCost | None, seconds: float) -> Resources:
    """What one job asks for: launcher.slurm.* where set, else the plan's memory and time with margins."""
    s = p.launcher.slurm
    host = cost.host_bytes if cost is not None else 2 * GIB
    mem = s.mem if s.mem is not None else max(1, math.ceil(host * s.mem_margin / GIB))
    minutes = s.time if s.time is not None else math.ceil(seconds * s.time_margin / 60) + 10
    gpus = s.gpus_per_job if s.gpus_per_job is not None else int(plan is not None and plan.device == "cuda")
    return Resources(time_min=minutes, mem_gb=mem, cpus=s.cpus_per_job or os.cpu_count() or 1, gpus=gpus,
                     partition=s.partition, account=s.account, qos=s.qos, additional=dict(s.additional))


def job_graph(p: Params, stages: tuple[str, ...], plan: Plan | None,
              unfinished: dict[str, list[int] | None] | None = None) -> list[JobSpec]:
    """The jobs for `stages` (those not reused), in submission order. `unfinished`: per stage made of
    parts, the shards still to make (None: all; []: none, only its notebook runs)."""
    shards = p.launcher.shards
    costs = {c.stage: c for c in plan.stages} if plan is not None else {}
    final: dict[str, str] = {}  # stage -> the job whose end means its outputs are there
    jobs: list[JobSpec] = []

    def add(spec: JobSpec, cost: StageCost | None) -> None:
        jobs.append(JobSpec(**{**spec.__dict__, "resources": resources_for(p, plan, cost, spec.seconds)}))

    for stage in stages:
        cost = costs.get(stage)
        planned = cost.seconds if cost is not None else 600.0
        after = tuple(final[u] for u in BY_NAME[stage].upstream if u in final)
        if stage in IN_PARTS and shards > 1:
            todo = (unfinished or {}).get(stage)
            tasks = tuple(range(shards)) if todo is None else tuple(todo)
            notebook_after = after
            if tasks:
                name = f"{stage} shards"
                # a shard makes ceil(parts / K) parts at most: its share of the stage's time
                share = math.ceil(cost.parts / shards) / cost.parts if cost is not None and cost.parts else 1 / shards
                add(JobSpec(name, "shards", (stage,), tasks, after, JOB_START_SECONDS + planned * share), cost)
                notebook_after = (*after, name)
            add(JobSpec(stage, "stages", (stage,), (), notebook_after, JOB_START_SECONDS + ASSEMBLE_SHARE * planned), cost)
        else:
            add(JobSpec(stage, "stages", (stage,), (), after, JOB_START_SECONDS + planned), cost)
        final[stage] = stage
    if jobs:
        add(JobSpec("report", "report", (), (), tuple(final.values()), REPORT_SECONDS), None)
    return jobs


def expected_wall(jobs: list[JobSpec], nodes: int) -> float:
    """Seconds from submission until the last job ends, on `nodes` nodes (one task a node, no queue)."""
    done_at: dict[str, float] = {}
    free = [0.0] * nodes  # when each node is next free
    heapq.heapify(free)
    for job in jobs:  # submission order is a topological order
        ready = max((done_at[a] for a in job.after), default=0.0)
        ends = []
        for _ in (job.tasks or (0,)):
            start = max(ready, heapq.heappop(free))
            ends.append(start + job.seconds)
            heapq.heappush(free, ends[-1])
        done_at[job.name] = max(ends)
    return max(done_at.values(), default=0.0)


def format_jobs(jobs: list[JobSpec], plan: Plan | None, nodes: int) -> str:
    """The jobs as `make plan LAUNCHER=slurm` prints them, with the expected wall time on `nodes` nodes."""
    lines = [f"jobs on Slurm (launcher.shards={max(len(j.tasks) for j in jobs) if jobs else 1}):",
             f"  {'job':<26} {'tasks':>5} {'each':>8}   request (time, memory, CPUs)   after"]
    for j in jobs:
        r = j.resources
        lines.append(f"  {j.name:<26} {len(j.tasks) or 1:>5} {fmt_time(j.seconds):>8}   {r.line():<30} "
                     f"{', '.join(j.after) or '-'}")
    local = plan.total_seconds if plan is not None else None
    lines.append(f"expected wall time on {nodes} node{'s' if nodes > 1 else ''}: {fmt_time(expected_wall(jobs, nodes))}"
                 + (f" (local, one stage after another: {fmt_time(local)})" if local is not None else "")
                 + f"; each job adds ~{JOB_START_SECONDS} s of start-up (assumed), queueing not counted")
    if plan is not None:
        lines.append(f"memory per job from make plan's host peak (largest {fmt_memory(plan.peak_host_bytes)}) x mem_margin")
    return "\n".join(lines)


def main(profile: str, overrides: list[str]) -> int:
    """`make plan LAUNCHER=slurm SHARDS=K`: make plan's page, then the jobs and their wall time on K nodes."""
    from langneurons.base.params import load_params
    from langneurons.run.plan import PlanError, format_plan, make_plan
    from langneurons.run.stages import NAMES, runs_with

    p = load_params(profile, overrides, check_files=False)
    try:
        plan = make_plan(p)
    except PlanError as e:
        print(f"error: {e}")
        return 2
    print(format_plan(plan))
    print("\n" + format_jobs(job_graph(p, tuple(s for s in NAMES if runs_with(s, p)), plan), plan, p.launcher.shards))
    return 0
