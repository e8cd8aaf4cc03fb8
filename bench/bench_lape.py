"""What LAPE's statistics add to the activation pass: collect_activations with and without ActProbObserver.

LAPE's counts (tokens on which each FFN activation unit is > 0, per language) and the per-text mean
of those units are gathered in the forward passes that already run for AP, so the cost is the
extra hooks, the counting and a second, smaller matrix on disk. Both runs use the same texts,
model and batch size in one process; the ratio (with / without) is the headline.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import langneurons  # noqa: F401  (first: pins the CPU kernels before torch loads, as in every run)
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, finish, print_table, timed  # noqa: E402
from _models import load  # noqa: E402

from langneurons.data.corpus import sentences  # noqa: E402
from langneurons.base.languages import LANGUAGES  # noqa: E402
from langneurons.model.activations import collect_activations  # noqa: E402
from langneurons.model.lape_pass import FFN_MATRIX_FILE, ActProbObserver  # noqa: E402

SEQ_LEN = 256


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test, a few seconds)")
    ap.add_argument("--models", default="default,xglm,bloom,llama")
    ap.add_argument("--per-language", type=int, default=None, help="texts per language")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    per_language = args.per_language or (8 if args.quick else 300)
    repeats = args.repeats or (1 if args.quick else 3)
    texts, langs = [], []
    for lang in LANGUAGES:
        picked = [s for s in sentences(lang) if len(s.encode()) < SEQ_LEN][:per_language]
        texts += picked
        langs += [lang] * len(picked)
    rows, records = [], []
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in args.models.split(","):
        model, tokenizer, desc = load(name)
        with tempfile.TemporaryDirectory(dir=RESULTS) as tmp:
            def run(observe: bool, out: str) -> Path:
                observers = [ActProbObserver(model, langs)] if observe else []
                return collect_activations(model, tokenizer, texts, Path(tmp) / out, SEQ_LEN, args.batch_size,
                                           observers=observers)

            run(True, "warm")
            plain_s, plain_all, plain = timed(lambda: run(False, "plain"), repeats)
            lape_s, lape_all, with_lape = timed(lambda: run(True, "lape"), repeats)
            same = bool(np.array_equal(np.load(plain), np.load(with_lape)))  # the AP matrix is untouched
            ffn_bytes = (Path(tmp) / "lape" / FFN_MATRIX_FILE).stat().st_size
            matrix_bytes = plain.stat().st_size
        rec = {"model": name, "description": desc, "texts": len(texts), "without_s": plain_s, "with_lape_s": lape_s,
               "time_ratio": lape_s / plain_s, "ffn_matrix_bytes": ffn_bytes, "ap_matrix_bytes": matrix_bytes,
               "disk_ratio": (matrix_bytes + ffn_bytes) / matrix_bytes, "ap_matrix_unchanged": same,
               "without_times_s": plain_all, "with_times_s": lape_all}
        records.append(rec)
        rows.append({k: rec[k] for k in ("model", "texts", "without_s", "with_lape_s", "time_ratio", "disk_ratio",
                                         "ap_matrix_unchanged")})
        del model
    print(f"LAPE counts in the activation pass: {len(texts)} texts ({per_language} per language), "
          f"batch {args.batch_size}; median of {repeats}")
    print_table(rows)
    finish("lape", args.quick, {"sizes": {"per_language": per_language, "texts": len(texts), "batch_size": args.batch_size},
                                "repeats": repeats, "results": records})


if __name__ == "__main__":
    main()
