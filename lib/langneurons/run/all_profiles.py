"""paper_figures/all/: the paper's multi-model figures, drawn from every finished profile's CSVs.

The paper compares models: the layer distribution per model, overlap per model, and the forcing
and translation results of all eight side by side. Each profile's report writes its numbers to
paper_figures/<profile>/*.csv; this module stacks them with a `profile` column, draws one figure
per paper figure and writes a README page. Where `make paper-numbers` has scored the authors'
released generations (paper_figures/paper/), the paper's value is drawn beside the run's as a
black diamond, for the profiles whose `paper_model` names a release model. A profile without
results yet is listed as missing and drawn as an empty, labelled panel: never silently dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from langneurons.control.language_rates import main_rates  # noqa: E402
from langneurons.base import paths  # noqa: E402
from langneurons.base.atomic import write_csv, write_text  # noqa: E402
from langneurons.run.figures import save_figure  # noqa: E402
from langneurons.base.params import ParamsError, load_params, profile_name  # noqa: E402
from langneurons.run.report import markdown_table  # noqa: E402
from langneurons.run.stages import Fig

SOURCES = {  # table -> the per-profile CSV it stacks
    "layer_distribution": Fig.LAYER_DISTRIBUTION, "overlap": Fig.OVERLAP,
    "main_rates": Fig.MAIN_RATES, "target_rates": Fig.TARGET_RATES,
    "translation": Fig.TRANSLATION,
}


@dataclass(frozen=True)
class Profile:
    name: str
    figures: Path  # paper_figures/<profile>/
    paper_model: str | None  # release model whose published numbers go beside this profile's
    n_per_side: int


def _profiles(profiles: list[str], overrides: list[str]) -> tuple[list[Profile], list[str]]:
    found, broken = [], []
    for profile in profiles:
        try:
            p = load_params(profile, overrides, check_files=False)
        except ParamsError:
            broken.append(profile_name(profile))
            continue
        found.append(Profile(p.profile, paths.resolve(p.figures_root) / p.profile, p.paper_model, p.scoring.n_per_side))
    return found, broken


def stack(profiles: list[Profile]) -> dict[str, pd.DataFrame]:
    """Each table over every profile that has it, with a `profile` column first."""
    out = {}
    for table, csv in SOURCES.items():
        frames = [pd.read_csv(pr.figures / csv, keep_default_na=False, na_values=[""]).assign(profile=pr.name)
                  for pr in profiles if (pr.figures / csv).is_file()]
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["profile"])
        out[table] = frame[["profile", *[c for c in frame.columns if c != "profile"]]]
    return out


def paper_main_rates(paper_dir: Path, profiles: list[Profile]) -> pd.DataFrame:
    """The paper's none/top/bottom/both rates (N = 1000 per side) for profiles that name a release model."""
    rates_file = paper_dir / Fig.TARGET_RATES
    if not rates_file.is_file():
        return pd.DataFrame(columns=["profile", "target", "none", "top", "bottom", "both", "rise"])
    rates = pd.read_csv(rates_file, keep_default_na=False)
    frames = [main_rates(rates[rates.model == pr.paper_model], 1000).assign(profile=pr.name)
              for pr in profiles if pr.paper_model and (rates.model == pr.paper_model).any()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["profile", "target", "both"])


def _grid(names: list[str], width: float = 3.4, height: float = 2.6) -> tuple[plt.Figure, list[plt.Axes]]:
    cols = min(4, max(len(names), 1))
    rows = math.ceil(max(len(names), 1) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[len(names):]:
        ax.axis("off")
    return fig, flat[:len(names)]


def _missing(ax: plt.Axes, name: str) -> None:
    ax.text(0.5, 0.5, f"{name}\nnot run yet", ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_layer_distribution(dist: pd.DataFrame, names: list[str]) -> plt.Figure:
    """Figure 1 across models: share of each side's units per block against relative depth."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, side in zip(axes, ("top", "bottom")):
        for name in names:
            part = dist[(dist.profile == name) & (dist.side == side)].groupby("depth", as_index=False)["count"].sum()
            if part.empty:
                ax.plot([], [], ls=":", label=f"{name} (not run yet)")
                continue
            ax.plot(part["depth"], 100 * part["count"] / part["count"].sum(), marker="o", ms=3, label=name)
        ax.set_title(f"{side} units by AP, all languages")
        ax.set_xlabel("relative depth (block / (blocks - 1))")
    axes[0].set_ylabel("share of the selected units (%)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def overlap_summary(overlap: pd.DataFrame) -> pd.DataFrame:
    """Per profile and side: mean and largest overlap between two different languages (% of N)."""
    off = overlap[overlap.language_a != overlap.language_b] if len(overlap) else overlap
    if off.empty:
        return pd.DataFrame(columns=["profile", "side", "mean_percent", "max_percent"])
    return off.groupby(["profile", "side"], sort=False)["percent_of_n"].agg(mean_percent="mean", max_percent="max").reset_index()


def plot_overlap(summary: pd.DataFrame, names: list[str]) -> plt.Figure:
    """Figure 2 across models: overlap between languages per model (paper: < 5%)."""
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names)), 3.4))
    x = np.arange(len(names))
    for i, (side, stat) in enumerate([("top", "mean_percent"), ("top", "max_percent"), ("bottom", "mean_percent"),
                                      ("bottom", "max_percent")]):
        part = summary[summary.side == side].set_index("profile").reindex(names)[stat]
        ax.bar(x + (i - 1.5) * 0.2, part.to_numpy(dtype=float), 0.2, label=f"{side}, {stat.split('_')[0]}")
    ax.axhline(5, color="k", ls="--", lw=0.8, label="paper: < 5%")
    ax.set_xticks(x, [n if n in set(summary.profile) else f"{n}\n(not run)" for n in names], fontsize=7)
    ax.set_ylabel("overlap between languages (% of N)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_rates(main: pd.DataFrame, paper: pd.DataFrame, names: list[str], series: list[str], title: str) -> plt.Figure:
    """Figures 3 and 5 across models: per model, the target-language rate per language and condition."""
    fig, axes = _grid(names)
    for ax, name in zip(axes, names):
        part = main[main.profile == name]
        if part.empty:
            _missing(ax, name)
            continue
        langs = list(part["target"])
        x = np.arange(len(langs))
        width = 0.8 / len(series)
        for i, col in enumerate(series):
            ax.bar(x + (i - (len(series) - 1) / 2) * width, part[col], width, label=col)
        theirs = paper[paper.profile == name].set_index("target").reindex(langs)
        if "both" in series and len(theirs) and theirs["both"].notna().any():
            ax.scatter(x + (series.index("both") - (len(series) - 1) / 2) * width, theirs["both"], marker="D", color="k",
                       s=14, zorder=3, label="paper (both)")
        ax.set_xticks(x, langs, fontsize=7)
        ax.set_ylim(0, 100)
        ax.set_title(name, fontsize=9)
    if axes:
        axes[0].set_ylabel("target-language rate (%)")
        axes[0].legend(fontsize=6)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_rate_vs_n(rates: pd.DataFrame, names: list[str]) -> plt.Figure:
    """Figure 4 across models: rate against the units forced per side, one line per language."""
    fig, axes = _grid(names)
    for ax, name in zip(axes, names):
        part = rates[(rates.profile == name) & (rates.condition == "both")] if len(rates) else rates
        if part.empty:
            _missing(ax, name)
            continue
        for lang, g in part.groupby("target", sort=False):
            ax.plot(g["n_top"], g["target_rate"], marker="o", ms=2, label=lang)
        ax.set_xscale("log")
        ax.set_ylim(0, 100)
        ax.set_title(name, fontsize=9)
    if axes:
        axes[0].set_ylabel("target-language rate (%)")
        axes[0].legend(fontsize=6)
    fig.suptitle("Rate vs units forced per side (top-N + bottom-N)")
    fig.tight_layout()
    return fig


def plot_translation(trans: pd.DataFrame, names: list[str]) -> plt.Figure:
    """Figure 6 across models: per model, target-language rate and BLEU without vs with forcing."""
    fig, axes = plt.subplots(2, max(len(names), 1), figsize=(3.4 * max(len(names), 1), 5.2), squeeze=False)
    for j, name in enumerate(names):
        part = trans[trans.profile == name] if len(trans) else trans
        for i, (metric, label) in enumerate([("target_rate", "target-language rate (%)"), ("bleu", "BLEU")]):
            ax = axes[i, j]
            if part.empty:
                _missing(ax, name)
                continue
            keys = list(dict.fromkeys(zip(part["task"], part["target"])))
            x = np.arange(len(keys))
            for k, cond in enumerate(("none", "both")):
                vals = part[part.condition == cond].set_index(["task", "target"]).reindex(keys)[metric]
                ax.bar(x + (k - 0.5) * 0.4, vals.to_numpy(dtype=float), 0.4, label=cond)
            ax.set_xticks(x, [f"{t[:5]}\n{lang}" for t, lang in keys], fontsize=6)
            ax.set_ylabel(label if j == 0 else "")
            if i == 0:
                ax.set_title(name, fontsize=9)
                ax.set_ylim(0, 100)
    if axes[0, 0].get_legend_handles_labels()[0]:
        axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def write_all(profiles: list[str], overrides: list[str], figures_root: Path, statuses: dict[str, str] | None = None) -> Path:
    """Stack every profile's CSVs, draw the multi-model figures and write paper_figures/all/README.md."""
    out = figures_root / "all"
    found, broken = _profiles(profiles, overrides)
    names = [pr.name for pr in found]
    tables = stack(found)
    paper = paper_main_rates(figures_root / "paper", found)
    present = sorted(set().union(*[set(t["profile"]) for t in tables.values()]))
    missing = [n for n in names if n not in present] + broken
    summary = overlap_summary(tables["overlap"])
    for name, table in [*tables.items(), ("overlap_summary", summary), ("paper_main_rates", paper)]:
        write_csv(out / f"{name}.csv", table)
    figures = [
        ("all_fig1_layer_distribution", "Where the selected units sit, per model (Figure 1)", plot_layer_distribution(tables["layer_distribution"], names)),
        ("all_fig2_overlap", "Overlap between languages, per model (Figure 2)", plot_overlap(summary, names)),
        ("all_fig3_target_rate", "Target-language rate without vs with top-N + bottom-N forced, per model and language; diamonds: the paper's (Figure 3)",
         plot_rates(tables["main_rates"], paper, names, ["none", "both"], "Forcing the units, per model")),
        ("all_fig4_rate_vs_n", "Target-language rate against the units forced per side, per model (Figure 4)", plot_rate_vs_n(tables["target_rates"], names)),
        ("all_fig5_top_bottom_both", "Top-N only, bottom-N only, or both, per model (Figure 5)",
         plot_rates(tables["main_rates"], paper, names, ["none", "top", "bottom", "both"], "Top vs bottom vs both, per model")),
        ("all_fig6_translation", "Translation prompt: target-language rate and BLEU without vs with forcing, per model (Figure 6)", plot_translation(tables["translation"], names)),
    ]
    parts = ["# All models — the paper's multi-model figures\n",
             "Drawn by `make replicate-paper` from each profile's `paper_figures/<profile>/*.csv`; the numbers are in the CSV "
             "files here, stacked with a `profile` column. Black diamonds: the paper's own value (`make paper-numbers`), "
             "where the profile names a release model.\n", "## Profiles\n"]
    rows = [{"profile": n, "results": "yes" if n in present else "missing (not run yet)",
             "last run": (statuses or {}).get(n, "")} for n in [*names, *broken]]
    parts += [markdown_table(pd.DataFrame(rows)), ""]
    if missing:
        parts.append(f"Missing: {', '.join(missing)} — their panels are empty and labelled.\n")
    for stem, caption, fig in figures:
        save_figure(fig, out, stem)
        plt.close(fig)
        parts += [f"## {caption}\n", f"![{caption}]({stem}.png)\n", f"([PDF]({stem}.pdf))\n"]
    write_text(out / "README.md", "\n".join(parts) + "\n")
    return out
