"""Where the language-specific units sit, and how much the languages share them (paper §4.1).

Both analyses work on the selections written by the scoring stage (top-N and bottom-N units by
AP per language), and on LAPE's sets alike (one side, `lape`; its units are FFN activations). Depth is the block index divided by (blocks - 1), so models with different
numbers of blocks can be drawn on one axis; the paper reports that the units sit mainly in the
first and last few blocks, and that languages share fewer than 5% of them.
"""

from __future__ import annotations

from itertools import product
from pathlib import Path

import pandas as pd

from langneurons.base.atomic import write_csv

SIDES = ("top", "bottom")


def sides_of(selections: dict[str, pd.DataFrame]) -> list[str]:
    """AP's top and bottom, then any other side present (LAPE's sets have one side, `lape`)."""
    present = {side for sel in selections.values() for side in sel["side"]}
    return [s for s in SIDES if s in present] + sorted(present - set(SIDES)) if present else list(SIDES)


def layer_distribution(selections: dict[str, pd.DataFrame], n_blocks: int) -> pd.DataFrame:
    """Count of selected units per (language, side, block), zeros included; with relative depth."""
    frames = [sel.assign(language=lang) for lang, sel in selections.items()]
    sel = pd.concat(frames, ignore_index=True)
    counts = sel.groupby(["language", "side", "block"]).size()
    full = pd.MultiIndex.from_product([list(selections), sides_of(selections), range(n_blocks)],
                                      names=["language", "side", "block"])
    table = counts.reindex(full, fill_value=0).rename("count").reset_index()
    table["depth"] = table["block"] / max(n_blocks - 1, 1)
    return table


def kind_distribution(selections: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Count of selected units per (language, side, module kind): which layer types carry language.

    A fused output is split by its part, e.g. `self_attn.qkv_proj[q]` for Phi-3's query units, so it
    reads like Llama's separate `self_attn.q_proj`."""
    frames = [sel.assign(language=lang) for lang, sel in selections.items()]
    sel = pd.concat(frames, ignore_index=True)
    part = sel["part"].fillna("") if "part" in sel.columns else pd.Series("", index=sel.index)
    sel = sel.assign(kind=sel["kind"].where(part == "", sel["kind"] + "[" + part + "]"))
    return sel.pivot_table(index=["language", "side"], columns="kind", values="unit", aggfunc="size", fill_value=0)


def overlap(selections: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """|A ∩ B| of two languages' top-N sets (and bottom-N sets), as count and percent of N."""
    sides = sides_of(selections)
    keys = {
        (lang, side): set(zip(sel.loc[sel.side == side, "layer"], sel.loc[sel.side == side, "unit"]))
        for lang, sel in selections.items() for side in sides
    }
    rows = []
    for side, a, b in product(sides, selections, selections):
        n = len(keys[(a, side)])
        shared = len(keys[(a, side)] & keys[(b, side)])
        rows.append({"side": side, "language_a": a, "language_b": b, "shared": shared,
                     "percent_of_n": 100 * shared / n if n else float("nan")})
    return pd.DataFrame(rows)


def max_offdiagonal_overlap(table: pd.DataFrame) -> float:
    """The largest overlap between two different languages, in percent of N (paper: < 5%)."""
    off = table[table.language_a != table.language_b]
    return float(off["percent_of_n"].max()) if len(off) else 0.0


ANALYSIS_TABLES = ("layer_distribution", "layer_kinds", "overlap")


def analyse(selections: dict[str, pd.DataFrame], n_blocks: int) -> dict[str, pd.DataFrame]:
    """All tables of this stage: per-block counts, per-kind counts, pairwise overlap."""
    return {"layer_distribution": layer_distribution(selections, n_blocks),
            "layer_kinds": kind_distribution(selections).reset_index(), "overlap": overlap(selections)}


def write_analysis(tables: dict[str, pd.DataFrame], folder: Path) -> None:
    for name in ANALYSIS_TABLES:
        write_csv(folder / f"{name}.csv", tables[name])


def read_analysis(folder: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_csv(folder / f"{name}.csv") for name in ANALYSIS_TABLES}
