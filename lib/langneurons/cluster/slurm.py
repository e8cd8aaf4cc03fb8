"""Jobs on a Slurm cluster through submitit: submit with dependencies, read their states, follow, cancel.

submitit (the Python way to submit to Slurm) writes each job's sbatch script, pickles the call,
runs it on a node with this Python and brings back its result, log and traceback. What it does not
do, and this module adds:
- one record per run of the jobs it submitted (jobs.json beside the run), so that the states can be
  followed again from another terminal and the jobs cancelled (`make cluster-status`, `cluster-cancel`);
- job states that work on every cluster: `scontrol show job` while Slurm remembers the job, then
  `sacct` (accounting), then the result file submitit wrote. A cluster without accounting (the
  one-host cluster of the tests) gives submitit's own `job.state` UNKNOWN, so it is not used;
- a follower that prints one line per job when its state changes and the log tail of a job that
  failed. Ctrl-C stops following; the jobs keep running.
"""

from __future__ import annotations

from langneurons.cluster.errors import ClusterError

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from langneurons.base.atomic import write_json

FINISHED_OK = "COMPLETED"
FAILED = ("FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
          "NEVER_RUNS")  # NEVER_RUNS: pending on a dependency that failed
DONE = (FINISHED_OK, *FAILED)
RECORD = "jobs.json"
# A job's math libraries use the CPUs it was given, not every core of the node: several jobs on one node
# each spinning one thread per core slow each other down many times over (measured: 3 tasks of 2 threads
# on 2 cores took 8x the time of one). The pinned kernels give the same bits for any thread count
# (base/kernel_pins.py).
THREADS = [f"export {v}=${{SLURM_CPUS_PER_TASK:-1}}" for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")]


class SlurmError(ClusterError):
    """Slurm refused or could not be reached; the message names the command and what it said."""


@dataclass(frozen=True)
class Resources:
    """What one job asks Slurm for (sbatch's --time, --mem, --cpus-per-task, --gpus-per-node, ...)."""

    time_min: int
    mem_gb: int
    cpus: int
    gpus: int = 0
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    additional: dict[str, Any] = field(default_factory=dict)

    def submitit(self) -> dict[str, Any]:
        """As submitit's AutoExecutor parameters."""
        out: dict[str, Any] = {"timeout_min": self.time_min, "mem_gb": self.mem_gb, "cpus_per_task": self.cpus}
        if self.gpus:
            out["gpus_per_node"] = self.gpus
        for key in ("partition", "account", "qos"):
            if getattr(self, key):
                out[f"slurm_{key}"] = getattr(self, key)
        return out

    def line(self) -> str:
        parts = [f"{self.time_min} min", f"{self.mem_gb} GB", f"{self.cpus} CPU"]
        parts += [f"{self.gpus} GPU"] if self.gpus else []
        parts += [f"{k}={getattr(self, k)}" for k in ("partition", "account", "qos") if getattr(self, k)]
        return ", ".join(parts)


@dataclass(frozen=True)
class Job:
    """One submitted job (or job array) as the run's record keeps it."""

    name: str  # e.g. "05_intervention shards" or "02_activations"
    job_id: str  # Slurm's id; an array's own id
    tasks: tuple[str, ...]  # submitit's id of each task: (job_id,) for a single job, <id>_<k> for array tasks
    folder: str  # submitit's folder pattern (<record folder>/%j): logs and results
    after: tuple[str, ...] = ()  # job ids it waits for


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except FileNotFoundError as e:
        raise SlurmError(f"{cmd[0]} not found: LAUNCHER=slurm needs Slurm's client commands on this machine "
                         "(a cluster's login node has them)") from e


class Submitter:
    """Submits calls of Python functions as Slurm jobs (submitit), each with resources and dependencies."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.jobs: list[Job] = []

    def _executor(self, name: str, resources: Resources, after_ok: Sequence[str], after_any: Sequence[str]):
        import submitit

        executor = submitit.AutoExecutor(folder=self.folder / "%j", cluster="slurm")
        extra = dict(resources.additional)
        deps = [f"afterok:{':'.join(after_ok)}"] if after_ok else []
        deps += [f"afterany:{':'.join(after_any)}"] if after_any else []
        if deps:
            extra["dependency"] = ",".join(deps)
            extra.setdefault("kill-on-invalid-dep", "yes")  # a job whose dependency failed is cancelled, not left pending
        executor.update_parameters(name=f"ln-{name.replace(' ', '-')}", slurm_additional_parameters=extra,
                                   slurm_setup=THREADS, **resources.submitit())
        return executor

    def submit(self, name: str, fn: Callable, args: tuple, resources: Resources, after_ok: Sequence[str] = (),
               after_any: Sequence[str] = ()) -> Job:
        job = self._wrap(lambda: self._executor(name, resources, after_ok, after_any).submit(fn, *args))
        record = Job(name, str(job.job_id), (str(job.job_id),), str(self.folder / "%j"), (*after_ok, *after_any))
        self.jobs.append(record)
        return record

    def submit_array(self, name: str, fn: Callable, arg_lists: list[tuple], resources: Resources,
                     after_ok: Sequence[str] = ()) -> Job:
        """One array task per argument tuple (task t gets arg_lists[t])."""
        columns = list(zip(*arg_lists))
        jobs = self._wrap(lambda: self._executor(name, resources, after_ok, ()).map_array(fn, *columns))
        array_id = str(jobs[0].job_id).split("_")[0]
        record = Job(name, array_id, tuple(str(j.job_id) for j in jobs), str(self.folder / "%j"), tuple(after_ok))
        self.jobs.append(record)
        return record

    @staticmethod
    def _wrap(submit: Callable):
        import submitit

        try:
            return submit()
        except (subprocess.CalledProcessError, submitit.core.utils.FailedJobError, OSError) as e:
            detail = getattr(e, "stderr", None) or getattr(e, "output", None) or str(e)
            detail = detail.decode() if isinstance(detail, bytes) else str(detail)
            raise SlurmError(f"sbatch refused the job: {detail.strip().splitlines()[-1] if detail.strip() else e} "
                             "(check launcher.slurm.partition, account, qos, time and mem)") from e


# ------------------------------------------------------------------------------------- the record


def save_record(path: Path, jobs: list[Job], command: str, meta: dict[str, Any] | None = None) -> None:
    write_json(path, {"submitted": time.strftime("%Y-%m-%d %H:%M:%S"), "command": command, **(meta or {}),
                      "jobs": [asdict(j) for j in jobs]})


def load_record(path: Path) -> tuple[list[Job], dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SlurmError(f"no record of cluster jobs at {path}: nothing was submitted from this run folder") from e
    jobs = [Job(j["name"], j["job_id"], tuple(j["tasks"]), j["folder"], tuple(j.get("after", ()))) for j in data["jobs"]]
    return jobs, data


# ------------------------------------------------------------------------------------------ states


@dataclass(frozen=True)
class TaskState:
    task: str  # <job> or <array>_<task>
    state: str  # Slurm's JobState (PENDING, RUNNING, COMPLETED, FAILED, ...), NEVER_RUNS, or UNKNOWN
    node: str = ""


def _scontrol_states(job_id: str) -> dict[str, TaskState] | None:
    """Every task of a job as scontrol sees it; None when Slurm no longer remembers the job."""
    out = _run(["scontrol", "show", "job", "-o", job_id])
    if out.returncode != 0:
        return None
    states = {}
    for line in out.stdout.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "JobState" not in fields:
            continue
        state = fields["JobState"]
        if state == "PENDING" and fields.get("Reason") == "DependencyNeverSatisfied":
            state = "NEVER_RUNS"
        node = fields.get("NodeList", "") if fields.get("NodeList") != "(null)" else ""
        task = fields.get("ArrayTaskId")
        if task is None:
            states[job_id] = TaskState(job_id, state, node)
        else:  # a pending array shows its waiting tasks as one range: 0-2 or 1,3 or 0-5%2
            for t in _expand(task.split("%")[0]):
                states[f"{fields['ArrayJobId']}_{t}"] = TaskState(f"{fields['ArrayJobId']}_{t}", state, node)
    return states


def _expand(spec: str) -> list[int]:
    out = []
    for piece in spec.split(","):
        lo, _, hi = piece.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def _sacct_state(task: str) -> str | None:
    out = _run(["sacct", "-n", "-P", "-X", "-j", task, "-o", "State"])
    lines = [ln.split()[0] for ln in out.stdout.splitlines() if ln.strip()] if out.returncode == 0 else []
    return lines[0] if lines else None


def _result_state(folder: str, task: str) -> str:
    """From the file submitit writes when the call returns: COMPLETED, FAILED (it raised) or UNKNOWN."""
    import submitit

    job = submitit.SlurmJob(folder=Path(folder), job_id=task)
    path = job.paths.result_pickle
    if not path.exists():
        return "UNKNOWN"
    try:
        outcome, _ = submitit.core.utils.pickle_load(path)
    except Exception:  # noqa: BLE001 (a result file being written)
        return "UNKNOWN"
    return FINISHED_OK if outcome == "success" else "FAILED"


def job_states(job: Job) -> list[TaskState]:
    """The state of every task of a job: scontrol, else sacct, else submitit's result file."""
    known = _scontrol_states(job.job_id) or {}
    out = []
    for task in job.tasks:
        # a one-task array is <id>_0 while it waits and runs, and <id> once it has ended (and to submitit)
        same = [task, f"{task}_0", task.removesuffix("_0")]
        seen = next((known[t] for t in same if t in known), None)
        if seen is not None:
            out.append(TaskState(task, seen.state, seen.node))
            continue
        state = _sacct_state(task) or _result_state(job.folder, task)
        out.append(TaskState(task, state))
    return out


def result(job: Job, task: str) -> Any:
    """What the job's function returned (None when it has not, e.g. it failed or was killed)."""
    import submitit

    path = submitit.SlurmJob(folder=Path(job.folder), job_id=task).paths.result_pickle
    try:
        outcome, value = submitit.core.utils.pickle_load(path)
    except Exception:  # noqa: BLE001
        return None
    return value if outcome == "success" else None


def log_paths(job: Job, task: str) -> tuple[Path, Path]:
    import submitit

    paths = submitit.SlurmJob(folder=Path(job.folder), job_id=task).paths
    return paths.stdout, paths.stderr


def log_tail(job: Job, task: str, lines: int = 15) -> str:
    """The last lines of a task's stderr (submitit puts the traceback there), else of its stdout."""
    for path in reversed(log_paths(job, task)):
        try:
            text = path.read_text(errors="replace").strip()
        except OSError:
            continue
        if text:
            return "\n".join(text.splitlines()[-lines:])
    return ""


def summary(states: list[TaskState]) -> str:
    counts = Counter(s.state for s in states)
    nodes = sorted({s.node for s in states if s.node})
    text = ", ".join(f"{state} {n}" if len(states) > 1 else state for state, n in sorted(counts.items()))
    return text + (f" on {','.join(nodes)}" if nodes else "")


def follow(jobs: list[Job], poll_s: float = 5.0, out=sys.stdout, timeout_s: float | None = None) -> dict[str, list[TaskState]]:
    """Print one line per job whenever its state changes, until every job has ended.

    Returns job id -> its tasks' final states. A task that failed gets its log tail printed once.
    KeyboardInterrupt propagates (the caller says how to follow again and cancel)."""
    shown: dict[str, str] = {}
    tails_shown: set[str] = set()
    started = time.monotonic()
    while True:
        states = {job.job_id: job_states(job) for job in jobs}
        for job in jobs:
            line = summary(states[job.job_id])
            if shown.get(job.job_id) != line:
                shown[job.job_id] = line
                print(f"[{time.strftime('%H:%M:%S')}] {job.name:<28} job {job.job_id:<8} {line}", file=out, flush=True)
            for s in states[job.job_id]:
                if s.state in FAILED and s.task not in tails_shown:
                    tails_shown.add(s.task)
                    tail = log_tail(job, s.task)
                    if tail:  # a job cancelled before it started (its input failed) has no log
                        print(f"  {s.task} {s.state}; log {log_paths(job, s.task)[1]} — last lines:\n    "
                              + tail.replace("\n", "\n    "), file=out, flush=True)
        if all(s.state in DONE for tasks in states.values() for s in tasks):
            return states
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            return states
        time.sleep(poll_s)


def cancel(jobs: list[Job]) -> list[str]:
    """scancel every job of the record that may still run; returns the ids cancelled."""
    ids = [j.job_id for j in jobs]
    if ids:
        out = _run(["scancel", *ids])
        if out.returncode != 0:
            raise SlurmError(f"scancel {' '.join(ids)}: {out.stderr.strip()}")
    return ids
