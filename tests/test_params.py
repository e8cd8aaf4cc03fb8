"""Params: every profile resolves; bad keys, types, values and files fail fast with the fix named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from langneurons.base.params import ParamsError, available_profiles, load_params, params_from_dict, parse_overrides, save_params
from langneurons.run.pipeline import STAGES, fetch_released_files, main
from langneurons.data.release_files import ReleaseError

PAPER_PROFILES = {"xglm-564M", "xglm-1.7B", "xglm-2.9B", "bloom-560m", "bloom-1b7", "bloom-3b", "llama-2-7b", "llama-2-13b"}


def test_all_profiles_resolve():
    assert PAPER_PROFILES | {"tiny"} <= set(available_profiles())
    for profile in available_profiles():
        p = load_params(profile, check_files=False)
        assert p.profile == profile and (p.model.id or p.model.path)
    assert load_params("llama-2-13b", check_files=False).activations.storage_dtype == "float16"


def test_overrides_apply_with_types(official_dir: Path):
    p = load_params("tiny", ["scoring.n_per_side=7", "languages=de,ja", f"data.official_path={official_dir}",
                             "generation.temperature=1", "model.path=null", "model.id=org/model",
                             "intervention.sweep=230"], check_files=False)
    assert p.scoring.n_per_side == 7 and p.languages == ["de", "ja"]
    assert p.generation.temperature == 1.0 and isinstance(p.generation.temperature, float)
    assert p.model.path is None and p.model.id == "org/model"
    assert p.intervention.sweep == [230]
    q = load_params("tiny", ["translation.tasks={wmt: [de]}", "scoring.n_per_side=3"], check_files=False)
    assert q.translation.tasks == {"wmt": ["de"]}  # a mapping param is replaced, not merged
    assert q.scoring.unit_chunk == load_params("tiny", check_files=False).scoring.unit_chunk  # sections merge
    assert parse_overrides("a.b=1 c=x") == {"a": {"b": 1}, "c": "x"}


def test_resolved_params_round_trip(tmp_path: Path):
    p = load_params("tiny", ["scoring.n_per_side=3"], check_files=False)
    save_params(p, tmp_path / "params.yaml")
    assert params_from_dict(yaml.safe_load((tmp_path / "params.yaml").read_text()), check_files=False) == p


@pytest.mark.parametrize("overrides, message", [
    (["scoring.n_per_sid=5"], "unknown param 'scoring.n_per_sid'.*did you mean 'scoring.n_per_side'"),
    (["scoring.n_per_side='1000'"], "'scoring.n_per_side'.*wrong type"),
    (["scoring.n_per_side=0"], "'scoring.n_per_side' = 0 must be > 0"),
    (["languages=de,xx"], "unknown language.*xx"),
    (["data.source=web"], "'data.source'.*official, hub, bundled"),
    (["activations.storage_dtype=int8"], "storage_dtype"),
    (["model.dtype=fp8"], "model.dtype"),
    (["scoring"], "not key=value"),
    (["model=3"], "must be a mapping"),
])
def test_bad_params_fail_fast(overrides, message):
    with pytest.raises(ParamsError, match=message):
        load_params("tiny", overrides, check_files=False)


def test_missing_files_fail_fast(tmp_path: Path, official_dir: Path):
    with pytest.raises(ParamsError, match=r"model.path .* \(no config.json\)"):
        load_params("tiny", [f"model.path={tmp_path / 'nowhere'}", f"data.official_path={official_dir}"])
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(ParamsError, match="data.official_path .* lacks"):
        load_params("tiny", [f"model.path={tmp_path / 'm'}", "data.source=official", f"data.official_path={tmp_path}"])


def test_unknown_profile_and_cli_errors(capsys):
    with pytest.raises(ParamsError, match="unknown profile 'nope'.*tiny"):
        load_params("nope")
    assert main(["--profile", "nope"]) == 2
    assert "unknown profile" in capsys.readouterr().err
    assert main(["--profile", "tiny", "--set", "seed=abc"]) == 2
    assert main(["--profile", "xglm-564M", "--stages", "99_nothing"]) == 2


def test_cli_check_prints_resolved_params(capsys):
    overrides = "scoring.n_per_side=5 data.source=hub translation.tasks={}"  # no files needed: runs without ../shared
    assert main(["--profile", "xglm-564M", "--set", overrides, "--check"]) == 0
    out = yaml.safe_load(capsys.readouterr().out)
    assert out["model"]["id"] == "facebook/xglm-564M" and out["scoring"]["n_per_side"] == 5


def test_missing_translation_files_fail_or_skip(tmp_path: Path, capsys):
    missing = f"translation.official_path={tmp_path / 'none'}"
    for profile in ("xglm-564M", "tiny"):  # a folder of your own that is not there is always an error
        with pytest.raises(ParamsError, match="translation.official_path .* does not exist"):
            load_params(profile, [missing])
    unreachable = f"release.url={tmp_path / 'no-mirror'}"  # released pairs that cannot be fetched:
    with pytest.raises(ReleaseError, match="make data"):  # a paper profile stops before any stage runs
        fetch_released_files(load_params("xglm-564M", [unreachable, "data.source=hub"]), STAGES)
    tiny = load_params("tiny", [unreachable])  # the offline default skips the translation stage
    assert tiny.translation.skip_if_missing
    assert fetch_released_files(tiny, STAGES) == tuple(s for s in STAGES if s != "06_translation")
    assert "skipping 06_translation" in capsys.readouterr().out
    assert fetch_released_files(load_params("tiny", [unreachable, "translation.tasks={}"]), STAGES) == STAGES


