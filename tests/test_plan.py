"""`make plan`: exact unit counts from the shipped configs (offline), sizes, text counts, errors."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pandas as pd
import pytest
from transformers import AutoConfig

from langneurons.base import paths
from langneurons.run import plan
from langneurons.base.params import load_params
from langneurons.run.plan import PlanError, build_skeleton, format_plan, make_plan, plan_paragraph, shipped_config_path

# The paper's models: profile -> (hub id, units). The totals are facts of the architectures.
SHIPPED_UNITS = {
    "xglm-564M": ("facebook/xglm-564M", 221_184),
    "xglm-1.7B": ("facebook/xglm-1.7B", 442_368),
    "xglm-2.9B": ("facebook/xglm-2.9B", 884_736),
    "bloom-560m": ("bigscience/bloom-560m", 221_184),
    "bloom-1b7": ("bigscience/bloom-1b7", 442_368),
    "bloom-3b": ("bigscience/bloom-3b", 691_200),
    "llama-2-7b": ("meta-llama/Llama-2-7b-hf", 1_359_872),
    "llama-2-13b": ("meta-llama/Llama-2-13b-hf", 2_129_920),
    "gemma3-270m": ("google/gemma-3-270m", 124_416),  # not a paper model: 18 x (q 1,024, k 256, v 256, o 640, gate 2,048, up 2,048, down 640)
    "smollm2-135m": ("HuggingFaceTB/SmolLM2-135M-Instruct", 155_520),  # 30 x (q 576, k 192, v 192, o 576, gate 1,536, up 1,536, down 576)
}


def _no_network(*args, **kwargs):
    raise AssertionError("planning tried the network")


@pytest.fixture(scope="module")
def paper_plans() -> dict[str, plan.Plan]:
    """One plan per paper profile, built with every socket connection refused."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _no_network)
        return {name: make_plan(load_params(name, [], check_files=False), device="cpu") for name in SHIPPED_UNITS}


@pytest.mark.parametrize("profile", list(SHIPPED_UNITS))
def test_paper_models_have_exact_unit_totals_from_shipped_configs(paper_plans, profile):
    model_id, units = SHIPPED_UNITS[profile]
    result = paper_plans[profile]
    assert result.n_units == units
    assert f"units total: {units:,}" in format_plan(result)
    assert str(shipped_config_path(model_id).relative_to(paths.PROJECT_ROOT)) in result.config_source
    assert "shipped" in result.config_source


def _expected_kinds(config: dict) -> dict[str, int]:
    """Units per module kind implied by the config numbers (not by the unit finder)."""
    if config["model_type"] == "xglm":
        d, f, n = config["d_model"], config["ffn_dim"], config["num_layers"]
        per_block = {"self_attn.q_proj": d, "self_attn.k_proj": d, "self_attn.v_proj": d, "self_attn.out_proj": d,
                     "fc1": f, "fc2": d}
    elif config["model_type"] == "bloom":
        h, n = config["hidden_size"], config["n_layer"]
        per_block = {"self_attention.query_key_value": 3 * h, "self_attention.dense": h,
                     "mlp.dense_h_to_4h": 4 * h, "mlp.dense_4h_to_h": h}
    else:
        h, i, n = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
        per_block = {"self_attn.q_proj": h, "self_attn.k_proj": h, "self_attn.v_proj": h, "self_attn.o_proj": h,
                     "mlp.gate_proj": i, "mlp.up_proj": i, "mlp.down_proj": h}
    return {kind: width * n for kind, width in per_block.items()}


@pytest.mark.parametrize("profile", ["xglm-564M", "bloom-560m", "llama-2-7b"])
def test_units_per_kind_match_the_config(paper_plans, profile):
    config = json.loads(shipped_config_path(SHIPPED_UNITS[profile][0]).read_text())
    result = paper_plans[profile]
    assert {k.kind: k.units for k in result.unit_kinds} == _expected_kinds(config)
    assert {k.modules for k in result.unit_kinds} == {result.n_blocks}


def test_tiny_counts_units_and_weighs_its_weight_file():
    result = make_plan(load_params("tiny", [], check_files=False))
    weights = paths.PROJECT_ROOT / "models" / "tiny" / "model.safetensors"
    assert result.n_units == 4_608
    assert "models/tiny/config.json" in result.config_source
    assert result.download_exact and result.download_bytes == weights.stat().st_size
    assert "units total: 4,608" in format_plan(result)


def test_activation_matrix_size_is_texts_times_units_times_dtype(paper_plans):
    result = paper_plans["llama-2-13b"]
    assert (result.n_texts, result.texts_basis, result.storage_dtype) == (5_873, "released sets", "float16")
    assert result.matrix_bytes == 5_873 * 2_129_920 * 2
    assert "25.0 GB (23.3 GiB)" in format_plan(result)
    assert not result.download_exact and result.download_bytes == result.n_params * 2  # float16 checkpoint


def test_texts_come_from_a_prepared_run_when_there_is_one(tmp_path):
    p = load_params("tiny", [f"output_root={tmp_path}"], check_files=False)
    assert make_plan(p).texts_basis == "upper bound"
    (tmp_path / "tiny" / "data").mkdir(parents=True)
    pd.DataFrame({"text_id": range(7), "text": [f"t{i}" for i in range(7)], "lang": "en"}).to_parquet(
        tmp_path / "tiny" / "data" / "texts.parquet")
    result = make_plan(p)
    assert (result.n_texts, result.texts_basis) == (7, "exact")
    assert result.matrix_bytes == 7 * 4_608 * 4
    assert "texts: 7 (exact" in format_plan(result)


def test_texts_upper_bound_and_given():
    p = load_params("tiny", ["output_root=/nonexistent-langneurons-runs"], check_files=False)
    assert plan.count_texts(p) == (6 * (500 + 5 * 500), "upper bound")
    official = load_params("xglm-564M", ["languages=de,ja", "output_root=/nonexistent-langneurons-runs"],
                           check_files=False)
    assert plan.count_texts(official) == (2 * (500 + 5 * 500), "upper bound")
    assert make_plan(p, n_texts=100).n_texts == 100


def _offline_hub(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.\nCheck your connection.")

    monkeypatch.setattr(AutoConfig, "from_pretrained", refuse)


def test_unknown_hub_model_offline_fails_in_one_line(monkeypatch):
    _offline_hub(monkeypatch)
    p = load_params("xglm-564M", ["model.id=someone/not-a-paper-model"], check_files=False)
    with pytest.raises(PlanError) as err:
        make_plan(p)
    message = str(err.value)
    assert "\n" not in message
    assert "unreachable" in message and "params/model_configs" in message and "model.path" in message


def test_cli_exit_codes(monkeypatch, capsys):
    assert plan.main(["--profile", "tiny"]) == 0
    assert "units total: 4,608" in capsys.readouterr().out
    _offline_hub(monkeypatch)
    assert plan.main(["--profile", "xglm-564M", "--set", "model.id=someone/not-a-paper-model"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no config for 'someone/not-a-paper-model'") and err.count("\n") == 1
    assert plan.main(["--profile", "no-such-profile"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown profile")


def test_missing_model_path_is_a_plan_error(tmp_path):
    p = load_params("tiny", [f"model.path={tmp_path}"], check_files=False)
    with pytest.raises(PlanError, match="has no config.json"):
        make_plan(p)


def _row(text: str, stage: str) -> list[str]:
    return next(line.split() for line in text.splitlines() if line.strip().startswith(stage))


def test_planning_for_cuda_on_a_cpu_machine_fills_the_device_column():
    p = load_params("llama-2-13b", [], check_files=False)
    result = make_plan(p, device="cuda")
    text = format_plan(result)
    for stage in ("02_activations", "03_scoring", "05_intervention", "06_translation"):
        row = _row(text, stage)  # stage, host, unit, device, unit, time ...
        assert row[3] != "-" and float(row[3]) > 0, row
    assert _row(text, "01_data_prep")[3] == "-"
    weights = result.n_params * 2
    assert result.peak_device_bytes > weights and result.stages[1].host_bytes >= weights  # loads through the host
    cpu = make_plan(p, device="cpu")
    assert cpu.peak_device_bytes is None and _row(format_plan(cpu), "02_activations")[3] == "-"
    assert cpu.total_seconds > result.total_seconds
    paragraph = plan_paragraph(result)
    assert "\n" not in paragraph and "2,129,920 units" in paragraph and "GPU" in paragraph


def test_skeleton_holds_no_real_memory():
    config = AutoConfig.from_pretrained(str(shipped_config_path("meta-llama/Llama-2-13b-hf")))
    model = build_skeleton(config, "meta-llama/Llama-2-13b-hf")
    assert {param.device.type for param in model.parameters()} == {"meta"}
    assert {buffer.device.type for buffer in model.buffers()} <= {"meta"}


def test_shipped_configs_are_the_eight_paper_models_and_the_real_models():
    shipped = {f.name for f in Path(plan.CONFIGS_DIR).glob("*.json")}
    assert shipped == {shipped_config_path(model_id).name for model_id, _ in SHIPPED_UNITS.values()}


def test_a_gguf_profile_plans_the_quantized_file_not_float32_weights(tmp_path, monkeypatch):
    """Gemma's weights arrive as a 253 MB GGUF: once assembled, the plan gives its exact size; before,
    an upper bound says so. Activation memory counts the memory-mapped matrix (its pages are in the RSS)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    p = load_params("gemma3-270m", [], check_files=False)
    before = make_plan(p, device="cpu")
    assert not before.download_exact and "at most" in before.download_note and "make gemma" in before.download_note
    gguf = tmp_path / "langneurons" / "models" / "gguf" / p.model.gguf_file
    gguf.parent.mkdir(parents=True)
    gguf.write_bytes(b"x" * 12345)
    after = make_plan(p, device="cpu")
    assert after.download_exact and after.download_bytes == 12345 and gguf.name in after.download_note
    activations = next(s for s in after.stages if s.stage == "02_activations")
    assert activations.host_bytes > after.matrix_bytes + after.weights_bytes


def test_another_lape_protocol_adds_its_counting_pass_to_02():
    plain = make_plan(load_params("tiny", [], check_files=False), device="cpu")
    packed = make_plan(load_params("tiny", ["selection.lape.counting=packed"], check_files=False), device="cpu")
    budget = make_plan(load_params("tiny", ["selection.lape.source=hub", "selection.lape.max_tokens=1000000"],
                                   check_files=False), device="cpu")
    stage = lambda plan: next(s for s in plan.stages if s.stage == "02_activations")  # noqa: E731
    assert stage(packed).seconds == 2 * stage(plain).seconds and "counted for LAPE (packed" in stage(packed).work
    assert "~6,000,000 tokens counted for LAPE" in stage(budget).work


def test_07_memory_covers_a_perplexity_batchs_logits():
    """Notebook 07 scores held-out texts with logits for every position: on Gemma (262,144 words) that
    batch, not decoding, sets the stage's peak (6.3 GiB measured; the decoding term alone said 2.4 GiB)."""
    def peak_07(batch: int) -> tuple[int, int]:
        p = load_params("gemma3-270m", [f"comparison.batch_size={batch}"], check_files=False)
        result = make_plan(p, device="cpu")
        stages = {s.stage: s for s in result.stages}
        assert stages["07_ap_vs_lape"].host_bytes > stages["05_intervention"].host_bytes
        return stages["07_ap_vs_lape"].host_bytes, result.weights_bytes

    one_text_logits = 256 * 262_144 * 4  # activations.seq_len positions x vocabulary, float32
    peak16, weights = peak_07(16)
    assert peak16 > weights + 16 * one_text_logits
    assert peak_07(32)[0] - peak16 >= 16 * one_text_logits  # grows with the texts per batch
