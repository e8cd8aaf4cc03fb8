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


def plot_effects(deactivation: pd.DataFrame, rates: pd.DataFrame, title: str) -> plt.Figure:
    """Figure 10: perplexity change when each language's units are zeroed (one heatmap per method),
    and the target-language rate when they are forced to their median."""
    import seaborn as sns

    methods = list(dict.fromkeys(deactivation["method"])) if len(deactivation) else []
    fig, axes = plt.subplots(1, len(methods) + 1, figsize=(4.4 * (len(methods) + 1), 4.0), squeeze=False)
    top = float(100 * (np.exp(deactivation["log_ppl_change"].max()) - 1)) if len(deactivation) else 1.0
    for ax, method in zip(axes[0], methods):  # one colour scale for both methods, so their heatmaps compare
        part = deactivation[deactivation["method"] == method]
        grid = 100 * (np.exp(part.pivot(index="deactivated", columns="evaluated", values="log_ppl_change")) - 1)
        order = list(dict.fromkeys(part["deactivated"]))
        grid = grid.reindex(index=order, columns=list(dict.fromkeys(part["evaluated"])))
        sns.heatmap(grid, annot=True, fmt=".0f", cmap="Reds", vmin=0, vmax=max(top, 1.0), cbar=False, ax=ax, square=True,
                    annot_kws={"fontsize": 7})
        ax.set_title(f"{method.upper()}: perplexity change (%)", fontsize=9)
        ax.set_xlabel("evaluated language")
        ax.set_ylabel("units zeroed of")
    ax = axes[0][-1]
    if len(rates):
        langs = list(dict.fromkeys(rates["target"]))
        x = np.arange(len(langs))
        none = rates.drop_duplicates("target").set_index("target").reindex(langs)["none"]
        ax.bar(x - 0.27, none, 0.27, label="no intervention", color="0.6")
        for i, method in enumerate(dict.fromkeys(rates["method"])):
            forced = rates[rates["method"] == method].set_index("target").reindex(langs)["forced"]
            ax.bar(x + i * 0.27, forced, 0.27, label=LABELS.get(method, method), color=COLORS.get(method))
        ax.set_xticks(x, [language_name(lang) for lang in langs], fontsize=7)
        ax.set_ylim(0, 100)
        ax.legend(fontsize=7)
    ax.set_ylabel("target-language rate (%)")
    ax.set_title("forcing at on_p50, matched k", fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
