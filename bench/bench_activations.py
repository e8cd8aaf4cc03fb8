"""Activation collection: ours (unique texts, batched, mean-pooled on the fly) vs the original protocol.

The original code runs every row of every language's labelled list (positives + negatives, so a
text shared by several lists, or listed twice, is run again) one text per forward pass, with hooks
copying each linear layer's full [tokens x features] output to CPU numpy and mean-pooling after.
Both produce the same per-list [rows x units] matrices; the wall-time ratio for that is the headline.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # collect_activations' progress bar would flood the table

import langneurons  # noqa: F401  (first: pins the CPU kernels before torch loads, as in every run)
import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, finish, print_table, timed  # noqa: E402
from _models import load  # noqa: E402

from langneurons.model.activations import collect_activations  # noqa: E402
from langneurons.data.corpus import sentences  # noqa: E402
from langneurons.base.languages import LANGUAGES  # noqa: E402
from langneurons.model.units import find_linear_modules  # noqa: E402

SEQ_LEN = 256  # params/common.yaml (paper: 256)


def build_lists(n_pos: int, pool_factor: int, seed: int) -> dict[str, list[str]]:
    """Per language: n_pos positives + n_pos negatives from each other language, drawn with replacement
    from a per-language pool (sentences under SEQ_LEN UTF-8 bytes) of pool_factor * n_pos sentences, so lists share texts and repeat some."""
    rng = np.random.default_rng(seed)
    fits = lambda s: len(s.encode()) < SEQ_LEN  # noqa: E731  (byte-level BPE: <= 1 token per byte, so no text is dropped)
    pools = {lang: [s for s in sentences(lang) if fits(s)][: pool_factor * n_pos] for lang in LANGUAGES}
    draw = lambda lang: [pools[lang][i] for i in rng.integers(0, len(pools[lang]), n_pos)]  # noqa: E731
    return {lang: draw(lang) + [t for other in LANGUAGES if other != lang for t in draw(other)] for lang in LANGUAGES}


class FullOutputHooks:
    """The original hooks: copy every linear layer's whole output to CPU numpy on each forward."""

    def __init__(self, model: torch.nn.Module):
        by_path = dict(model.named_modules())
        self.targets = [by_path[m.path] for m in find_linear_modules(model)]
        self.outputs: list[np.ndarray | None] = [None] * len(self.targets)
        self.handles = [mod.register_forward_hook(self._hook(i)) for i, mod in enumerate(self.targets)]

    def _hook(self, i: int):
        def hook(_m: torch.nn.Module, _inp: tuple, out: torch.Tensor) -> None:
            self.outputs[i] = out.detach().cpu().numpy().copy()  # [1, tokens, features]
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def baseline(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, lists: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """One text per forward over every list row; mean over tokens after the forward, in numpy."""
    hooks = FullOutputHooks(model)
    out = {}
    try:
        for lang, texts in lists.items():
            rows = []
            for text in texts:
                enc = tokenizer(text, return_tensors="pt")
                with torch.no_grad():
                    model(**enc)
                rows.append(np.concatenate([o[0].mean(axis=0) for o in hooks.outputs]))
            out[lang] = np.stack(rows)
    finally:
        hooks.remove()
    return out


def ours(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, lists: dict[str, list[str]], batch_size: int, tmp: Path
) -> dict[str, np.ndarray]:
    """collect_activations on the unique texts, then each list's rows gathered from the matrix."""
    unique = list(dict.fromkeys(t for texts in lists.values() for t in texts))
    index = {t: i for i, t in enumerate(unique)}
    path = collect_activations(model, tokenizer, unique, tmp, SEQ_LEN, batch_size)
    matrix = np.load(path, mmap_mode="r")
    return {lang: np.asarray(matrix[[index[t] for t in texts]]) for lang, texts in lists.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test, a few seconds)")
    ap.add_argument("--models", default="default,xglm,bloom,llama")
    ap.add_argument("--n-pos", type=int, default=None, help="positives per list (= negatives per other language)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=32, help="params/profiles/tiny.yaml uses 32")
    args = ap.parse_args()
    # 200 per list: ~3,100 unique texts, half the released sets. Batches hold texts of one length (no
    # padding, for exact bits), and with few texts most lengths are rare, so small runs batch poorly.
    n_pos = args.n_pos or (2 if args.quick else 200)
    repeats = args.repeats or (1 if args.quick else 3)
    pool_factor = 3
    lists = build_lists(n_pos, pool_factor, seed=0)
    n_rows = sum(len(t) for t in lists.values())
    n_unique = len({t for texts in lists.values() for t in texts})
    rows, records = [], []
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in args.models.split(","):
        model, tokenizer, desc = load(name)
        assert all(len(x) <= SEQ_LEN for x in tokenizer(sum(lists.values(), []))["input_ids"]), "a text exceeds SEQ_LEN"
        with tempfile.TemporaryDirectory(dir=RESULTS) as tmp:
            ours(model, tokenizer, {"warm": lists["en"][:4]}, args.batch_size, Path(tmp) / "warm")  # warm-up
            baseline(model, tokenizer, {"warm": lists["en"][:4]})
            b_s, b_all, b_out = timed(lambda: baseline(model, tokenizer, lists), repeats)
            o_s, o_all, o_out = timed(lambda: ours(model, tokenizer, lists, args.batch_size, Path(tmp) / "acts"), repeats)
        diff = max(float(np.abs(b_out[k] - o_out[k]).max()) for k in lists)
        n_units = next(iter(o_out.values())).shape[1]
        rec = {
            "model": name, "description": desc, "units": n_units, "rows": n_rows, "unique_texts": n_unique,
            "baseline_s": b_s, "ours_s": o_s, "baseline_rows_per_s": n_rows / b_s, "ours_unique_texts_per_s": n_unique / o_s,
            "wall_ratio": b_s / o_s, "per_text_ratio": (n_unique / o_s) / (n_rows / b_s), "max_abs_diff": diff,
            "baseline_times_s": b_all, "ours_times_s": o_all,
        }
        records.append(rec)
        rows.append({k: rec[k] for k in ("model", "units", "rows", "unique_texts", "baseline_s", "ours_s",
                                         "baseline_rows_per_s", "ours_unique_texts_per_s", "wall_ratio",
                                         "per_text_ratio", "max_abs_diff")})
        del model
    print(f"activations: 6 lists x ({n_pos} pos + 5x{n_pos} neg) = {n_rows} rows, {n_unique} unique texts; "
          f"ours batch {args.batch_size}; median of {repeats}")
    print_table(rows)
    finish("activations", args.quick, {
        "sizes": {"n_pos": n_pos, "pool_factor": pool_factor, "rows": n_rows, "unique": n_unique,
                                       "batch_size": args.batch_size, "seq_len": SEQ_LEN},
        "repeats": repeats, "target_ratio": 5, "target_max_abs_diff": 1e-4, "results": records,
    })


if __name__ == "__main__":
    main()
