"""Per-stage wall time and peak memory, recorded by each notebook into the run's logs/.

A stage's peak is its own even when several notebooks run in one process (notebook_engine:
inprocess): on Linux the process's peak resident memory (VmHWM) is reset when a stage starts.
Elsewhere it is the process's peak so far, which is the stage's own in a kernel of its own.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from langneurons.base.atomic import write_json
from langneurons.base.params import ReadLog, stop_read_log
from langneurons.run.stages import keyed, record_derived

if TYPE_CHECKING:  # torch (under batching) takes seconds to import: only the stages that batch need it
    from langneurons.base.batch_halving import BatchSize


def reset_peak_rss() -> None:
    """Start counting the peak resident memory afresh (Linux: writing 5 to clear_refs resets VmHWM)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux, or not allowed: the peak counts from the process's start


def peak_rss_mib() -> float:
    """Peak resident memory of this process since the last reset_peak_rss (else since it started)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux reports KiB, macOS bytes
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


@dataclass
class Stage:
    name: str
    run_dir: Path
    figures_dir: Path | None = None  # paper_figures/<profile>: where the notebook derives its figures (stages.py)
    engine: str = "kernel"  # how the notebook runs (param notebook_engine); the log says which
    started: float = field(default_factory=time.perf_counter)
    wall_started: float = field(default_factory=time.time)  # files modified since then were written by this run
    reused: bool | None = None  # set by the stage's cache: True when its outputs were reused
    batch_sizes: list[BatchSize] = field(default_factory=list)  # recorded with the size actually used
    notes: dict[str, str] = field(default_factory=dict)  # one-line facts of the run worth keeping (e.g. how it batched)
    read_log: ReadLog | None = None  # the params the stage reads (notebook.setup starts it; finish records it)

    def __post_init__(self) -> None:
        reset_peak_rss()

    def batch_size(self, param: str, asked: int, halve_on_oom: bool) -> BatchSize:
        """The stage's batch size for `param`; the log records what was asked and what was used."""
        from langneurons.base.batch_halving import BatchSize

        batch = BatchSize(param, asked, halve_on_oom)
        self.batch_sizes.append(batch)
        return batch

    def _params_read(self) -> tuple[list[str] | None, list[str] | None]:
        """The params the stage read, and those of them its cache key does not hold (run/stages.py)."""
        if self.read_log is None:
            return None, None
        stop_read_log()
        read = sorted(self.read_log.keys)
        not_keyed = [k for k in read if not keyed(self.name, k)]
        if not_keyed:
            print(f"warning: {self.name} read {', '.join(not_keyed)}, which its cache key does not hold: a change "
                  "to them would reuse stale outputs. Add them to the stage's params in run/stages.py")
        return read, not_keyed

    def finish(self, notebook: bool = True) -> dict:
        """Write the stage's log (and, from a notebook, the checksums of the files it derived).

        notebook=False: `make replicate` found the stage's outputs and derived files current and
        ran no notebook; the wall time and memory are those of that check."""
        if notebook and self.figures_dir is not None:
            record_derived(self.name, self.run_dir, self.figures_dir, since=self.wall_started - 1.0)
        path = self.run_dir / "logs" / f"{self.name}.json"
        sizes = {b.param: b.record() for b in self.batch_sizes}
        if self.reused and path.is_file():  # reused outputs: keep the sizes of the run that computed them
            sizes = json.loads(path.read_text()).get("batch_sizes", sizes)
        notes = self.notes
        if self.reused and path.is_file():  # likewise the notes of the run that computed them
            notes = json.loads(path.read_text()).get("notes", notes)
        params_read, not_keyed = self._params_read()
        if params_read is None and path.is_file():  # no notebook ran: keep what the last one read
            previous = json.loads(path.read_text())
            params_read, not_keyed = previous.get("params_read"), previous.get("params_not_keyed")
        record = {"stage": self.name, "wall_s": round(time.perf_counter() - self.started, 2),
                  "peak_rss_mib": round(peak_rss_mib(), 1), "reused": self.reused,
                  "notebook_engine": self.engine if notebook else None,
                  "batch_sizes": sizes, "notes": notes, "params_read": params_read, "params_not_keyed": not_keyed}
        # the time and memory of the run that computed the outputs (the report shows those, not a reuse check's)
        record["computed"] = {"wall_s": record["wall_s"], "peak_rss_mib": record["peak_rss_mib"]}
        if self.reused and path.is_file():
            previous = json.loads(path.read_text())
            record["computed"] = previous.get("computed") or {k: previous[k] for k in ("wall_s", "peak_rss_mib")}
        write_json(path, record)
        halved = [f"{b.param} halved to {b.used} (asked {b.asked})" for b in self.batch_sizes if b.used != b.asked]
        if notebook:
            print(f"stage {self.name}: {record['wall_s']} s, peak RSS {record['peak_rss_mib']} MiB"
                  + (f"; {', '.join(halved)}" if halved else ""))
        return record


def batch_size_table(run_dir: Path) -> pd.DataFrame:
    """stage, param, asked, used: one row per batch size a stage recorded."""
    rows = [{"stage": r["stage"], "param": param, **s} for r in stage_records(run_dir)
            for param, s in (r.get("batch_sizes") or {}).items()]
    return pd.DataFrame(rows, columns=["stage", "param", "asked", "used"])


def stage_records(run_dir: Path) -> list[dict]:
    """The stage logs of a run (one record per stage that has run), in name order."""
    return [json.loads(p.read_text()) for p in sorted((run_dir / "logs").glob("*.json"))]


def _batch_used(record: dict) -> str:
    """"activations.batch_size=16 (asked 32)" for the stages that batched and were not reused."""
    sizes = record.get("batch_sizes") or {}
    return ", ".join(f"{param}={s['used']}" + (f" (asked {s['asked']})" if s["used"] != s["asked"] else "")
                     for param, s in sizes.items())


def stage_table(run_dir: Path, computed: bool = False) -> pd.DataFrame:
    """All recorded stages of a run, in name order, with the batch sizes actually used.

    computed=True: wall time and memory of the run that computed each stage's outputs (a reused
    stage's own record is only the cache check)."""
    records = stage_records(run_dir)
    if computed:
        records = [{**r, **(r.get("computed") or {})} for r in records]
    table = pd.DataFrame(records, columns=["stage", "wall_s", "peak_rss_mib", "reused"])
    table["batch_size_used"] = [_batch_used(r) for r in records]
    return table
