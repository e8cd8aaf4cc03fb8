"""The embedded model's training script, on a small slice: runs, saves a loadable model, is deterministic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from langneurons.base.manifest import MANIFEST, verify_manifest
from langneurons.base.paths import PROJECT_ROOT
from langneurons.model.training import TrainConfig, make_blocks
from langneurons.model.tiny import train_tokenizer

QUICK = "steps=6 max_paragraphs_per_language=8 vocab_size=600 d_model=32 layers=2 heads=4 ffn=64 batch_size=4"


def _train(out: Path) -> str:
    done = subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "train_tiny_model.py"), "--set", QUICK,
                           "--out", str(out)], capture_output=True, text=True, check=True)
    return done.stdout


@pytest.mark.slow
def test_training_script_quick_run_is_deterministic(tmp_path: Path):
    log = _train(tmp_path / "a")
    assert "final loss" in log
    _train(tmp_path / "b")
    assert verify_manifest(tmp_path / "a") == []
    def hashes(d: Path) -> list[str]:  # the record holds the wall time, which differs run to run
        return [line for line in (d / MANIFEST).read_text().splitlines() if "training_record" not in line]

    assert hashes(tmp_path / "a") == hashes(tmp_path / "b") and len(hashes(tmp_path / "a")) >= 4  # same weights
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "a")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "a")
    assert type(model).__name__ == "XGLMForCausalLM" and model.config.d_model == 32
    assert tokenizer.convert_ids_to_tokens(tokenizer("Hallo Welt")["input_ids"])[0] == "</s>"  # as XGLM
    (tmp_path / "a" / "config.json").write_text("{}")
    assert verify_manifest(tmp_path / "a") == ["config.json"]


def test_blocks_start_with_eos_and_hold_one_language():
    texts = {"en": ["one two three four five six seven"] * 3, "de": ["eins zwei drei vier fünf sechs"] * 3}
    tok = train_tokenizer([t for ts in texts.values() for t in ts], "xglm", 300)
    blocks = make_blocks(texts, tok, block_len=8)
    eos = tok.convert_tokens_to_ids("</s>")
    assert blocks.shape[1] == 8 and (blocks[:, 0] == eos).all()
    decoded = [tok.decode(b, skip_special_tokens=True) for b in blocks]
    assert all(("eins" in d or "zwei" in d or "drei" in d or "vier" in d or "sechs" in d) != ("one" in d or "two" in d or "three" in d or "four" in d or "six" in d or "seven" in d or "five" in d) for d in decoded)


@pytest.mark.parametrize("key, value", [("steps", "'100'"), ("stepz", "3")])
def test_bad_training_params(key, value):
    from langneurons.base.params import ParamsError, from_dict, parse_overrides
    import yaml

    data = yaml.safe_load((PROJECT_ROOT / "params" / "tiny_model.yaml").read_text()) | parse_overrides(f"{key}={value}")
    with pytest.raises(ParamsError):
        from_dict(TrainConfig, data)


def test_shipped_default_model_matches_manifest_and_loads():
    model_dir = PROJECT_ROOT / "models" / "tiny"
    assert verify_manifest(model_dir) == []
    assert sum(p.stat().st_size for p in model_dir.iterdir()) <= 10 * 2**20
    assert (model_dir / "model.safetensors").is_file()
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert type(model).__name__ == "XGLMForCausalLM"
    from langneurons.base.params import load_params
    from langneurons.model.units import find_linear_modules

    p = load_params("tiny")  # default profile resolves with its files present
    n_units = sum(m.width for m in find_linear_modules(model))
    assert n_units == 4608 and 2 * p.scoring.n_per_side <= n_units
