"""The paper's claims, one by one, beside what a run shows (the report's first table).

Each row states what Kojima et al. found on their eight models and the same quantity computed from
this run's figure tables; a claim the run does not support is reported as such (it is a result).
Rows whose tables are missing (a stage not run) are left out.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from langneurons.run.stages import Fig

PAPER_NONE_RATE = "1-7%"  # the paper's mean target-language rate without forcing (make paper-numbers: de/fr/es/zh/ja 1/6/7/4/4%)
PAPER_BOTH_RATE = "66-70%"  # with 1000 + 1000 units forced (67/66/70/68/68% over its eight models)


def _depth(figures: Path) -> dict | None:
    f = figures / Fig.LAYER_DISTRIBUTION
    if not f.is_file():
        return None
    dist = pd.read_csv(f)
    total = dist["count"].sum()
    first = dist[dist.depth <= 1 / 3]["count"].sum() / total
    last = dist[dist.depth > 2 / 3]["count"].sum() / total
    blocks = dist.drop_duplicates("block")
    first_uniform, last_uniform = (blocks.depth <= 1 / 3).mean(), (blocks.depth > 2 / 3).mean()
    block0 = dist[dist.block == dist.block.min()]["count"].sum() / total
    # the first layers "hold many" when their third, or the first block alone, beats a uniform spread twice over
    early = first > first_uniform or block0 > 2 / len(blocks)
    above = int(early) + int(last > last_uniform)
    return {"claim": "Language-specific units sit mostly in the first and last layers (Figure 1)",
            "paper": "mainly in the first and last few layers, across languages and models",
            "this run": f"{100 * first:.0f}% in the first third of the blocks ({100 * block0:.0f}% in the first block alone), "
                        f"{100 * last:.0f}% in the last third, {100 * (1 - first - last):.0f}% in the middle "
                        f"(a uniform spread: {100 * first_uniform:.0f}%, {100 / len(blocks):.0f}%, {100 * last_uniform:.0f}%)",
            "holds": {2: "yes", 1: "partly"}.get(above, "no")}


def _overlap(figures: Path) -> dict | None:
    f = figures / Fig.OVERLAP
    if not f.is_file():
        return None
    shared = pd.read_csv(f)
    off = shared[shared.language_a != shared.language_b]
    largest = off.loc[off.percent_of_n.idxmax()]
    return {"claim": "Different languages use different units (Figure 2)",
            "paper": "under 5% of N shared between any two languages",
            "this run": f"largest overlap {largest.percent_of_n:.1f}% of N ({largest.side}, "
                        f"{largest.language_a}-{largest.language_b}); mean {off.percent_of_n.mean():.1f}%",
            "holds": "yes" if largest.percent_of_n < 5 else "no"}


def _forcing(figures: Path, n_per_side: int) -> list[dict]:
    f = figures / Fig.MAIN_RATES
    if not f.is_file():
        return []
    main = pd.read_csv(f)
    per_lang = ", ".join(f"{r.target} {r.none:.0f}→{r.both:.0f}%" for r in main.itertuples())
    rows = [{"claim": f"Forcing a language's top-{n_per_side} + bottom-{n_per_side} units makes unconditional "
                      "generation write in it (Figure 3; the paper forces 1000 + 1000)",
             "paper": f"target-language rate {PAPER_NONE_RATE} without, {PAPER_BOTH_RATE} with (means of eight models)",
             "this run": f"mean {main.none.mean():.0f}% → {main.both.mean():.0f}% ({per_lang})",
             "holds": "yes" if main.both.mean() - main.none.mean() >= 20 else "partly" if main.rise.mean() > 0 else "no"}]
    sweep = figures / Fig.TARGET_RATES
    if sweep.is_file():
        rates = pd.read_csv(sweep, keep_default_na=False)
        both = rates[(rates.condition == "both") & (rates.n_top == rates.n_bottom)]
        by_n = both.groupby("n_top")["target_rate"].mean()
        text = ", ".join(f"N={n:,}: {r:.0f}%" for n, r in by_n.items())
        rows.append({"claim": "How the effect depends on the number of forced units (Figure 4)",
                     "paper": "rate against N per side, 1 to 100,000 (its released outputs' numbers: make paper-numbers)",
                     "this run": f"mean target rate by N per side: {text}",
                     "holds": "-"})
        sides = main[["top", "bottom", "both"]].mean()
        rows.append({"claim": "Top units, bottom units, or both (Figure 5)",
                     "paper": "top-1000 only, bottom-1000 only and both compared (its numbers: make paper-numbers)",
                     "this run": f"mean rate: top only {sides.top:.0f}%, bottom only {sides.bottom:.0f}%, both {sides.both:.0f}%",
                     "holds": "-"})
    return rows


def _translation(figures: Path) -> dict | None:
    f = figures / Fig.TRANSLATION
    if not f.is_file():
        return None
    tr = pd.read_csv(f)
    none, both = tr[tr.condition == "none"], tr[tr.condition == "both"]
    return {"claim": "Forcing the target's units turns a translation prompt's answers into the target language (Figure 6)",
            "paper": "answers' language and BLEU without vs with the target's top-1000 + bottom-1000 forced",
            "this run": f"mean target rate {none.target_rate.mean():.0f}% → {both.target_rate.mean():.0f}%, "
                        f"mean BLEU {none.bleu.mean():.1f} → {both.bleu.mean():.1f} ({len(none)} task-language pairs)",
            "holds": "yes" if both.target_rate.mean() > none.target_rate.mean() + 10 else
                     "partly" if both.target_rate.mean() > none.target_rate.mean() else "no"}


def _ap_vs_lape(figures: Path) -> list[dict]:
    rows = []
    overlap, summary = figures / Fig.AP_LAPE_OVERLAP, figures / Fig.AP_LAPE_SUMMARY
    if overlap.is_file():
        o = pd.read_csv(overlap)
        rows.append({"claim": "Beyond the paper: AP and LAPE pick the same units? (Figure 9)",
                     "paper": "(not in the paper)",
                     "this run": f"mean {o.shared_percent.mean():.1f}% of each language's units shared "
                                 f"(chance {100 * (o.chance_shared / o.n).mean():.2f}%)",
                     "holds": "-"})
    if summary.is_file():
        s = pd.read_csv(summary).set_index("method")
        text = "; ".join(f"{m}: perplexity +{r['ppl_change_diagonal_%']:.1f}% on its language vs "
                         f"+{r['ppl_change_off_diagonal_%']:.1f}% on others when zeroed, forcing rise "
                         f"{r['mean_rate_rise_points']:+.0f} points" for m, r in s.iterrows())
        rows.append({"claim": "Beyond the paper: which method's units are more language-specific? (Figure 10)",
                     "paper": "(not in the paper)", "this run": text, "holds": "-"})
    return rows


def claims_table(figures: Path, n_per_side: int) -> pd.DataFrame:
    """One row per claim whose tables this run has: claim, the paper's finding, this run's, holds."""
    rows = [r for r in (_depth(figures), _overlap(figures)) if r]
    rows += _forcing(figures, n_per_side)
    rows += [r for r in (_translation(figures),) if r]
    rows += _ap_vs_lape(figures)
    return pd.DataFrame(rows, columns=["claim", "paper", "this run", "holds"])
