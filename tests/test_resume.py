"""Resumable, cached stages, tested through the real pipeline (`python -m langneurons.run.pipeline`).

The uninterrupted reference is the shared run's `chain` profile (shared_runs.py), its notebooks
each in a Jupyter kernel. These tests run the same profile again from scratch in folders of their
own, its notebooks in the pipeline's process (notebook_engine=inprocess: no kernel start per stage):
- kill -9 during activation collection; then generation stops at its 3rd condition (out of memory,
  with halving off: one line naming the batch size); then a rerun that halves the batch and
  resumes. The final outputs equal the reference's byte for byte: a second run from scratch,
  interrupted twice, with a halved batch and the other notebook engine, gives the same bytes as
  the first (determinism, and the engines agree);
- a rerun reuses every stage without starting a kernel; a changed param recomputes only the stages
  downstream of it; a corrupted or truncated output is detected and rebuilt; force=true recomputes all;
- a stage run alone refuses an altered upstream output, before any kernel starts.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shared_runs import ALL8
from langneurons.run.cache import StageCache
from langneurons.base.faults import ENV as CRASH_ENV
from langneurons.base.faults import OOM_ENV
from langneurons.base.paths import RunLayout
from langneurons.base.params import load_params
from langneurons.run.pipeline import main

STAGES = ("01_data_prep", "02_activations", "03_scoring", "05_intervention")
COMPARED = ["activations/activations.npy", "activations/units.parquet", "data/texts.parquet", "data/sets.parquet",
            "generations/unconditional.parquet", "generations/unconditional.csv",
            *[f"selection/{lang}.csv" for lang in ALL8], *[f"scores/{lang}.parquet" for lang in ALL8]]

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pipeline")]


def run(shared, out: Path, crash: str | None = None, extra: tuple[str, ...] = (), oom: str | None = None,
        stages: tuple[str, ...] = STAGES) -> subprocess.CompletedProcess:
    """The chain profile, as `make replicate` runs it (pipeline.main), into `out`, its notebooks in this
    process; with `crash` (kill -9 at that point) in a child process, which the kill ends."""
    sets = [f"output_root={out}", f"figures_root={out / 'figures'}", "notebook_engine=inprocess", *extra]
    args = ["--profile", str(shared.profiles["chain"]), "--set", " ".join(sets), "--stages", ",".join(stages)]
    env = {k: v for k, v in os.environ.items() if k not in (CRASH_ENV, OOM_ENV)}
    env.update({CRASH_ENV: crash} if crash else {})
    env.update({OOM_ENV: oom} if oom else {})
    if crash:
        return subprocess.run([sys.executable, "-m", "langneurons.run.pipeline", *args], env=env, capture_output=True,
                              text=True, timeout=900)
    out_text, err_text = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out_text), contextlib.redirect_stderr(err_text):
        for key in (CRASH_ENV, OOM_ENV):
            mp.delenv(key, raising=False)
        if oom:
            mp.setenv(OOM_ENV, oom)
        code = main(args)
    return subprocess.CompletedProcess(args, code, out_text.getvalue(), err_text.getvalue())


def reused(run_dir: Path) -> dict[str, bool]:
    return {s: json.loads((run_dir / "logs" / f"{s}.json").read_text())["reused"] for s in STAGES}


def started(stdout: str) -> list[str]:
    """The stages whose notebook the pipeline started (it prints `[hh:mm:ss] <profile> <stage> -> <notebook>`)."""
    return re.findall(r"^\[\d\d:\d\d:\d\d\] chain (\d\d_\w+) -> ", stdout, flags=re.MULTILINE)


def notebook_text(run_dir: Path, stage: str) -> str:
    return (run_dir / "notebooks" / f"{stage}.ipynb").read_text()


def copy_of_the_reference(shared, out: Path) -> Path:
    """The shared chain run and its figures under `out` (stamps hold relative paths: a moved run stays valid)."""
    shutil.copytree(shared.run("chain"), out / "chain")
    shutil.copytree(shared.figs("chain"), out / "figures" / "chain")
    return out / "chain"


def assert_same_outputs(a: Path, b: Path) -> None:
    for rel in COMPARED:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), f"{rel} differs"


def test_killed_and_failed_runs_resume_to_the_uninterrupted_result(shared, tmp_path: Path):
    run_dir, reference = tmp_path / "chain", shared.run("chain")
    # 1. SIGKILL right after the 3rd batch of activations is saved
    first = run(shared, tmp_path, crash="activations:3")
    assert first.returncode == -9  # the stage runs in the pipeline's process: kill -9 ends it all
    progress = json.loads(next((run_dir / "partial").glob("02_activations-*/progress.json")).read_text())
    assert progress["batches_done"] == 3 and 0 < progress["texts_done"] < progress["identity"]["n_kept"]
    assert not (run_dir / "activations" / "activations.npy").exists()  # nothing under the final name
    assert not (run_dir / "stamps" / "02_activations.json").exists()
    # 2. rerun: activations resume after batch 3; generation runs out of memory from its 3rd condition on,
    #    with halving off: the run stops with one line naming the batch size, the first two conditions saved
    second = run(shared, tmp_path, extra=("halve_batch_on_oom=false",), oom="generation:2:1")
    errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    assert second.returncode == 1 and len(errors) == 1, second.stderr[-3000:]
    assert "out of memory with generation.batch_size=2: lower it" in errors[0]
    assert "resuming activation collection after batch 3" in notebook_text(run_dir, "02_activations")
    parts = sorted(p.name for p in (run_dir / "partial").glob("05_intervention-*/*.parquet"))
    assert parts == ["0000.parquet", "0001.parquet"]
    assert not (run_dir / "generations" / "unconditional.parquet").exists()
    # 3. rerun with halving on: generation picks up at the 3rd condition, halves the batch (2 -> 1) and
    #    records it; every sample has its own seed, so the texts are those of the uninterrupted run
    third = run(shared, tmp_path, oom="generation:2:1")
    assert third.returncode == 0, third.stderr[-3000:]
    log = notebook_text(run_dir, "05_intervention")
    assert "part 3/" in log and "part 1/" not in log and "part 2/" not in log  # resumed at the 3rd condition
    assert "out of memory with generation.batch_size=2: continuing with 1" in log
    record = json.loads((run_dir / "logs" / "05_intervention.json").read_text())
    assert record["reused"] is False and record["batch_sizes"] == {"generation.batch_size": {"asked": 2, "used": 1}}
    assert "| 05_intervention | generation.batch_size | 2 | 1 |" in (tmp_path / "figures" / "chain" / "README.md").read_text()
    assert reused(run_dir) == {"01_data_prep": True, "02_activations": True, "03_scoring": True, "05_intervention": False}
    assert not list((run_dir / "partial").glob("*"))  # work in progress cleaned up
    assert_same_outputs(reference, run_dir)


def test_reuse_invalidation_and_corruption(shared, tmp_path: Path):
    run_dir = copy_of_the_reference(shared, tmp_path)
    reference = shared.run("chain")
    matrix = run_dir / "activations" / "activations.npy"
    before = matrix.stat().st_mtime_ns
    # unchanged params: every stage is reused, nothing is rewritten, no kernel starts
    unchanged = run(shared, tmp_path)
    assert unchanged.returncode == 0, unchanged.stderr[-3000:]
    assert reused(run_dir) == dict.fromkeys(STAGES, True)
    assert matrix.stat().st_mtime_ns == before
    assert unchanged.stdout.count("(no kernel started)") == len(STAGES) and started(unchanged.stdout) == []
    # a generation param changes: only the stage downstream of it recomputes
    assert run(shared, tmp_path, extra=("generation.temperature=0.5",)).returncode == 0
    assert reused(run_dir) == {"01_data_prep": True, "02_activations": True, "03_scoring": True, "05_intervention": False}
    assert "params.generation" in notebook_text(run_dir, "05_intervention")
    # corrupt one file (same size) and truncate another: both are detected and rebuilt
    scores = run_dir / "scores" / "de.parquet"
    data = bytearray(scores.read_bytes())
    data[len(data) // 2] ^= 0xFF
    scores.write_bytes(bytes(data))
    with open(matrix, "r+b") as f:
        f.truncate(matrix.stat().st_size // 2)
    result = run(shared, tmp_path, extra=("generation.temperature=0.5",))
    assert result.returncode == 0, result.stderr[-3000:]
    assert reused(run_dir) == {"01_data_prep": True, "02_activations": False, "03_scoring": False, "05_intervention": True}
    assert "truncated" in notebook_text(run_dir, "02_activations")
    assert "does not match its checksum" in notebook_text(run_dir, "03_scoring")
    # the rebuilt files are the reference bytes again, so 05 (keyed by their checksums) is still reused
    for rel in ["activations/activations.npy", "scores/de.parquet"]:
        assert (run_dir / rel).read_bytes() == (reference / rel).read_bytes()
    # a deleted figure is drawn again: its stage's notebook runs (reusing its outputs)
    (tmp_path / "figures" / "chain" / "fig3_main_rates.csv").unlink()
    redrawn = run(shared, tmp_path, extra=("generation.temperature=0.5",))
    assert redrawn.returncode == 0 and started(redrawn.stdout) == ["05_intervention"]
    assert (tmp_path / "figures" / "chain" / "fig3_main_rates.csv").is_file() and reused(run_dir)["05_intervention"]
    # force=true recomputes every stage (checked on the cache itself: a full rerun adds nothing)
    params = load_params(str(shared.profiles["chain"]), [f"output_root={tmp_path}", "generation.temperature=0.5"])
    layout = RunLayout.of(params)
    assert all(StageCache(stage, params, layout).hit for stage in STAGES)
    assert not any(StageCache(stage, params, layout, force=True).hit for stage in STAGES)


def test_corrupted_upstream_is_an_error_for_a_stage_run_alone(shared, tmp_path: Path):
    """Running a later stage by itself never silently uses an altered upstream output."""
    run_dir = copy_of_the_reference(shared, tmp_path)
    sets = run_dir / "data" / "sets.parquet"
    sets.write_bytes(sets.read_bytes()[:-10])
    result = run(shared, tmp_path, stages=("03_scoring",))
    assert result.returncode == 1
    err = result.stderr.strip().splitlines()[-1]
    assert "StaleUpstreamError" in err and "01_data_prep" in err and "data/sets.parquet" in err
    assert started(result.stdout) == []  # refused before any kernel started
    for lang in ALL8:  # nothing rewritten
        rel = f"scores/{lang}.parquet"
        assert (run_dir / rel).read_bytes() == (shared.run("chain") / rel).read_bytes()
