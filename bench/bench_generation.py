"""Unconditional sampling under forcing: ours (sample_texts, batched model.generate) vs one sample at a time.

Baseline: a hand-written sampling loop, one sample at a time, WITH a KV cache (past_key_values):
the fair straightforward baseline (a loop without cache would also redo the whole prefix each step).
Both run under the same force_units hooks (top units of one language fixed to their on_p50), plain
temperature-0.8 sampling (no top-k/top-p), 64 new tokens, stopping at EOS. The hand loop is checked
against model.generate with greedy decoding (same tokens) so the baseline is the same computation.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import langneurons  # noqa: F401  (first: pins the CPU kernels before torch loads, as in every run)
import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, print_table, timed  # noqa: E402
from _models import load  # noqa: E402

from langneurons.model.activations import MeanPoolHooks, mean_responses, pad_id_of, tokenize  # noqa: E402
from langneurons.scoring.ap import expertise  # noqa: E402
from langneurons.data.corpus import sentences  # noqa: E402
from langneurons.control.generation import _eos_id, sample_texts, start_ids  # noqa: E402
from langneurons.control.intervention import Spec, force_units, forcing_spec  # noqa: E402
from langneurons.base.languages import LANGUAGES  # noqa: E402
from langneurons.scoring.selection import scores_table, select_units  # noqa: E402
from langneurons.model.units import find_blocks, find_linear_modules, units_table  # noqa: E402

TEMPERATURE = 0.8


def make_spec(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, target: str, n_pos: int, share: float) -> Spec:
    """Real selected units: score on n_pos target sentences vs n_pos/5 of each other language, force the top side."""
    texts = sentences(target)[:n_pos] + [s for o in LANGUAGES if o != target for s in sentences(o)[: n_pos // 5]]
    labels = torch.tensor([True] * n_pos + [False] * (len(texts) - n_pos))
    modules = find_linear_modules(model)
    hooks = MeanPoolHooks(modules, model, torch.device("cpu"))
    ids = tokenize(tokenizer, texts, 256).ids
    with hooks.attached():
        x = torch.cat([mean_responses(model, hooks, ids[i:i + 32], pad_id_of(tokenizer)).clone() for i in range(0, len(ids), 32)])
    stats = pd.DataFrame({k: v.numpy() for k, v in expertise(x, labels).items()})
    table = scores_table(units_table(modules, len(find_blocks(model)[1])), stats)
    selection = select_units(table, max(1, int(share * len(table))))
    return forcing_spec(selection[selection["side"] == "top"], "on_p50")


def eos_set(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    eos = _eos_id(model, tokenizer)
    return set(eos) if isinstance(eos, list) else {int(eos)} if eos is not None else set()


@torch.inference_mode()
def hand_sample(model: PreTrainedModel, prompt: list[int], max_new: int, eos: set[int], greedy: bool = False) -> list[int]:
    """One sample: feed the prompt, then one token per step with the KV cache; softmax(logits / T) sampling."""
    cur = torch.tensor([prompt], dtype=torch.long)
    past = None
    out: list[int] = []
    for _ in range(max_new):
        o = model(input_ids=cur, past_key_values=past, use_cache=True)
        past = o.past_key_values
        logits = o.logits[:, -1].float()
        nxt = logits.argmax(-1, keepdim=True) if greedy else torch.multinomial(torch.softmax(logits / TEMPERATURE, -1), 1)
        tok = int(nxt)
        out.append(tok)
        if tok in eos:
            break
        cur = nxt
    return out


def baseline(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, n: int, max_new: int, seed: int) -> list[str]:
    prompt, eos = start_ids(tokenizer), eos_set(model, tokenizer)
    torch.manual_seed(seed)
    return [tokenizer.decode(hand_sample(model, prompt, max_new, eos), skip_special_tokens=True) for _ in range(n)]


def greedy_agrees(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, max_new: int) -> bool:
    """The hand loop computes what model.generate computes (checked greedily, under the same forcing)."""
    prompt, eos = start_ids(tokenizer), eos_set(model, tokenizer)
    ours_ids = model.generate(
        input_ids=torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long), do_sample=False,
        max_new_tokens=max_new, eos_token_id=_eos_id(model, tokenizer), pad_token_id=pad_id_of(tokenizer),
        top_k=None, top_p=None, temperature=None,
    )[0, len(prompt):].tolist()
    return hand_sample(model, prompt, max_new, eos, greedy=True) == ours_ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test, a few seconds)")
    ap.add_argument("--models", default="default,xglm")
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args()
    if args.quick:
        n_base, n_ours, batch, max_new, repeats = 2, 8, 8, 8, args.repeats or 1
    else:
        n_base, n_ours, batch, max_new, repeats = 20, 100, 100, 64, args.repeats or 3
    rows, records = [], []
    for name in args.models.split(","):
        model, tokenizer, desc = load(name)
        spec = make_spec(model, tokenizer, "de", n_pos=60, share=0.05)
        n_forced = sum(len(u) for u, _ in spec.values())
        with force_units(model, spec):
            agrees = greedy_agrees(model, tokenizer, max_new)
            baseline(model, tokenizer, 1, 4, seed=0)  # warm-up
            b_s, b_all, b_txt = timed(lambda: baseline(model, tokenizer, n_base, max_new, seed=0), repeats)
            o_s, o_all, o_txt = timed(lambda: sample_texts(model, tokenizer, n_ours, max_new, TEMPERATURE, 0, 1.0, 0, batch), repeats)
        rec = {
            "model": name, "description": desc, "forced_units": n_forced, "baseline_texts": n_base, "ours_texts": n_ours,
            "batch": batch, "baseline_s": b_s, "ours_s": o_s, "baseline_texts_per_s": n_base / b_s,
            "ours_texts_per_s": n_ours / o_s, "ratio": (n_ours / o_s) / (n_base / b_s), "greedy_check": agrees,
            "baseline_mean_chars": float(np.mean([len(t) for t in b_txt])), "ours_mean_chars": float(np.mean([len(t) for t in o_txt])),
            "baseline_times_s": b_all, "ours_times_s": o_all,
        }
        records.append(rec)
        rows.append({k: rec[k] for k in ("model", "forced_units", "baseline_texts", "ours_texts", "baseline_s", "ours_s",
                                         "baseline_texts_per_s", "ours_texts_per_s", "ratio", "greedy_check",
                                         "baseline_mean_chars", "ours_mean_chars")})
    print(f"generation: {max_new} new tokens, T={TEMPERATURE}, no top-k/top-p, under force_units (top 5% 'de' units "
          f"at on_p50); baseline = hand loop with KV cache, 1 sample at a time; ours batch {batch}; median of {repeats}")
    print_table(rows)
    finish("generation", args.quick, {
        "sizes": {"max_new_tokens": max_new, "temperature": TEMPERATURE, "batch": batch},
        "baseline": "hand-written loop, one sample at a time, KV cache via past_key_values",
        "repeats": repeats, "target_ratio": 10, "results": records,
    })


if __name__ == "__main__":
    main()
