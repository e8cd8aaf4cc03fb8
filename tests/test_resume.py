"""Resumable, cached stages, tested through the real pipeline (`python -m langneurons.run.pipeline`).

- kill -9 during activation collection, then during generation; the reruns resume and the final
  outputs equal an uninterrupted run's byte for byte (which is also the determinism check);
- a rerun reuses every stage; a changed param recomputes only the stages downstream of it;
- a corrupted or truncated output is detected and rebuilt; force=true recomputes everything;
- a stage run alone refuses an altered upstream output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ALL_SENTENCES, write_official_dir
from langneurons.run.cache import StageCache
from langneurons.run.faults import ENV as CRASH_ENV
from langneurons.run.faults import OOM_ENV
from langneurons.run.layout import RunLayout
from langneurons.run.params import load_params
from langneurons.model.tiny import build_and_save

STAGES = ("01_data_prep", "02_activations", "03_scoring", "05_intervention")
COMPARED = ["activations/activations.npy", "activations/units.parquet", "data/texts.parquet", "data/sets.parquet",
            "selection/en.csv", "selection/de.csv", "selection/zh.csv", "generations/unconditional.parquet",
            "generations/unconditional.csv",
            *[f"scores/{lang}.parquet" for lang in ("en", "de", "zh")]]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("resume")
    model_dir = build_and_save(root / "model", "xglm", ALL_SENTENCES * 3, vocab_size=300, seed=0,
                               d_model=32, layers=2, heads=4, ffn=64)
    sense = write_official_dir(root / "sense", n_pos=6, n_neg_per_lang=4)
    overrides = [f"model.path={model_dir}", "data.source=official", f"data.official_path={sense}", "model.device=cpu",
                 "languages=en,de,zh", "scoring.n_per_side=5", "activations.batch_size=4", "generation.n_samples=4",
                 "generation.batch_size=2", "generation.max_new_tokens=6", "intervention.sweep=1,1000"]
    return root, overrides


def run(out: Path, overrides: list[str], crash: str | None = None, extra: tuple[str, ...] = (),
        oom: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (CRASH_ENV, OOM_ENV)}
    if crash:
        env[CRASH_ENV] = crash
    if oom:
        env[OOM_ENV] = oom
    sets = [*overrides, f"output_root={out}", f"figures_root={out / 'figures'}", *extra]
    return subprocess.run([sys.executable, "-m", "langneurons.run.pipeline", "--profile", "tiny", "--set", " ".join(sets),
                           "--stages", ",".join(STAGES)], env=env, capture_output=True, text=True, timeout=900)


def reused(run_dir: Path) -> dict[str, bool]:
    return {s: json.loads((run_dir / "logs" / f"{s}.json").read_text())["reused"] for s in STAGES}


def notebook_text(run_dir: Path, stage: str) -> str:
    return (run_dir / "notebooks" / f"{stage}.ipynb").read_text()


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> Path:
    """An uninterrupted run."""
    out = tmp_path_factory.mktemp("reference")
    result = run(out, inputs[1])
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "tiny"


def assert_same_outputs(a: Path, b: Path) -> None:
    for rel in COMPARED:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), f"{rel} differs"


def test_killed_runs_resume_to_the_uninterrupted_result(inputs, reference, tmp_path: Path):
    _, overrides = inputs
    run_dir = tmp_path / "tiny"
    # 1. SIGKILL right after the 3rd batch of activations is saved
    first = run(tmp_path, overrides, crash="activations:3")
    assert first.returncode != 0 and "02_activations stopped" in first.stderr
    progress = json.loads(next((run_dir / "partial").glob("02_activations-*/progress.json")).read_text())
    assert progress["batches_done"] == 3 and 0 < progress["texts_done"] < progress["identity"]["n_kept"]
    assert not (run_dir / "activations" / "activations.npy").exists()  # nothing under the final name
    assert not (run_dir / "stamps" / "02_activations.json").exists()
    # 2. rerun: activations resume after batch 3; then SIGKILL after the 2nd generation condition
    second = run(tmp_path, overrides, crash="generation:2")
    assert second.returncode != 0 and "05_intervention stopped" in second.stderr
    assert "resuming activation collection after batch 3" in notebook_text(run_dir, "02_activations")
    parts = sorted(p.name for p in (run_dir / "partial").glob("05_intervention-*/*.parquet"))
    assert parts == ["0000.parquet", "0001.parquet"]
    assert not (run_dir / "generations" / "unconditional.parquet").exists()
    # 3. rerun: generation picks up at the 3rd condition
    third = run(tmp_path, overrides)
    assert third.returncode == 0, third.stderr[-3000:]
    log = notebook_text(run_dir, "05_intervention")
    assert "condition 3/" in log and "condition 1/" not in log and "condition 2/" not in log  # resumed at the 3rd
    assert reused(run_dir) == {"01_data_prep": True, "02_activations": True, "03_scoring": True, "05_intervention": False}
    assert not list((run_dir / "partial").glob("*"))  # work in progress cleaned up
    assert_same_outputs(reference, run_dir)


def test_out_of_memory_halves_the_batch_and_gives_the_same_texts(inputs, reference, tmp_path: Path):
    """A device that runs out of memory from the 3rd condition on with batches over 1: the run halves
    generation.batch_size (2 -> 1), continues, records the size used, and writes exactly the texts of
    the uninterrupted run (each sample has its own seed). With halving off it stops in one line."""
    _, overrides = inputs
    shutil.copytree(reference, tmp_path / "tiny")  # 01-03 are reused; 05 runs again below
    run_dir = tmp_path / "tiny"
    refused = run(tmp_path, overrides, extra=("halve_batch_on_oom=false", "generation.first_seed=2"), oom="generation:2:1")
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert refused.returncode == 1 and len(errors) == 1
    assert "out of memory with generation.batch_size=2: lower it" in errors[0]
    halved = run(tmp_path, overrides, oom="generation:2:1")
    assert halved.returncode == 0, halved.stderr[-3000:]
    assert "out of memory with generation.batch_size=2: continuing with 1" in notebook_text(run_dir, "05_intervention")
    log = json.loads((run_dir / "logs" / "05_intervention.json").read_text())
    assert log["reused"] is False and log["batch_sizes"] == {"generation.batch_size": {"asked": 2, "used": 1}}
    report = (tmp_path / "figures" / "tiny" / "README.md").read_text()
    assert "| 05_intervention | generation.batch_size | 2 | 1 |" in report
    for rel in ("generations/unconditional.parquet", "generations/unconditional.csv"):
        assert (run_dir / rel).read_bytes() == (reference / rel).read_bytes(), f"{rel} differs"


def test_two_runs_are_byte_identical(reference, inputs, tmp_path: Path):
    """Determinism on CPU: same params, fresh output folder -> the same bytes and the same texts."""
    result = run(tmp_path, inputs[1])
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_outputs(reference, tmp_path / "tiny")


def test_reuse_invalidation_and_corruption(inputs, reference, tmp_path: Path):
    _, overrides = inputs
    shutil.copytree(reference, tmp_path / "tiny")  # stamps hold relative paths: a moved run stays valid
    run_dir = tmp_path / "tiny"
    matrix = run_dir / "activations" / "activations.npy"
    before = matrix.stat().st_mtime_ns
    # unchanged params: every stage is reused, nothing is rewritten
    assert run(tmp_path, overrides).returncode == 0
    assert reused(run_dir) == dict.fromkeys(STAGES, True)
    assert matrix.stat().st_mtime_ns == before
    assert "reusing" in notebook_text(run_dir, "02_activations")
    # a generation param changes: only the stage downstream of it recomputes
    assert run(tmp_path, overrides, extra=("generation.temperature=0.5",)).returncode == 0
    assert reused(run_dir) == {"01_data_prep": True, "02_activations": True, "03_scoring": True, "05_intervention": False}
    assert "params.generation" in notebook_text(run_dir, "05_intervention")
    # corrupt one file (same size) and truncate another: both are detected and rebuilt
    scores = run_dir / "scores" / "de.parquet"
    data = bytearray(scores.read_bytes())
    data[len(data) // 2] ^= 0xFF
    scores.write_bytes(bytes(data))
    with open(matrix, "r+b") as f:
        f.truncate(matrix.stat().st_size // 2)
    result = run(tmp_path, overrides, extra=("generation.temperature=0.5",))
    assert result.returncode == 0, result.stderr[-3000:]
    assert reused(run_dir) == {"01_data_prep": True, "02_activations": False, "03_scoring": False, "05_intervention": True}
    assert "truncated" in notebook_text(run_dir, "02_activations")
    assert "does not match its checksum" in notebook_text(run_dir, "03_scoring")
    # the rebuilt files are the reference bytes again, so 05 (keyed by their checksums) is still reused
    for rel in ["activations/activations.npy", "scores/de.parquet"]:
        assert (run_dir / rel).read_bytes() == (reference / rel).read_bytes()
    # force=true recomputes every stage (checked on the cache itself: a full rerun adds nothing)
    params = load_params("tiny", [*overrides, f"output_root={tmp_path}", "generation.temperature=0.5"])
    layout = RunLayout.of(params)
    assert all(StageCache(stage, params, layout).hit for stage in STAGES)
    assert not any(StageCache(stage, params, layout, force=True).hit for stage in STAGES)


def test_corrupted_upstream_is_an_error_for_a_stage_run_alone(reference, inputs, tmp_path: Path):
    """Running a later stage by itself never silently uses an altered upstream output."""
    shutil.copytree(reference, tmp_path / "tiny")
    sets = tmp_path / "tiny" / "data" / "sets.parquet"
    sets.write_bytes(sets.read_bytes()[:-10])
    sets_arg = [*inputs[1], f"output_root={tmp_path}", f"figures_root={tmp_path / 'figures'}"]
    result = subprocess.run([sys.executable, "-m", "langneurons.run.pipeline", "--profile", "tiny", "--set", " ".join(sets_arg),
                             "--stages", "03_scoring"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    err = result.stderr.strip().splitlines()[-1]
    assert "StaleUpstreamError" in err and "01_data_prep" in err and "data/sets.parquet" in err
    for lang in ("en", "de", "zh"):  # nothing rewritten
        rel = f"scores/{lang}.parquet"
        assert (tmp_path / "tiny" / rel).read_bytes() == (reference / rel).read_bytes()
