"""The paper's claims, one by one, beside what a run shows (the report's first table).

Each row states what Kojima et al. found on their eight models and the same quantity computed from
this run's figure tables; a claim the run does not support is reported as such (it is a result).
Rates are shares of ~100 samples, so a claim about them is decided from 95% intervals, not from
points: "yes" where every language's interval of the difference lies above 0, "partly (k of n)"
where some do, "no" where every one lies below 0, and "not shown" where the intervals do not decide.
The paper's own numbers come from `make paper-numbers` (paper_figures/paper/), not from constants.
Rows whose tables are missing (a stage not run) are left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from langneurons.base.proportions import wilson
from langneurons.comparison.summary import claim_text
from langneurons.scoring.overlap_reference import overlap_reference_summary
from langneurons.scoring.stability import stability_summary
from langneurons.run.stages import Fig

PAPER_MEANS = "mean_rates.csv"  # written by make paper-numbers into <figures_root>/paper/


def verdict(low: np.ndarray, high: np.ndarray) -> str:
    """What the intervals of a difference (one per language or pair) say about "it rises"."""
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    shown, n = int((low > 0).sum()), len(low)
    if n and shown == n:
        return "yes"
    if shown:
        return f"partly ({shown} of {n})"
    if n and (high < 0).all():
        return "no"
    return "not shown"


def _pct(x: float) -> str:
    return f"{x:.0f}%"


def _interval(low: float, high: float) -> str:
    return f"[{round(low) + 0:.0f}, {round(high) + 0:.0f}]"  # + 0: no "-0"


def _pooled(rows: pd.DataFrame) -> str:
    """Mean rate over languages with the Wilson interval of all their samples pooled."""
    hits, n = int(rows["hits"].sum()), int(rows["n"].sum())
    low, high = wilson(hits, n)
    return f"{100 * hits / n:.0f}% {_interval(100 * float(low), 100 * float(high))}"


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
                        f"(a uniform spread would put {100 * first_uniform:.0f}% in the first third, "
                        f"{100 / len(blocks):.0f}% in the first block, {100 * last_uniform:.0f}% in the last third)",
            "holds": {2: "yes", 1: "partly"}.get(above, "no")}


def _overlap(figures: Path) -> dict | None:
    f = figures / Fig.OVERLAP
    if not f.is_file():
        return None
    shared = pd.read_csv(f)
    off = shared[shared.language_a != shared.language_b]
    largest = off.loc[off.percent_of_n.idxmax()]
    text = (f"largest overlap {largest.percent_of_n:.1f}% of N ({largest.side}, "
            f"{largest.language_a}-{largest.language_b}); mean {off.percent_of_n.mean():.1f}%")
    holds = "yes" if largest.percent_of_n < 5 else "no"
    reference = figures / Fig.OVERLAP_REFERENCE
    if reference.is_file():
        table = pd.read_csv(reference)
        text += ". Reference (one-vs-rest AP all but rules overlap out): " + overlap_reference_summary(table)
        without = table["without_pair_percent_top"].max()
        if holds == "yes" and without == without and without >= 5:  # NaN: not computed
            holds = "partly (only with the other language among the negatives)"
    return {"claim": "Different languages use different units (Figure 2)",
            "paper": "under 5% of N shared between any two languages", "this run": text, "holds": holds}


def _stability(figures: Path) -> dict | None:
    f = figures / Fig.STABILITY
    if not f.is_file():
        return None
    return {"claim": "Beyond the paper: another half of the texts selects the same units",
            "paper": "(not in the paper)", "this run": stability_summary(pd.read_csv(f)), "holds": "-"}


def _paper_forcing(paper_dir: Path | None) -> str:
    """The paper's mean rates without and with forcing (non-English targets), from make paper-numbers."""
    f = paper_dir / PAPER_MEANS if paper_dir is not None else None
    if f is None or not f.is_file():
        return "target-language rate without vs with forcing (run `make paper-numbers` for the paper's numbers)"
    means = pd.read_csv(f)
    means = means[means.target != "en"]
    text = (f"target-language rate {means.none.min():.0f}-{means.none.max():.0f}% without, "
            f"{means.both.min():.0f}-{means.both.max():.0f}% with (de/fr/es/zh/ja, means of {int(means.models.max())} models")
    if "both_low" in means.columns:
        text += f"; pooled 95% intervals within [{means.none_low.min():.0f}, {means.none_high.max():.0f}] and " \
                f"[{means.both_low.min():.0f}, {means.both_high.max():.0f}]"
    return text + ")"


def _fluency_text(figures: Path, n_per_side: int) -> str:
    f = figures / Fig.FLUENCY
    if not f.is_file():
        return ""
    fl = pd.read_csv(f)
    none = fl[fl.condition == "none"]
    both = fl[(fl.condition == "both") & (fl.n_top == n_per_side)]
    if none.empty or both.empty:
        return ""
    return (f"; fluency: degenerate texts {none.degenerate.iloc[0]:.0f}% without, {both.degenerate.mean():.0f}% forced "
            f"(mean over languages), median perplexity under the unforced model {none.median_ppl.iloc[0]:.0f} → "
            f"{both.median_ppl.median():.0f}")


def _forcing(figures: Path, n_per_side: int, paper_dir: Path | None) -> list[dict]:
    f = figures / Fig.MAIN_RATES
    if not f.is_file():
        return []
    main = pd.read_csv(f)
    has_intervals = "rise_low" in main.columns
    per_lang = ", ".join(
        f"{r.target} {r.none:.0f}→{r.both:.0f}%" + (f" (rise {_interval(r.rise_low, r.rise_high)})" if has_intervals else "")
        for r in main.itertuples())
    rows = [{"claim": f"Forcing a language's top-{n_per_side} + bottom-{n_per_side} units makes unconditional "
                      "generation write in it (Figure 3; the paper forces 1000 + 1000)",
             "paper": _paper_forcing(paper_dir),
             "this run": f"mean {main.none.mean():.0f}% → {main.both.mean():.0f}% ({per_lang}; 95% intervals)"
                         + _fluency_text(figures, n_per_side),
             "holds": verdict(main.rise_low, main.rise_high) if has_intervals else "not shown (no intervals: rerun 05)"}]
    if "random" in main.columns:
        per_lang = ", ".join(f"{r.target} {r.random:.0f}% vs {r.both:.0f}% (difference {_interval(r.over_random_low, r.over_random_high)})"
                             for r in main.itertuples())
        rows.append({"claim": f"... and more than forcing as many random units of the same blocks (a baseline the paper "
                              "does not have)",
                     "paper": "(not in the paper)",
                     "this run": f"mean {main.random.mean():.0f}% with random units vs {main.both.mean():.0f}% with the "
                                 f"language's ({per_lang})",
                     "holds": verdict(main.over_random_low, main.over_random_high)})
    sweep = figures / Fig.TARGET_RATES
    if sweep.is_file():
        rates = pd.read_csv(sweep, keep_default_na=False)
        both = rates[(rates.condition == "both") & (rates.n_top == rates.n_bottom)]
        if "hits" in both.columns:
            parts = []
            for n, rows_n in both.groupby("n_top"):
                flag = " (all units)" if "all_units" in rows_n.columns and rows_n["all_units"].astype(str).eq("True").any() else ""
                parts.append(f"N={n:,}{flag}: {_pooled(rows_n)}")
            text = ", ".join(parts)
        else:
            text = ", ".join(f"N={n:,}: {r:.0f}%" for n, r in both.groupby("n_top")["target_rate"].mean().items())
        rows.append({"claim": "How the effect depends on the number of forced units (Figure 4)",
                     "paper": "rate against N per side, 1 to 100,000 (its released outputs' numbers: make paper-numbers)",
                     "this run": f"mean target rate by N per side, with the 95% interval of the pooled samples: {text}",
                     "holds": "-"})
        picks = {"top only": rates.condition == "top", "bottom only": rates.condition == "bottom",
                 "both": (rates.condition == "both") & (rates.n_top == n_per_side)}
        if "hits" in rates.columns:
            text = ", ".join(f"{name} {_pooled(rates[mask])}" for name, mask in picks.items() if mask.any())
        else:
            sides = main[["top", "bottom", "both"]].mean()
            text = f"top only {sides.top:.0f}%, bottom only {sides.bottom:.0f}%, both {sides.both:.0f}%"
        rows.append({"claim": "Top units, bottom units, or both (Figure 5)",
                     "paper": "top-1000 only, bottom-1000 only and both compared (its numbers: make paper-numbers)",
                     "this run": f"mean rate: {text}", "holds": "-"})
    return rows


def _translation(figures: Path) -> dict | None:
    f = figures / Fig.TRANSLATION
    if not f.is_file():
        return None
    tr = pd.read_csv(f)
    none, both = tr[tr.condition == "none"], tr[tr.condition == "both"]
    text = (f"mean target rate {none.target_rate.mean():.0f}% → {both.target_rate.mean():.0f}%, "
            f"mean BLEU {none.bleu.mean():.1f} → {both.bleu.mean():.1f} ({len(none)} task-language pairs)")
    if "content_rate" not in tr.columns:
        return {"claim": "Forcing the target's units turns a translation prompt's answers into the target language (Figure 6)",
                "paper": "answers' language and BLEU without vs with the target's top-1000 + bottom-1000 forced",
                "this run": text, "holds": "not shown (no intervals: rerun 06)"}
    from langneurons.base.proportions import newcombe

    keys = ["task", "target"]
    pair = none.merge(both, on=keys, suffixes=("_none", "_both"))
    k0 = np.round(pair.content_rate_none * pair.n_none / 100)
    k1 = np.round(pair.content_rate_both * pair.n_both / 100)
    low, high = newcombe(k0, pair.n_none, k1, pair.n_both)
    text += (f"; without answers that only name a language: {none.content_rate.mean():.0f}% → "
             f"{both.content_rate.mean():.0f}%, the rise's 95% interval above 0 for {int((low > 0).sum())} of {len(pair)} pairs")
    return {"claim": "Forcing the target's units turns a translation prompt's answers into the target language (Figure 6)",
            "paper": "answers' language and BLEU without vs with the target's top-1000 + bottom-1000 forced",
            "this run": text, "holds": verdict(low, high)}


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
        rows.append({"claim": "Beyond the paper: which method's units are more language-specific? (Figure 10)",
                     "paper": "(not in the paper)", "this run": claim_text(pd.read_csv(summary)), "holds": "-"})
    return rows


def claims_table(figures: Path, n_per_side: int, paper_dir: Path | None = None) -> pd.DataFrame:
    """One row per claim whose tables this run has: claim, the paper's finding, this run's, holds.
    `paper_dir`: make paper-numbers' folder (paper_figures/paper/), for the paper's numbers."""
    rows = [r for r in (_depth(figures), _overlap(figures), _stability(figures)) if r]
    rows += _forcing(figures, n_per_side, paper_dir)
    rows += [r for r in (_translation(figures),) if r]
    rows += _ap_vs_lape(figures)
    return pd.DataFrame(rows, columns=["claim", "paper", "this run", "holds"])
