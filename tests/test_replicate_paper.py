"""make replicate-paper: several profiles in turn, a failing one reported while the others finish,
live progress in the terminal, a rerun that reuses everything, and the multi-model figures."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from shared_runs import FINISHED
from langneurons.base.params import ParamsError, load_params
from langneurons.run.progress import StageOutput
from langneurons.run.replicate_paper import main



@pytest.mark.slow
@pytest.mark.xdist_group("pipeline")
def test_profiles_in_turn_with_a_failure_progress_and_figures(shared):
    """The shared run is make replicate-paper over four profiles (shared_runs.py), one of them broken."""
    assert shared.exit_code == 1  # one profile failed
    out = shared.printed
    assert re.search(r"broken\s+failed: StageError: 02_activations failed", out)
    for name in FINISHED:
        assert re.search(rf"{name}\s+done", out)
    assert "3 of 4 profiles succeeded" in out
    # live progress from inside the kernels: the stage's prefix, the bar with its rate
    assert "  qwen2 02_activations | activations: 100%" in out and "text/s]" in out
    assert "  mixtral 05_intervention | generation: 100%" in out
    # the multi-model figures: every finished profile, the failed one listed as missing
    figs = shared.figures / "all"
    dist = pd.read_csv(figs / "layer_distribution.csv")
    rates = pd.read_csv(figs / "main_rates.csv")
    assert set(dist.profile) == set(rates.profile) == set(FINISHED)
    blocks = {name: json.loads((shared.run(name) / "activations" / "meta.json").read_text())["n_blocks"] for name in FINISHED}
    assert dist.groupby("profile").block.max().to_dict() == {name: n - 1 for name, n in blocks.items()}
    assert len(rates) == 7 + 3 + 3 and set(pd.read_csv(figs / "overlap_summary.csv").side) == {"top", "bottom"}
    for stem in ("all_fig1_layer_distribution", "all_fig2_overlap", "all_fig3_target_rate", "all_fig4_rate_vs_n",
                 "all_fig5_top_bottom_both", "all_fig6_translation"):
        assert (figs / f"{stem}.png").stat().st_size > 1000
    readme = (figs / "README.md").read_text()
    assert "| broken | missing (not run yet) | failed: StageError: 02_activations failed" in readme
    # each profile's report carries its stage table
    assert "## Stages" in (shared.figs("qwen2") / "README.md").read_text()


@pytest.mark.slow
@pytest.mark.xdist_group("pipeline")
def test_a_rerun_reuses_every_stage_without_a_kernel(shared, tmp_path: Path, capsys):
    """The finished profiles again, on a copy of the shared run's folders: every stage reused, no notebook started."""
    runs, figures = tmp_path / "runs", tmp_path / "figs"
    shutil.copytree(shared.runs, runs)
    shutil.copytree(shared.figures, figures)
    args = ["--profiles", " ".join(str(shared.profiles[n]) for n in FINISHED), "--set",
            f"output_root={runs} figures_root={figures}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for name in FINISHED:
        assert re.search(rf"{name}\s+reused", out) and not re.search(rf"{name}\s+done", out)
    assert not re.search(r"\] \w+ \d\d_\w+ -> ", out)  # no notebook was started
    for name in FINISHED:
        for log in (runs / name / "logs").glob("*.json"):
            record = json.loads(log.read_text())
            assert record["reused"] is True and record["notebook_engine"] is None, log


def test_stage_output_prints_lines_and_bar_refreshes(capsys):
    live = StageOutput("tiny 02_activations")
    live.write("computing — no finished result yet\nactivations:   0%|          | 0/10 [00:00<?, ?text/s]")
    live.write("\ractivations:  50%|█████     | 5/10 [00:01<00:01, 5.0text/s]")
    live.write("\ractivations:  50%|█████     | 5/10 [00:01<00:01, 5.0text/s]\n")
    live.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["  tiny 02_activations | computing — no finished result yet",
                     "  tiny 02_activations | activations:   0%|          | 0/10 [00:00<?, ?text/s]",
                     "  tiny 02_activations | activations:  50%|█████     | 5/10 [00:01<00:01, 5.0text/s]"]


def test_profiles_by_path_and_paper_list(tmp_path: Path):
    own = tmp_path / "my_model.yaml"
    own.write_text("description: mine\nmodel: {path: models/tiny}\nscoring: {n_per_side: 7}\n")
    p = load_params(str(own), check_files=False)
    assert p.profile == "my_model" and p.scoring.n_per_side == 7
    with pytest.raises(ParamsError, match="does not exist"):
        load_params(str(tmp_path / "nope.yaml"))
    assert len(load_params("tiny").paper.profiles) == 8
    with pytest.raises(ParamsError, match="paper.profiles lists"):
        load_params("tiny", ["paper.profiles=xglm-564M,gpt-5"])


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["kernel", "inprocess"])
def test_ctrl_c_stops_in_one_line_and_leaves_no_kernel(engine: str, tmp_path: Path):
    """SIGINT to the whole process group, as Ctrl-C in a terminal sends it, while a stage runs (in its
    own kernel, or in the pipeline's process)."""
    import os
    import signal
    import subprocess
    import sys

    import psutil

    cmd = [sys.executable, "-m", "langneurons.run.pipeline", "--profile", "tiny", "--stages", "01_data_prep,02_activations",
           "--set", f"output_root={tmp_path / 'runs'} figures_root={tmp_path / 'figs'} notebook_engine={engine} "
           "data.bundled.n_positive=150 data.bundled.n_negative_per_language=150"]  # ~1,000 texts: a few seconds of stage 02
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    for line in proc.stdout:  # wait until the activation stage is under way
        seen.append(line)
        if "02_activations | activations:" in line:
            break
    kernels = psutil.Process(proc.pid).children(recursive=True)
    assert bool(kernels) == (engine == "kernel")  # the stage's kernel, in its own session
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(seen)[-2000:] + err[-2000:]
    assert err.strip().splitlines() == [
        f"interrupted during tiny 02_activations: finished stages and the work saved so far are kept in "
        f"{tmp_path / 'runs' / 'tiny'}; run the same command again to resume"]
    gone, alive = psutil.wait_procs(kernels, timeout=30)
    assert not alive  # the stage's kernel was shut down with it
