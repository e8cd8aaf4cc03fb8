"""Paper figures: drawn from saved results, written as PNG and PDF into paper_figures/<profile>/."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen needed; notebooks still display the returned figure
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from langneurons.base.atomic import atomic_path  # noqa: E402
from langneurons.base.languages import language_name  # noqa: E402
from langneurons.control.language_rates import main_rates  # noqa: E402


def save_figure(fig: plt.Figure, out_dir: Path, name: str) -> list[Path]:
    """Save `fig` as <name>.png and <name>.pdf (atomically) and return the paths."""
    written = []
    for ext in ("png", "pdf"):
        path = out_dir / f"{name}.{ext}"
        with atomic_path(path) as tmp:
            # No creation date in the files: the same results give byte-identical figures.
            metadata = {"CreationDate": None} if ext == "pdf" else {}
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight", metadata=metadata)
        written.append(path)
    return written


def plot_ap_distribution(
    scores_by_lang: dict[str, pd.DataFrame], n_per_side: int, chance: dict[str, float], title: str
) -> plt.Figure:
    """Histogram of unit AP per language, with the top-N / bottom-N cut-offs and chance level.

    Chance AP is the share of positives (1/6 for the paper's sets): a unit that knows nothing
    about the language scores about that; language-specific units sit far out in either tail.
    """
    langs = list(scores_by_lang)
    cols = min(3, len(langs))
    rows = int(np.ceil(len(langs) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, lang in zip(axes.flat, langs):
        ap = np.sort(scores_by_lang[lang]["ap"].to_numpy())
        ax.hist(ap, bins=60, range=(0.0, 1.0), color="0.55")
        ax.set_yscale("log")
        ax.axvline(ap[-n_per_side], color="tab:red", lw=1, label=f"top-{n_per_side} cut-off")
        ax.axvline(ap[n_per_side - 1], color="tab:blue", lw=1, label=f"bottom-{n_per_side} cut-off")
        ax.axvline(chance[lang], color="k", lw=1, ls="--", label="chance (share of positives)")
        ax.set_title(f"{language_name(lang)} ({lang})")
        ax.set_xlabel("average precision")
    for ax in list(axes.flat)[len(langs):]:
        ax.axis("off")
    axes.flat[0].set_ylabel("units")
    axes.flat[0].legend(fontsize=7, loc="upper center")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_layer_distribution(dist: pd.DataFrame, n_per_side: int, title: str) -> plt.Figure:
    """Figure 1: per language, selected units per block against relative depth, top and bottom."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
    for ax, side in zip(axes, ("top", "bottom")):
        for lang, part in dist[dist.side == side].groupby("language", sort=False):
            ax.plot(part["depth"], part["count"], marker="o", ms=3, label=language_name(lang))
        ax.set_title(f"{side}-{n_per_side} units by AP")
        ax.set_xlabel("relative depth (block / (blocks - 1))")
    axes[0].set_ylabel("units in block")
    axes[1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_overlap(table: pd.DataFrame, title: str) -> plt.Figure:
    """Figure 2: heatmaps of shared units between languages (percent of N), top and bottom."""
    import seaborn as sns

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, side in zip(axes, ("top", "bottom")):
        grid = table[table.side == side].pivot(index="language_a", columns="language_b", values="percent_of_n")
        order = list(dict.fromkeys(table["language_a"]))
        grid = grid.loc[order, order]
        sns.heatmap(grid, annot=True, fmt=".1f", vmin=0, vmax=100, cmap="Blues", cbar=False, ax=ax, square=True)
        ax.set_title(f"{side} units shared (% of N)")
        ax.set_xlabel("")
        ax.set_ylabel("")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _bars(ax: plt.Axes, table: pd.DataFrame, series: list[tuple[str, str]], languages: list[str]) -> None:
    """Grouped bars: one group per language, one bar per (column, label) series, each with its 95%
    interval (<column>_low, <column>_high) as an error bar where the table has it."""
    width = 0.8 / len(series)
    x = np.arange(len(languages))
    rows = table.set_index("target").reindex(languages)
    for i, (column, label) in enumerate(series):
        values = rows[column].to_numpy(dtype=float)
        err = None
        if f"{column}_low" in rows.columns:
            err = np.vstack([values - rows[f"{column}_low"].to_numpy(dtype=float),
                             rows[f"{column}_high"].to_numpy(dtype=float) - values])
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=label, yerr=err,
               error_kw={"elinewidth": 0.8, "capsize": 2})
    ax.set_xticks(x, [language_name(lang) for lang in languages])
    ax.set_ylim(0, 100)
    ax.set_ylabel("target-language rate (%)")
    ax.legend(fontsize=7)


def plot_rate_with_without(rates: pd.DataFrame, languages: list[str], n_per_side: int, title: str) -> plt.Figure:
    """Figure 3: share of generations in each language without vs with its units forced, and with as
    many random units of the same blocks forced (the baseline, where the run has it); 95% intervals."""
    table = main_rates(rates, n_per_side)
    fig, ax = plt.subplots(figsize=(7, 3.4))
    series = [("none", "no intervention")]
    if "random" in table.columns:
        series.append(("random", f"{2 * n_per_side} random units forced"))
    _bars(ax, table, [*series, ("both", f"top-{n_per_side} + bottom-{n_per_side} forced")], languages)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_top_bottom_both(rates: pd.DataFrame, languages: list[str], n_per_side: int, title: str) -> plt.Figure:
    """Figure 5: forcing only the top-N, only the bottom-N, or both."""
    table = main_rates(rates, n_per_side)
    fig, ax = plt.subplots(figsize=(7, 3.4))
    _bars(ax, table, [("none", "none"), ("top", f"top-{n_per_side}"), ("bottom", f"bottom-{n_per_side}"),
                      ("both", "both")], languages)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_rate_vs_n(rates: pd.DataFrame, languages: list[str], title: str) -> plt.Figure:
    """Figure 4: target-language rate against the number of forced units per side (log axis), with
    95% intervals as bands; a point that forces every unit of the model is marked "all units"."""
    both = rates[rates.condition == "both"]
    none = rates[rates.condition == "none"].set_index("target")["target_rate"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for i, lang in enumerate(languages):
        part = both[both.target == lang].sort_values("n_top")
        line, = ax.plot(part["n_top"], part["target_rate"], marker="o", ms=3, label=language_name(lang))
        if "low" in part.columns:
            ax.fill_between(part["n_top"], part["low"], part["high"], color=line.get_color(), alpha=0.12, lw=0)
        ax.axhline(none.get(lang, np.nan), color=line.get_color(), ls=":", lw=0.8)
    if "all_units" in both.columns and both["all_units"].any():
        n_all = int(both.loc[both["all_units"], "n_top"].max())
        ax.axvline(n_all, color="0.4", ls="--", lw=0.8)
        ax.annotate("all units", (n_all, 3), rotation=90, ha="right", va="bottom", fontsize=7, color="0.3")
    ax.set_xscale("log")
    ax.set_ylim(0, 100)
    ax.set_xlabel("units forced per side (top-N + bottom-N)")
    ax.set_ylabel("target-language rate (%)")
    ax.legend(fontsize=7)
    ax.set_title(title + " (dotted: no intervention)")
    fig.tight_layout()
    return fig


def plot_translation(metrics: pd.DataFrame, title: str) -> plt.Figure:
    """Figure 6: per task, target-language rate (top) and BLEU (bottom), without vs with forcing."""
    tasks = list(dict.fromkeys(metrics["task"]))
    fig, axes = plt.subplots(2, len(tasks), figsize=(3.6 * len(tasks), 5.6), squeeze=False)
    for j, task in enumerate(tasks):
        part = metrics[metrics.task == task]
        langs = list(dict.fromkeys(part["target"]))
        x = np.arange(len(langs))
        for i, (metric, label) in enumerate([("target_rate", "target-language rate (%)"), ("bleu", "BLEU")]):
            ax = axes[i, j]
            for k, (cond, name) in enumerate([("none", "no intervention"), ("both", "forced")]):
                rows = part[part.condition == cond].set_index("target").reindex(langs)
                if metric == "target_rate" and "content_rate" in rows.columns:
                    # bars: answers in the target language that are more than a language's name; ticks: all of them
                    vals = rows["content_rate"].to_numpy(dtype=float)
                    err = np.vstack([vals - rows["content_low"].to_numpy(dtype=float),
                                     rows["content_high"].to_numpy(dtype=float) - vals])
                    ax.bar(x + (k - 0.5) * 0.4, vals, 0.4, label=name, yerr=err, error_kw={"elinewidth": 0.8, "capsize": 2})
                    ax.plot(x + (k - 0.5) * 0.4, rows["target_rate"], "_", color="k", ms=10,
                            label="with name-only answers" if k == 1 else None)
                else:
                    ax.bar(x + (k - 0.5) * 0.4, rows[metric].to_numpy(), 0.4, label=name)
            ax.set_xticks(x, langs)
            ax.set_ylabel(label if j == 0 else "")
            if metric == "target_rate":
                ax.set_ylim(0, 100)
                ax.set_title(task)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
