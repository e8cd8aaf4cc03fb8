"""AP against LAPE on the same model, data and tests (notebook 07).

The two methods pick units in different places: AP any linear map's output (site linear_out),
LAPE the FFN activation (site ffn_act). They are compared at matched sizes: for language L with
k LAPE units (or `comparison.n_units` when set), AP's set is its top-k units by AP — the units
that respond most to L, the counterpart of LAPE's "active on L's tokens" (the paper's bottom
units, which respond least to L, have no LAPE counterpart).

How units of the two sites meet:
- by block: every unit sits in one decoder block, so both sets have a layer distribution, and
  the share of each set per block can be compared (`block_overlap`: the sum over blocks of the
  smaller of the two shares, 100% = the same layer distribution);
- by unit, through the FFN: LAPE's unit j of a block's activation reads unit feeder_unit of the
  linear map that feeds it (fc1 / dense_h_to_4h / c_fc / gate_proj, found by ffn_act.find_act_modules).
  An AP unit that is such a feeder unit is mapped to that FFN activation unit; an AP unit anywhere
  else (attention, the FFN's output map, an up_proj) has no LAPE counterpart. `shared` counts
  AP units whose mapped FFN unit LAPE also selected; `chance` is what two random sets of these
  sizes would share.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

METHODS = ("ap", "lape")
OVERLAP_COLUMNS = ["language", "n", "ap_units_feeding_ffn", "shared", "shared_percent", "chance_shared",
                   "block_overlap_percent"]


def matched_sets(ap_scores: dict[str, pd.DataFrame], lape_sets: dict[str, pd.DataFrame],
                 n_units: int | None) -> dict[str, dict[str, pd.DataFrame]]:
    """method -> language -> its units at the matched size (AP: top-k by AP, stable; LAPE: lowest entropy first)."""
    out: dict[str, dict[str, pd.DataFrame]] = {m: {} for m in METHODS}
    for lang, lape in lape_sets.items():
        k = len(lape) if n_units is None else min(n_units, len(lape))
        out["lape"][lang] = lape.head(k).reset_index(drop=True)
        if lang in ap_scores:
            scores = ap_scores[lang]
            top = np.argsort(-scores["ap"].to_numpy(), kind="stable")[:k]
            rows = scores.iloc[top].reset_index(drop=True)
            rows.insert(0, "rank", np.arange(k))
            rows.insert(0, "side", "top")
            out["ap"][lang] = rows
    return out


def ffn_keys(ap_units: pd.DataFrame, act_units: pd.DataFrame) -> np.ndarray:
    """For each AP unit, the FFN activation column it feeds (-1 where it feeds none)."""
    feeders = act_units[act_units["feeder_unit"] >= 0]
    lookup = pd.Series(feeders["column"].to_numpy(),
                       index=pd.MultiIndex.from_arrays([feeders["feeder_layer"], feeders["feeder_unit"]]))
    keys = pd.MultiIndex.from_arrays([ap_units["layer"], ap_units["unit"].astype("int64")])
    return lookup.reindex(keys).fillna(-1).to_numpy(dtype=np.int64)


def overlap_table(matched: dict[str, dict[str, pd.DataFrame]], act_units: pd.DataFrame, n_blocks: int) -> pd.DataFrame:
    """Per language: sizes, AP units that feed an FFN activation, units shared, chance, and block overlap
    (no rows when only one method selected units)."""
    n_ffn = len(act_units)
    rows = []
    for lang, lape in matched.get("lape", {}).items():
        ap = matched.get("ap", {}).get(lang)
        if ap is None:
            continue
        mapped = ffn_keys(ap, act_units)
        visible = mapped[mapped >= 0]
        shared = len(set(visible.tolist()) & set(lape["column"].tolist()))
        share_ap = np.bincount(ap["block"], minlength=n_blocks) / max(len(ap), 1)
        share_lape = np.bincount(lape["block"], minlength=n_blocks) / max(len(lape), 1)
        rows.append({"language": lang, "n": len(lape), "ap_units_feeding_ffn": len(visible), "shared": shared,
                     "shared_percent": 100 * shared / len(lape) if len(lape) else float("nan"),
                     "chance_shared": len(visible) * len(lape) / n_ffn,
                     "block_overlap_percent": 100 * np.minimum(share_ap, share_lape).sum() if len(lape) else float("nan")})
    return pd.DataFrame(rows, columns=OVERLAP_COLUMNS)


def layer_distributions(matched: dict[str, dict[str, pd.DataFrame]], n_blocks: int) -> pd.DataFrame:
    """Units per (method, language, block), zeros included, with relative depth."""
    frames = [sel[["block"]].assign(method=method, language=lang)
              for method, by_lang in matched.items() for lang, sel in by_lang.items()]
    languages = list(dict.fromkeys(lang for by_lang in matched.values() for lang in by_lang))
    counts = pd.concat(frames, ignore_index=True).groupby(["method", "language", "block"]).size() if frames else pd.Series(dtype=int)
    full = pd.MultiIndex.from_product([list(matched), languages, range(n_blocks)], names=["method", "language", "block"])
    table = counts.reindex(full, fill_value=0).rename("count").reset_index()
    table["depth"] = table["block"] / max(n_blocks - 1, 1)
    return table


def rate_table(rates: pd.DataFrame) -> pd.DataFrame:
    """Per (method, language): target-language rate without and with the method's units forced, and the rise."""
    none = rates[rates["condition"] == "none"].set_index("target")["target_rate"]
    forced = rates[rates["condition"] != "none"].rename(columns={"condition": "method", "target_rate": "forced"})
    table = forced.assign(none=forced["target"].map(none))
    table["rise"] = table["forced"] - table["none"]
    return table[["method", "target", "n_units", "none", "forced", "rise"]].reset_index(drop=True)
