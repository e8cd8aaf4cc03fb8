"""Models the benchmarks run on: the default trained tiny XGLM and tiny random paper families."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from _common import ROOT
from langneurons.data.corpus import sentences
from langneurons.base.languages import LANGUAGES
from langneurons.model.tiny import build_model, train_tokenizer

# Random models a little wider than the test defaults, so per-call overhead does not dominate entirely.
RANDOM_SIZES = {"d_model": 64, "layers": 4, "heads": 4, "ffn": 256}


def load(name: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str]:
    """'default' = models/tiny (trained XGLM); 'xglm'/'bloom'/'llama' = tiny random model of that family."""
    torch.manual_seed(0)
    if name == "default":
        path = ROOT / "models" / "tiny"
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        return model, AutoTokenizer.from_pretrained(path), "models/tiny (trained XGLM, 4 blocks, d=128)"
    texts = [s for lang in LANGUAGES for s in sentences(lang)]
    tokenizer = train_tokenizer(texts, name, vocab_size=512)
    model = build_model(name, tokenizer, seed=0, **RANDOM_SIZES)
    desc = f"tiny random {name} (vocab 512, " + ", ".join(f"{k}={v}" for k, v in RANDOM_SIZES.items()) + ")"
    return model, tokenizer, desc
