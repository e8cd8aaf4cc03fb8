"""Figures 9-10 (beyond the paper): AP against LAPE, drawn from notebook 07's CSVs."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from langneurons.base.languages import language_name  # noqa: E402

COLORS = {"ap": "tab:red", "lape": "tab:green"}
LABELS = {"ap": "AP (top-k linear outputs)", "lape": "LAPE (FFN activations)"}


def plot_units(overlap: pd.DataFrame, dist: pd.DataFrame, title: str) -> plt.Figure:
    """Figure 9: units both methods share per language (vs chance), and where each method's units sit."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    ax = axes[0]
    if len(overlap):
        x = np.arange(len(overlap))
        ax.bar(x - 0.2, overlap["shared_percent"], 0.4, label="shared units (% of k)", color="tab:purple")
        ax.bar(x + 0.2, overlap["block_overlap_percent"], 0.4, label="same blocks (% overlap of layer shares)", color="0.6")
        chance = 100 * overlap["chance_shared"] / overlap["n"].where(overlap["n"] > 0)
        ax.scatter(x - 0.2, chance, marker="_", s=200, color="k", label="shared by chance", zorder=3)
        ax.set_xticks(x, [f"{language_name(lang)}\nk={n}" for lang, n in zip(overlap["language"], overlap["n"])], fontsize=7)
        ax.set_ylim(0, 100)
        ax.legend(fontsize=7)
    ax.set_ylabel("%")
    ax.set_title("overlap at matched size k")
    ax = axes[1]
    totals = dist.groupby(["method", "block", "depth"], as_index=False)["count"].sum()
    for method, part in totals.groupby("method", sort=False):
        share = 100 * part["count"] / max(part["count"].sum(), 1)
        ax.plot(part["depth"], share, marker="o", ms=4, color=COLORS.get(method), label=LABELS.get(method, method))
    ax.set_xlabel("relative depth (block / (blocks - 1))")
    ax.set_ylabel("share of the method's units (%, all languages)")
    ax.set_title("layer distribution")
    ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


PERCENT_TICKS = (0, 1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000)


def _ticks(top: float) -> list[int]:
    """The colour bar's % ticks up to log ratio `top`, each at least 6% of the bar above the last."""
    kept = [0]
    for t in PERCENT_TICKS[1:]:
        if np.log1p(t / 100) <= top and np.log1p(t / 100) - np.log1p(kept[-1] / 100) >= 0.06 * top:
            kept.append(t)
    return kept


def _short_percent(value: float) -> str:
    """A cell's label: 6,466% as 6.5k, so four digits fit a cell of a 6 x 6 heatmap."""
    return "" if np.isnan(value) else f"{value / 1000:.1f}k" if abs(value) >= 1000 else f"{round(value):d}"  # no "-0"


def _error(rates: pd.DataFrame, column: str) -> np.ndarray | None:
    """Bar error lengths from the table's 95% interval columns (none when the table has none)."""
    if f"{column}_low" not in rates.columns:
        return None
    return np.vstack([rates[column] - rates[f"{column}_low"], rates[f"{column}_high"] - rates[column]])


def plot_effects(deactivation: pd.DataFrame, rates: pd.DataFrame, title: str) -> plt.Figure:
    """Figure 10: perplexity change when each language's units are zeroed (one heatmap per method),
    and the target-language rate when they are forced to their median (with 95% intervals when the
    table has them).

    The heatmaps are coloured by the log ratio log(ppl / ppl_base), one scale for both methods, and
    labelled in %: on a linear % scale one +6,466% cell leaves every +3% to +300% cell white."""
    import seaborn as sns

    methods = list(dict.fromkeys(deactivation["method"])) if len(deactivation) else []
    fig, axes = plt.subplots(1, len(methods) + 1, figsize=(4.6 * (len(methods) + 1), 4.2), squeeze=False,
                             layout="constrained")
    top = max(float(deactivation["log_ppl_change"].max()), 0.1) if len(deactivation) else 1.0
    for ax, method in zip(axes[0], methods):  # one colour scale for both methods, so their heatmaps compare
        part = deactivation[deactivation["method"] == method]
        grid = part.pivot(index="deactivated", columns="evaluated", values="log_ppl_change")
        grid = grid.reindex(index=list(dict.fromkeys(part["deactivated"])), columns=list(dict.fromkeys(part["evaluated"])))
        labels = np.vectorize(_short_percent)(100 * (np.exp(grid.to_numpy(dtype=float)) - 1))
        sns.heatmap(grid, annot=labels, fmt="", cmap="Reds", vmin=0, vmax=top, cbar=False, ax=ax, square=True,
                    annot_kws={"fontsize": 7})
        ax.set_title(f"{method.upper()}: perplexity change (%)", fontsize=9)
        ax.set_xlabel("evaluated language")
        ax.set_ylabel("units zeroed of")
    if methods:
        ticks = _ticks(top)
        bar = fig.colorbar(plt.cm.ScalarMappable(norm=plt.Normalize(0, top), cmap="Reds"), ax=list(axes[0][:-1]),
                           shrink=0.8, ticks=np.log1p(np.array(ticks) / 100))
        bar.ax.set_yticklabels([f"+{t:,}%" for t in ticks], fontsize=7)
        bar.set_label("perplexity change (log scale)", fontsize=8)
    ax = axes[0][-1]
    if len(rates):
        langs = list(dict.fromkeys(rates["target"]))
        x = np.arange(len(langs))
        none = rates.drop_duplicates("target").set_index("target").reindex(langs)
        ax.bar(x - 0.27, none["none"], 0.27, yerr=_error(none, "none"), capsize=2, label="no intervention", color="0.6")
        for i, method in enumerate(dict.fromkeys(rates["method"])):
            forced = rates[rates["method"] == method].set_index("target").reindex(langs)
            ax.bar(x + i * 0.27, forced["forced"], 0.27, yerr=_error(forced, "forced"), capsize=2,
                   label=LABELS.get(method, method), color=COLORS.get(method))
        ax.set_xticks(x, [language_name(lang) for lang in langs], fontsize=7)
        ax.set_ylim(0, 118)  # room above 100% for the legend, clear of the bars and their intervals
        ax.set_yticks(range(0, 101, 20))
        ax.legend(fontsize=6, ncol=3, loc="upper center", columnspacing=0.8, handlelength=1.2)
    ax.set_ylabel("target-language rate (%)")
    ax.set_title("forcing at on_p50, matched k" + (" (95% intervals)" if "forced_low" in rates.columns else ""), fontsize=9)
    fig.suptitle(title)
    return fig
