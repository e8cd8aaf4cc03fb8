"""LAUNCHER=slurm on a real Slurm: munged, slurmctld and three slurmd (nodes n1-n3) started on this host.

Where the Slurm binaries are installed (.ci/run installs them when it runs as root) the cluster must
start: a failure to start fails the tests, it does not skip them. Without the binaries the tests skip.

The reference is the session's local run (shared_runs.py: `chain`, notebooks 01-07, and the
replicate-paper over four profiles). Under Slurm, the same profile runs as jobs: 01-04 one job each,
05-07 as three shard tasks each and a notebook that assembles the parts. Its first submission has one
05 shard paused and cancelled with scancel; the same command again submits only what is missing, and
the run's outputs equal the local run's byte for byte.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from langneurons.cluster import local_slurm
from langneurons.run.cache import stamped_outputs
from langneurons.run.stages import NAMES

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pipeline")]

SHARDS = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if local_slurm.missing_binaries():
        pytest.skip(f"Slurm is not installed (apt-get install {local_slurm.PACKAGES})")
    root = tmp_path_factory.mktemp("slurm")
    private = root / "node-private"  # each node sees an empty folder here: a filesystem the nodes do not share
    try:
        started = local_slurm.start(root / "cluster", n_nodes=3, private=private)
    except Exception:
        try:
            local_slurm.stop(local_slurm.load(root / "cluster"))
        except OSError:
            pass
        raise
    saved = os.environ.get("SLURM_CONF")
    os.environ.update(started.env)
    yield started, private
    local_slurm.stop(started)
    if saved is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = saved


def make(args: list[str], env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    """`make replicate`'s module, as make runs it, in a process of its own."""
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})}, **kw)


def slurm_set(where: str, shards: int = SHARDS) -> str:
    # inprocess: no kernel start per job (both engines write the same bytes: shared_runs.py)
    # three nodes share this host's cores: a job asks for one CPU
    return (f"{where} launcher.name=slurm launcher.shards={shards} launcher.slurm.poll_s=1 launcher.slurm.cpus_per_job=1 "
            "notebook_engine=inprocess")


def figure_tables(figures: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(figures.glob("*.csv"))}


@pytest.fixture(scope="module")
def slurm_chain(cluster, shared, tmp_path_factory):
    """The chain profile under Slurm: a first submission with a 05 shard cancelled mid-run, then the same command."""
    root = tmp_path_factory.mktemp("slurm_chain")
    where = f"output_root={root / 'runs'} figures_root={root / 'figs'}"
    args = ["-m", "langneurons.run.launch", "replicate", "--profile", str(shared.profiles["chain"]), "--set", slurm_set(where)]
    run = root / "runs" / "chain"
    # shard 1 of 05 (part index 1) stops right after saving that part: a running task to cancel
    first = make(args, env={"LANGNEURONS_PAUSE_AT": "shard-05_intervention:2"})
    deadline = time.monotonic() + 240
    while not list((run / "partial").glob("05_intervention-*/0001.parquet")):
        assert first.poll() is None, f"the first submission ended early:\n{first.communicate()[0]}"
        assert time.monotonic() < deadline, "05's shard 1 never saved its part"
        time.sleep(0.5)
    record = json.loads((run / "cluster" / "jobs.json").read_text())
    shards05 = next(j for j in record["jobs"] if j["name"] == "05_intervention shards")
    subprocess.run(["scancel", f"{shards05['job_id']}_1"], check=True)
    first_out = first.communicate(timeout=240)[0]
    again = make(args)
    again_out = again.communicate(timeout=300)[0]
    return run, root / "figs" / "chain", first.returncode, first_out, again.returncode, again_out


def test_the_slurm_run_equals_the_local_run_byte_for_byte(slurm_chain, shared):
    run, figures, _, _, code, out = slurm_chain
    assert code == 0, out
    assert sorted(f.stem for f in (run / "stamps").glob("0*.json") if not f.stem.endswith(".derived")) == list(NAMES)
    assert stamped_outputs(run) == stamped_outputs(shared.run("chain"))
    assert figure_tables(figures) == figure_tables(shared.figs("chain"))
    assert (figures / "README.md").is_file()
    # the shard tasks of 05-07 ran on more than one node
    logs = [json.loads(f.read_text()) for f in (run / "logs" / "cluster").glob("*-shard*.json")]
    assert {log["stage"] for log in logs} == {"05_intervention", "06_translation", "07_ap_vs_lape"}
    assert len({log["node"] for log in logs}) > 1, logs


def test_a_cancelled_shard_is_all_that_the_same_command_submits_again(slurm_chain):
    run, _, first_code, first_out, code, out = slurm_chain
    assert first_code == 1, first_out
    assert "CANCELLED" in first_out and "run the same command again" in first_out
    record = json.loads((run / "cluster" / "jobs.json").read_text())  # the second submission's
    names = [j["name"] for j in record["jobs"]]
    assert names == ["05_intervention shards", "05_intervention", "report"], names
    assert [len(j["tasks"]) for j in record["jobs"]] == [1, 1, 1]  # one shard, its notebook, the report
    assert "06_translation: reused" in out and "02_activations: reused" in out
    shard = json.loads((run / "logs" / "cluster" / "05_intervention-shard1.json").read_text())
    assert shard["made"] == len(shard["parts"]) - 1  # the part saved before the cancel was kept


def test_replicate_paper_on_slurm_draws_the_local_tables_and_isolates_a_failed_profile(cluster, shared, tmp_path):
    runs, figs = tmp_path / "runs", tmp_path / "figs"
    shutil.copytree(shared.runs, runs)  # the finished profiles: each job reuses them in seconds
    shutil.copytree(shared.figures, figs, ignore=shutil.ignore_patterns("all"))
    profiles = " ".join(str(shared.profiles[n]) for n in ("chain", "broken", "qwen2", "mixtral"))
    proc = make(["-m", "langneurons.run.launch", "replicate-paper", "--profiles", profiles, "--set",
                 slurm_set(f"output_root={runs} figures_root={figs}")])
    out = proc.communicate(timeout=240)[0]
    assert proc.returncode == 1, out  # broken failed, the others did not
    assert "3 of 4 profiles succeeded" in out
    broken = next(line for line in out.splitlines() if line.startswith("broken "))
    assert "failed" in broken and "log " in broken
    assert figure_tables(figs / "all") == figure_tables(shared.figs("all"))
    readme = (figs / "all" / "README.md").read_text()
    assert "| broken" in readme and "failed" in readme


def test_an_output_root_the_nodes_do_not_see_is_refused_before_anything_is_submitted(cluster, shared):
    _, private = cluster
    where = f"output_root={private / 'runs'} figures_root={private / 'figs'}"
    proc = make(["-m", "langneurons.run.launch", "replicate", "--profile", str(shared.profiles["qwen2"]), "--set", slurm_set(where)])
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 2, out
    error = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "output_root" in error[0] and "does not see" in error[0], out
    assert not (private / "runs" / "qwen2" / "cluster" / "jobs.json").exists()  # no stage was submitted
