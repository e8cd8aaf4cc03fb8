"""Per-stage wall time and peak memory, recorded by each notebook into the run's logs/.

Every notebook runs in its own kernel process, so the process's peak RSS is that stage's peak.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .atomic import write_json


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


@dataclass
class Stage:
    name: str
    run_dir: Path
    started: float = field(default_factory=time.perf_counter)
    reused: bool | None = None  # set by the stage's cache: True when its outputs were reused

    def finish(self) -> dict[str, float | str | bool | None]:
        record = {"stage": self.name, "wall_s": round(time.perf_counter() - self.started, 2),
                  "peak_rss_mib": round(peak_rss_mib(), 1), "reused": self.reused}
        write_json(self.run_dir / "logs" / f"{self.name}.json", record)
        print(f"stage {self.name}: {record['wall_s']} s, peak RSS {record['peak_rss_mib']} MiB")
        return record


def stage_table(run_dir: Path) -> pd.DataFrame:
    """All recorded stages of a run, in name order."""
    records = [json.loads(p.read_text()) for p in sorted((run_dir / "logs").glob("*.json"))]
    return pd.DataFrame(records, columns=["stage", "wall_s", "peak_rss_mib", "reused"])
