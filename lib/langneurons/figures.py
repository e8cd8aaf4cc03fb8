"""Paper figures: drawn from saved results, written as PNG and PDF into paper_figures/<profile>/."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen needed; notebooks still display the returned figure
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .atomic import atomic_path  # noqa: E402
from .languages import LANGUAGE_NAMES  # noqa: E402


def save_figure(fig: plt.Figure, out_dir: Path, name: str) -> list[Path]:
    """Save `fig` as <name>.png and <name>.pdf (atomically) and return the paths."""
    written = []
    for ext in ("png", "pdf"):
        path = out_dir / f"{name}.{ext}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight")
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
        ax.set_title(f"{LANGUAGE_NAMES[lang]} ({lang})")
        ax.set_xlabel("average precision")
    for ax in list(axes.flat)[len(langs):]:
        ax.axis("off")
    axes.flat[0].set_ylabel("units")
    axes.flat[0].legend(fontsize=7, loc="upper center")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
