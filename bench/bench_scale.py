"""Scale: scoring a [6,000 texts x 2,000,000 units] float16 matrix (~24 GB on disk) in bounded memory.

2,000,000 units is Llama-2 13B's count (1.4M-2.1M for the paper's models). The benchmark writes a
synthetic matrix in the activation stage's file format (a .npy file), then scores it for six
languages with `langneurons.scoring.selection.score_units` in a separate process, whose peak resident memory
(ru_maxrss: anonymous memory plus mapped file pages) is the number reported. Target: <= 4 GiB.
A sample of units is checked against scikit-learn afterwards.

Layout as the paper's sets: texts are 1,000 per language; each language's set is 500 of its own
texts (positives) + 500 from each of the other five (negatives).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, finish  # noqa: E402

from langneurons.model.activations import read_columns  # noqa: E402
from langneurons.scoring.selection import LabelledRows, score_units  # noqa: E402

N_LANGS = 6


def write_matrix(path: Path, n_texts: int, n_units: int, seed: int, rows_per_block: int = 16) -> float:
    """Stream a random float16 [texts x units] .npy to disk without holding it; returns seconds.

    Values: standard normal, plus a shift for each language's own texts on a few units, so that
    some units are language-specific (the scores are not all near chance).
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    shift_units = rng.choice(n_units, size=(N_LANGS, max(1, n_units // 1000)), replace=False)
    per_lang = n_texts // N_LANGS
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f2", "fortran_order": False, "shape": (n_texts, n_units)})
        for start in range(0, n_texts, rows_per_block):
            stop = min(start + rows_per_block, n_texts)
            block = rng.standard_normal((stop - start, n_units), dtype=np.float32)
            langs = np.minimum(np.arange(start, stop) // per_lang, N_LANGS - 1)
            for i, lang in enumerate(langs):
                block[i, shift_units[lang]] += 1.5
            f.write(block.astype(np.float16).tobytes())
    tmp.rename(path)
    return time.perf_counter() - t0


def language_sets(n_texts: int, n_pos: int, seed: int) -> dict[str, LabelledRows]:
    """Per language: n_pos own texts (positives) + n_pos from each other language (negatives)."""
    rng = np.random.default_rng(seed)
    per_lang = n_texts // N_LANGS
    texts = [np.arange(lang * per_lang, (lang + 1) * per_lang) for lang in range(N_LANGS)]
    sets = {}
    for lang in range(N_LANGS):
        parts = [rng.choice(texts[other], n_pos, replace=False) for other in [lang] + [o for o in range(N_LANGS) if o != lang]]
        labels = np.zeros(n_pos * N_LANGS, dtype=bool)
        labels[:n_pos] = True
        sets[f"lang{lang}"] = LabelledRows(np.concatenate(parts), labels)
    return sets


def score(path: Path, chunk: int, n_check: int, seed: int) -> dict:
    """Run in the child process: score every unit, check a sample against sklearn, report memory."""
    n_texts, n_units = np.load(path, mmap_mode="r").shape
    n_pos = n_texts // N_LANGS // 2
    sets = language_sets(n_texts, n_pos, seed)
    t0 = time.perf_counter()
    stats = score_units(path, sets, chunk)
    wall = time.perf_counter() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    check_units = np.sort(np.random.default_rng(seed).choice(n_units, n_check, replace=False))
    max_diff = 0.0
    for u in check_units:
        column = read_columns(path, int(u), int(u) + 1)[:, 0]
        for lang, lr in sets.items():
            expected = average_precision_score(lr.labels, column[lr.rows].astype(np.float64))
            max_diff = max(max_diff, abs(expected - stats[lang]["ap"].iloc[u]))
    max_ap = {lang: float(s["ap"].max()) for lang, s in stats.items()}
    return {"score_wall_s": wall, "peak_rss_mib": peak_mib, "units_per_s": n_units / wall,
            "checked_units": int(n_check), "max_abs_diff_vs_sklearn": max_diff, "max_ap": max_ap}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="600 x 20,000 (a few seconds)")
    ap.add_argument("--texts", type=int, default=6000)
    ap.add_argument("--units", type=int, default=2_000_000)
    ap.add_argument("--chunk", type=int, default=4096, help="units scored at once (scoring.unit_chunk)")
    ap.add_argument("--dir", type=Path, default=ROOT / "runs" / "bench_scale", help="where the matrix file goes")
    ap.add_argument("--keep", action="store_true", help="keep the matrix file (reused by the next run)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--score-only", type=Path, help=argparse.SUPPRESS)  # the child process
    args = ap.parse_args()
    if args.score_only:
        print(json.dumps(score(args.score_only, args.chunk, 20, args.seed)))
        return
    n_texts, n_units = (600, 20_000) if args.quick else (args.texts, args.units)
    n_pos = n_texts // N_LANGS // 2
    args.dir.mkdir(parents=True, exist_ok=True)
    path = args.dir / f"matrix_{n_texts}x{n_units}_f16.npy"
    write_s = None
    if not path.is_file():
        need, free = n_texts * n_units * 2, shutil.disk_usage(args.dir).free
        if free < need + 2**30:
            print(f"skipped: the matrix needs {need / 1e9:.1f} GB and {args.dir} has {free / 1e9:.1f} GB free "
                  "(choose another --dir, or fewer --units)")
            return
        print(f"writing {path} ({need / 1e9:.1f} GB)...", flush=True)
        write_s = write_matrix(path, n_texts, n_units, args.seed)
    try:
        child = subprocess.run([sys.executable, __file__, "--score-only", str(path), "--chunk", str(args.chunk),
                                "--seed", str(args.seed)], capture_output=True, text=True)
        if child.returncode != 0:
            sys.exit(f"scoring failed:\n{child.stderr[-3000:]}")
        result = json.loads(child.stdout.strip().splitlines()[-1])
        children_peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
    gib = result["peak_rss_mib"] / 1024
    print(f"matrix [{n_texts:,} x {n_units:,}] float16, {path.stat().st_size / 1e9 if path.exists() else n_texts * n_units * 2 / 1e9:.1f} GB; "
          f"{N_LANGS} languages, {n_pos} positives + {5 * n_pos} negatives each; chunk {args.chunk:,} units")
    if write_s is not None:
        print(f"writing the synthetic matrix: {write_s:,.0f} s (not part of the measurement)")
    print(f"scoring: {result['score_wall_s']:,.1f} s ({result['units_per_s']:,.0f} units/s for all 6 languages), "
          f"peak RSS {result['peak_rss_mib']:,.0f} MiB = {gib:.2f} GiB (target <= 4 GiB: {'met' if gib <= 4 else 'NOT met'})")
    print(f"check: {result['checked_units']} random units x {N_LANGS} languages vs sklearn, max |diff| "
          f"{result['max_abs_diff_vs_sklearn']:.3g}; max AP per language {result['max_ap']}")
    finish("scale", args.quick, {
        "sizes": {"n_texts": n_texts, "n_units": n_units, "dtype": "float16", "n_languages": N_LANGS,
                  "n_pos": n_pos, "n_neg": 5 * n_pos, "unit_chunk": args.chunk, "file_bytes": n_texts * n_units * 2 + 128},
        "write_s": write_s, **result, "children_peak_rss_mib": children_peak_mib, "target_peak_rss_gib": 4,
    })


if __name__ == "__main__":
    main()
