"""make replicate-paper: several profiles in turn, a failing one reported while the others finish,
live progress in the terminal, a rerun that reuses everything, and the multi-model figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import ALL_SENTENCES, write_official_dir
from langneurons.model.tiny import build_and_save
from langneurons.run.params import ParamsError, load_params
from langneurons.run.progress import StageOutput
from langneurons.run.replicate_paper import main

STAGES = "01_data_prep,02_activations,03_scoring,04_analysis,05_intervention"
MODELS = [("xglm", 2), ("llama", 3), ("gpt2", 1)]  # three families, three depths


def write_profiles(root: Path) -> list[str]:
    sense = write_official_dir(root / "sense", n_pos=6, n_neg_per_lang=4)
    profiles = []
    for family, layers in MODELS:
        model = build_and_save(root / f"model_{family}", family, ALL_SENTENCES * 3, vocab_size=300, seed=0,
                               d_model=32, layers=layers, heads=4, ffn=64)
        profile = {"description": f"tiny random {family}, {layers} blocks", "languages": ["en", "de", "zh"],
                   "model": {"path": str(model), "device": "cpu"},
                   "data": {"source": "official", "official_path": str(sense)},
                   "activations": {"batch_size": 4}, "scoring": {"n_per_side": 5}, "intervention": {"sweep": [1, 1000]},
                   "generation": {"n_samples": 3, "batch_size": 3, "max_new_tokens": 5},
                   "selection": {"method": "ap"}}
        path = root / f"tiny_{family}.yaml"
        path.write_text(yaml.safe_dump(profile))
        profiles.append(str(path))
    broken = root / "model_broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")  # a model directory that does not load
    bad = yaml.safe_load(Path(profiles[0]).read_text()) | {"model": {"path": str(broken), "device": "cpu"}}
    (root / "tiny_broken.yaml").write_text(yaml.safe_dump(bad))
    return [profiles[0], str(root / "tiny_broken.yaml"), *profiles[1:]]


@pytest.mark.slow
def test_profiles_in_turn_with_a_failure_progress_and_reuse(tmp_path: Path, capsys):
    profiles = write_profiles(tmp_path)
    where = f"output_root={tmp_path / 'runs'} figures_root={tmp_path / 'figs'}"
    args = ["--profiles", " ".join(profiles), "--set", where, "--stages", STAGES]
    assert main(args) == 1  # one profile failed
    out = capsys.readouterr().out
    assert re.search(r"tiny_broken\s+failed: StageError: 02_activations failed", out)
    for family, _ in MODELS:
        assert re.search(rf"tiny_{family}\s+done", out)
    assert "3 of 4 profiles succeeded" in out
    # live progress from inside the kernels: the stage's prefix, the bar with its rate
    assert "  tiny_llama 02_activations | activations: 100%" in out and "text/s]" in out
    assert "  tiny_gpt2 05_intervention | generation: 100%" in out
    # the multi-model figures: every finished profile, the failed one listed as missing
    figs = tmp_path / "figs" / "all"
    dist = pd.read_csv(figs / "layer_distribution.csv")
    rates = pd.read_csv(figs / "main_rates.csv")
    assert set(dist.profile) == set(rates.profile) == {f"tiny_{f}" for f, _ in MODELS}
    assert dist.groupby("profile").block.max().to_dict() == {f"tiny_{f}": n - 1 for f, n in MODELS}
    assert len(rates) == 3 * 3 and set(pd.read_csv(figs / "overlap_summary.csv").side) == {"top", "bottom"}
    for stem in ("all_fig1_layer_distribution", "all_fig2_overlap", "all_fig3_target_rate", "all_fig4_rate_vs_n",
                 "all_fig5_top_bottom_both", "all_fig6_translation"):
        assert (figs / f"{stem}.png").stat().st_size > 1000
    readme = (figs / "README.md").read_text()
    assert "| tiny_broken | missing (not run yet) | failed: StageError: 02_activations failed" in readme
    # each profile's report carries its stage table
    assert "## Stages" in (tmp_path / "figs" / "tiny_xglm" / "README.md").read_text()
    # a rerun of the finished profiles reuses every stage
    args[1] = " ".join(p for p in profiles if "broken" not in p)
    assert main(args) == 0
    out = capsys.readouterr().out
    for family, _ in MODELS:
        assert re.search(rf"tiny_{family}\s+reused", out) and not re.search(rf"tiny_{family}\s+done", out)
    log = json.loads((tmp_path / "runs" / "tiny_gpt2" / "logs" / "02_activations.json").read_text())
    assert log["reused"] is True


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
def test_ctrl_c_stops_in_one_line_and_leaves_no_kernel(tmp_path: Path):
    """SIGINT to the whole process group, as Ctrl-C in a terminal sends it, while a stage runs."""
    import os
    import signal
    import subprocess
    import sys

    import psutil

    cmd = [sys.executable, "-m", "langneurons.run.pipeline", "--profile", "tiny", "--stages", "01_data_prep,02_activations",
           "--set", f"output_root={tmp_path / 'runs'} figures_root={tmp_path / 'figs'}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    for line in proc.stdout:  # wait until the activation stage is under way
        seen.append(line)
        if "02_activations | activations:" in line:
            break
    kernels = psutil.Process(proc.pid).children(recursive=True)
    assert kernels  # the stage's kernel, in its own session
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(seen)[-2000:] + err[-2000:]
    assert err.strip().splitlines() == [
        f"interrupted during tiny 02_activations: finished stages and the work saved so far are kept in "
        f"{tmp_path / 'runs' / 'tiny'}; run the same command again to resume"]
    gone, alive = psutil.wait_procs(kernels, timeout=30)
    assert not alive  # the stage's kernel was shut down with it
