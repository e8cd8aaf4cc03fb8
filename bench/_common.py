"""Shared helpers for the benchmarks: machine description, median timing, results table and JSON.

Every benchmark times baseline and ours in one process on the same inputs, so the ratio is not
confounded by machine load or library versions; the machine is recorded next to the numbers.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import transformers

# BENCH_RESULTS_DIR redirects the JSON results (the smoke test writes them to a temporary folder)
RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or Path(__file__).resolve().parent / "results")
ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict[str, Any]:
    """What the ratios were measured on: nproc, CPU model, torch/transformers versions, threads."""
    try:
        nproc = int(subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError, ValueError):
        nproc = os.cpu_count() or 0
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": nproc, "cpu_model": cpu, "torch": torch.__version__, "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
        "cuda": torch.cuda.is_available(),
    }


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    """Median wall time over `repeats` calls (plus all times and the last result)."""
    times: list[float] = []
    result: Any = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, result


def print_table(rows: list[dict[str, Any]]) -> None:
    """A plain aligned table: good enough to paste into BENCHMARKS.md."""
    if not rows:
        return
    cols = list(rows[0])
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print(" | ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("-+-".join("-" * w for w in widths))
    for row in cells:
        print(" | ".join(v.ljust(w) for v, w in zip(row, widths)))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-3 and v != 0 else f"{v:,.3f}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """bench/results/<name>.json with the machine attached."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **payload}, indent=2, default=str) + "\n")
    return path


def finish(name: str, quick: bool, payload: dict[str, Any]) -> Path:
    """Say which machine measured, and save bench/results/<name>[_quick].json."""
    m = machine()
    print(f"machine: nproc={m['nproc']}, {m['cpu_model']}, torch {m['torch']}, {m['torch_threads']} threads")
    path = write_results(f"{name}_quick" if quick else name, {"quick": quick, **payload})
    print(f"wrote {path}")
    return path
