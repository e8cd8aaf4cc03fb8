"""A reused stage's log keeps the time and memory of the run that computed its outputs (the report shows those)."""

from __future__ import annotations

import time

from langneurons.run.stagelog import Stage, stage_table


def test_a_reuse_keeps_the_computing_runs_time_for_the_report(tmp_path):
    computing = Stage("02_activations", tmp_path, started=time.perf_counter() - 12.5, reused=False)
    computing.finish(notebook=False)
    for _ in range(2):  # two cached reruns in a row
        Stage("02_activations", tmp_path, reused=True).finish(notebook=False)
    check = stage_table(tmp_path).iloc[0]
    report = stage_table(tmp_path, computed=True).iloc[0]
    assert check.reused and check.wall_s < 1  # what the last make replicate did: a check
    assert report.reused and report.wall_s >= 12.5  # what the report shows: the run that made the outputs
    Stage("02_activations", tmp_path, reused=False).finish(notebook=False)  # computed again
    assert stage_table(tmp_path, computed=True).iloc[0].wall_s < 1
