"""Each benchmark script runs end to end at its --quick size and writes its results (not timed here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.slow
@pytest.mark.parametrize("name, extra", [("ap", ["--repeats", "1"]), ("activations", ["--models", "xglm", "--repeats", "1"]),
                                         ("generation", ["--models", "xglm", "--repeats", "1"]), ("scale", ["--dir", "{tmp}"]),
                                         ("lape", ["--models", "xglm", "--repeats", "1"])])
def test_bench_quick(name: str, extra: list[str], tmp_path: Path):
    extra = [a.replace("{tmp}", str(tmp_path / "scratch")) for a in extra]
    env = {**os.environ, "BENCH_RESULTS_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, str(BENCH / f"bench_{name}.py"), "--quick", *extra],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / f"{name}_quick.json").read_text())
    assert record["quick"] is True and record["machine"]["nproc"] >= 1
    if name == "scale":
        assert record["max_abs_diff_vs_sklearn"] <= 1e-12 and record["peak_rss_mib"] > 0
        assert not list((tmp_path / "scratch").glob("*.npy"))  # the matrix is removed unless --keep
    if name == "lape":
        assert record["results"][0]["ap_matrix_unchanged"] and record["results"][0]["disk_ratio"] > 1
