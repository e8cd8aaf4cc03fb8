"""The cluster launcher's pure parts, without Slurm: the jobs for a run, their requests, the wall time on
N nodes, and how a stage's parts are shared out and guarded."""

from __future__ import annotations

import pandas as pd
import pytest

from langneurons.base.params import load_params
from langneurons.base.parts import Part, run_parts
from langneurons.run.cluster_plan import expected_wall, job_graph
from langneurons.run.plan import GIB, make_plan
from langneurons.run.shard_parts import shard_indices
from langneurons.run.stages import NAMES


def tiny(*overrides: str):
    return load_params("tiny", ["launcher.name=slurm", *overrides], check_files=False)


def test_the_jobs_follow_the_registry_and_shard_only_the_stages_made_of_parts():
    p = tiny("launcher.shards=4")
    jobs = job_graph(p, NAMES, None)
    names = [j.name for j in jobs]
    assert names[:4] == ["01_data_prep", "02_activations", "03_scoring", "04_analysis"]
    for stage in ("05_intervention", "06_translation", "07_ap_vs_lape"):
        shards, notebook = jobs[names.index(f"{stage} shards")], jobs[names.index(stage)]
        assert shards.tasks == (0, 1, 2, 3) and notebook.tasks == ()
        assert f"{stage} shards" in notebook.after and "03_scoring" in shards.after
        assert "04_analysis" not in shards.after  # 05-07 read 02/03, not 04: they run beside it
    assert jobs[-1].name == "report" and set(jobs[-1].after) == set(NAMES)
    # one shard: no arrays, one job per stage
    assert [j.name for j in job_graph(tiny("launcher.shards=1"), NAMES, None)] == [*NAMES, "report"]


def test_a_rerun_submits_only_the_unfinished_shards_or_none():
    p = tiny("launcher.shards=3")
    jobs = job_graph(p, ("05_intervention", "06_translation"), None,
                     unfinished={"05_intervention": [2], "06_translation": []})
    assert [(j.name, j.tasks) for j in jobs] == [("05_intervention shards", (2,)), ("05_intervention", ()),
                                                ("06_translation", ()), ("report", ())]
    assert jobs[1].after == ("05_intervention shards",) and jobs[2].after == ()


def test_requests_come_from_the_plan_with_margins_unless_params_set_them():
    p = tiny("launcher.shards=2")
    plan = make_plan(p)
    jobs = {j.name: j for j in job_graph(p, NAMES, plan)}
    scoring = next(c for c in plan.stages if c.stage == "03_scoring")
    assert jobs["03_scoring"].resources.mem_gb >= scoring.host_bytes * 1.5 / GIB
    assert jobs["05_intervention shards"].resources.gpus == 0
    fixed = {j.name: j for j in job_graph(tiny("launcher.slurm.mem=7", "launcher.slurm.time=45", "launcher.slurm.partition=gpu",
                                               "model.device=cuda"), NAMES, make_plan(tiny("model.device=cuda")))}
    r = fixed["02_activations"].resources
    assert (r.mem_gb, r.time_min, r.partition, r.gpus) == (7, 45, "gpu", 1)
    assert r.submitit()["slurm_partition"] == "gpu" and r.submitit()["gpus_per_node"] == 1


def test_expected_wall_time_shrinks_with_nodes_down_to_the_critical_path():
    p = tiny("launcher.shards=16")
    plan = make_plan(p)
    jobs = job_graph(p, NAMES, plan)
    one, four, sixteen = (expected_wall(jobs, n) for n in (1, 4, 16))
    assert one > four > sixteen
    assert one == pytest.approx(sum(j.seconds * (len(j.tasks) or 1) for j in jobs))  # one node: all work in a row
    serial = sum(j.seconds for j in jobs if j.name in ("01_data_prep", "02_activations", "03_scoring", "report"))
    assert sixteen >= serial


def test_shards_cover_every_part_once():
    for n_parts, shards in [(49, 3), (2, 5), (12, 4)]:
        covered = sorted(i for k in range(shards) for i in shard_indices(n_parts, k, shards))
        assert covered == list(range(n_parts))


def test_a_parts_folder_made_for_another_list_of_work_is_refused(tmp_path):
    made = []

    def part(label: str) -> Part:
        return Part(label, lambda: made.append(label) or pd.DataFrame({"x": [label]}))

    parts = [part("a"), part("b"), part("c")]
    run_parts(parts, tmp_path, [0, 2])  # one shard's share
    assert made == ["a", "c"]
    assert [f.name for f in sorted(tmp_path.glob("*.parquet"))] == ["0000.parquet", "0002.parquet"]
    out = run_parts(parts, tmp_path)  # the assembling run makes only what is missing
    assert made == ["a", "c", "b"] and [t["x"][0] for t in out.values()] == ["a", "b", "c"]
    with pytest.raises(RuntimeError, match="another list of work"):
        run_parts([part("a"), part("c")], tmp_path)
