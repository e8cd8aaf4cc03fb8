"""A stage's work as numbered parts, each saved as its own file: what lets it resume and run in shards.

A part is one independent piece of a stage (a generation condition, a translation task and language,
a deactivated language) that makes a table. Part i is saved as <parts_dir>/<i:04d>.parquet when it
finishes; a later run reads it back instead of making it again. The order of the parts is fixed by
the stage, so the assembled table is the same whether the parts were made in one process, resumed
after an interruption, or made by several cluster jobs at once (run/shard_parts.py): part i does
not depend on which process made it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from langneurons.base.atomic import read_finished_part, write_json, write_parquet
from langneurons.base.faults import crash_point


@dataclass(frozen=True)
class Part:
    label: str  # what it is, for progress and messages, e.g. "both de N=1000"
    make: Callable[[], pd.DataFrame]
    size: int = 1  # units of progress (samples, prompts) it stands for


def part_file(parts_dir: Path, index: int) -> Path:
    return parts_dir / f"{index:04d}.parquet"


LABELS = "parts.json"


def check_labels(parts: list[Part], parts_dir: Path) -> None:
    """The first run over a parts folder records what each part is; a later run (a resume, another
    cluster job) that numbers the work differently stops here instead of mixing up the parts."""
    labels = [part.label for part in parts]
    path = parts_dir / LABELS
    if path.is_file():
        recorded = json.loads(path.read_text())
        if recorded != labels:
            raise RuntimeError(f"the parts in {parts_dir} were made for another list of work ({len(recorded)} parts, "
                               f"first {recorded[:1]}) than this one ({len(labels)}, first {labels[:1]}): delete the folder")
    else:
        write_json(path, labels)


def missing_parts(parts_dir: Path, indices: Iterable[int]) -> list[int]:
    """The parts among `indices` with no readable finished file."""
    return [i for i in indices if read_finished_part(part_file(parts_dir, i)) is None]


def run_parts(parts: list[Part], parts_dir: Path | None, indices: Iterable[int] | None = None, bar=None,
              crash_as: str | None = None) -> dict[int, pd.DataFrame]:
    """Make (or read back) the parts at `indices` (default: all), in order; returns index -> table.

    `bar`: a tqdm bar advanced by each part's size; `crash_as`: the fault-injection point counted
    after each part made here (base/faults.py)."""
    if parts_dir is not None:
        check_labels(parts, parts_dir)
    out = {}
    for i in (range(len(parts)) if indices is None else indices):
        part = parts[i]
        path = part_file(parts_dir, i) if parts_dir is not None else None
        frame = read_finished_part(path)
        if frame is None:
            if bar is not None:
                bar.set_postfix_str(f"part {i + 1}/{len(parts)}: {part.label}")
            frame = part.make()
            if path is not None:
                write_parquet(path, frame)
            if crash_as is not None:
                crash_point(crash_as, i + 1)
        out[i] = frame
        if bar is not None:
            bar.update(part.size)
    return out
