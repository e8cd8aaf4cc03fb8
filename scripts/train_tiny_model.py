"""Train the embedded default model (tiny XGLM) on the bundled corpus and write it with a manifest.

    python scripts/train_tiny_model.py                       # params/tiny_model.yaml -> models/tiny
    python scripts/train_tiny_model.py --set steps=20 --out /tmp/m   # quick check

Deterministic on CPU: same params, same torch build -> same weights. The manifest lists the
SHA-256 of every file so a user can check that the shipped weights are the ones trained here.
"""

import argparse
from pathlib import Path

import yaml

from langneurons.base.manifest import write_manifest
from langneurons.base.params import from_dict, parse_overrides
from langneurons.base.paths import PARAMS_DIR, resolve
from langneurons.model.training import TrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(PARAMS_DIR / "tiny_model.yaml"))
    ap.add_argument("--set", default="", help='overrides, e.g. "steps=20 max_paragraphs_per_language=5"')
    ap.add_argument("--out", default="models/tiny", help="output directory (relative = project root)")
    args = ap.parse_args()
    data = yaml.safe_load(Path(args.params).read_text()) | parse_overrides(args.set)
    cfg: TrainConfig = from_dict(TrainConfig, data)
    out = resolve(args.out)
    record = train(cfg, out)
    write_manifest(out)
    print(f"wrote {out}: final loss {record['final_loss']}, {record['train_seconds']} s")


if __name__ == "__main__":
    main()
