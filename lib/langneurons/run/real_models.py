"""Real models side by side: paper_figures/real-models/README.md (`make real-models`).

Every real model the project ran (a profile whose paper_figures/<profile>/ has a report) next to the
paper's eight-model means (`make paper-numbers`): where the units sit, how much two languages share,
how stable the selection is, the rates without and with forcing (95% intervals), random units,
fluency, the N sweep, translation and AP vs LAPE; then, claim by claim, which hold on which model.
Built from the committed figure tables only, so it runs in a second and needs no model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from langneurons.base import paths
from langneurons.base.atomic import write_text
from langneurons.base.params import load_params
from langneurons.base.proportions import wilson
from langneurons.run.claims import PAPER_MEANS, claims_table
from langneurons.run.report import markdown_table
from langneurons.run.stages import Fig

REAL_PROFILES = ("gemma3-270m", "smollm2-135m")  # the real models that run offline here (make gemma / make smollm2)
OUT = "real-models"


def _read(folder: Path, name: str) -> pd.DataFrame | None:
    f = folder / name
    return pd.read_csv(f) if f.is_file() else None


def _pooled(rows: pd.DataFrame) -> str:
    hits, n = int(rows["hits"].sum()), int(rows["n"].sum())
    low, high = wilson(hits, n)
    return f"{100 * hits / n:.0f}% [{100 * float(low):.0f}, {100 * float(high):.0f}]"


def _sweep_and_translation(folder: Path) -> dict[str, str]:
    """The N sweep's pooled rates (the point forcing every unit flagged) and the translation rates,
    from a run's tables or make paper-numbers' (the same layout)."""
    out = {}
    rates = _read(folder, Fig.TARGET_RATES)
    if rates is not None and "hits" in rates.columns:
        sweep = rates[(rates.condition == "both") & (rates.n_top == rates.n_bottom)]
        parts = []
        for n, rows in sweep.groupby("n_top"):
            flag = " (all units)" if "all_units" in rows.columns and rows.all_units.astype(str).eq("True").any() else ""
            parts.append(f"{n:,}{flag}: {_pooled(rows)}")
        out["N sweep (N per side: pooled rate)"] = "; ".join(parts)
    t = _read(folder, Fig.TRANSLATION)
    if t is not None and "content_rate" in t.columns:
        none, both = t[t.condition == "none"], t[t.condition == "both"]
        out["translation: target rate none → forced (without name-only answers)"] = \
            f"{none.target_rate.mean():.0f}% → {both.target_rate.mean():.0f}% ({none.content_rate.mean():.0f}% → {both.content_rate.mean():.0f}%)"
    return out


def model_column(folder: Path, n_per_side: int) -> dict[str, str]:
    """One model's value for every row of the side-by-side table ("-" where its run lacks the table)."""
    out: dict[str, str] = {}
    dist = _read(folder, Fig.LAYER_DISTRIBUTION)
    if dist is not None:
        dist["count"] = dist["count"].astype(int)
        total = dist["count"].sum()
        first = dist[dist.depth.astype(float) <= 1 / 3]["count"].sum() / total
        last = dist[dist.depth.astype(float) > 2 / 3]["count"].sum() / total
        out["depth: first / middle / last third"] = f"{100 * first:.0f} / {100 * (1 - first - last):.0f} / {100 * last:.0f}%"
    overlap = _read(folder, Fig.OVERLAP)
    if overlap is not None:
        off = overlap[overlap.language_a != overlap.language_b]
        out["largest overlap between two languages"] = f"{off.percent_of_n.astype(float).max():.1f}% of N"
    reference = _read(folder, Fig.OVERLAP_REFERENCE)
    if reference is not None and "spearman" in reference.columns:
        rho = reference.spearman.astype(float)
        out["AP rank correlation between languages (Spearman, min / max)"] = f"{rho.min():.2f} / {rho.max():.2f}"
    if reference is not None and "without_pair_percent_top" in reference.columns:
        out["overlap when the pair's other language is left out of the negatives (max)"] = \
            f"{reference.without_pair_percent_top.astype(float).max():.1f}% of N"
    stability = _read(folder, Fig.STABILITY)
    if stability is not None and "jaccard_halves" in stability.columns:
        by_side = stability.groupby("side")["jaccard_halves"].apply(lambda s: s.astype(float).mean())
        out["split-half Jaccard (mean over languages: top / bottom)"] = f"{by_side.get('top', float('nan')):.2f} / {by_side.get('bottom', float('nan')):.2f}"
    main = _read(folder, Fig.MAIN_RATES)
    if main is not None and "rise_low" in main.columns:
        m = main
        out["target rate, none → forced (mean)"] = f"{m.none.mean():.0f}% → {m.both.mean():.0f}%"
        out["languages whose rise's 95% interval is above 0"] = f"{int((m.rise_low > 0).sum())} of {len(m)}"
        if "random" in m.columns:
            out["target rate with as many random units (mean)"] = f"{m.random.mean():.0f}%"
            out["languages where forced beats random (95% interval)"] = f"{int((m.over_random_low > 0).sum())} of {len(m)}"
    fluency = _read(folder, Fig.FLUENCY)
    if fluency is not None:
        none = fluency[fluency.condition == "none"]
        both = fluency[(fluency.condition == "both") & (fluency.n_top.astype(int) == n_per_side)]
        if len(none) and len(both):
            out["degenerate texts, none → forced"] = f"{float(none.degenerate.iloc[0]):.0f}% → {both.degenerate.astype(float).mean():.0f}%"
            out["median perplexity under the unforced model, none → forced"] = \
                f"{float(none.median_ppl.iloc[0]):.0f} → {both.median_ppl.astype(float).median():.0f}"
    out.update(_sweep_and_translation(folder))
    summary = _read(folder, Fig.AP_LAPE_SUMMARY)
    if summary is not None:
        s = summary.set_index("method")
        column = next((c for c in ("ppl_change_diagonal_median_%", "ppl_change_diagonal_%") if c in s.columns), None)
        if column:
            out[f"AP vs LAPE: perplexity change on the zeroed language ({column})"] = \
                " vs ".join(f"{m} {float(v):+.0f}%" for m, v in s[column].items())
    return out


def paper_column(paper_dir: Path) -> dict[str, str]:
    """The paper's eight models where its released outputs give the number; its text otherwise."""
    out = {"depth: first / middle / last third": "mainly first and last layers (text)",
           "largest overlap between two languages": "under 5% of N (text)"}
    means = _read(paper_dir, PAPER_MEANS)
    if means is not None:
        m = means[means.target != "en"]
        out["target rate, none → forced (mean)"] = f"{m.none.mean():.0f}% → {m.both.mean():.0f}% (de/fr/es/zh/ja, 8 models)"
    out.update(_sweep_and_translation(paper_dir))
    return out


def side_by_side(figures_root: Path, profiles: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(quantities x [paper, models], claims x models verdicts, the profiles found)."""
    found = [name for name in profiles if (figures_root / name / "README.md").is_file()]
    columns = {"paper (8 models)": paper_column(figures_root / "paper")}
    verdicts = {}
    for name in found:
        p = load_params(name, check_files=False)
        columns[name] = model_column(figures_root / name, p.scoring.n_per_side)
        claims = claims_table(figures_root / name, p.scoring.n_per_side, figures_root / "paper")
        verdicts[name] = claims.set_index("claim")["holds"]
    rows = list(dict.fromkeys(k for col in columns.values() for k in col))
    table = pd.DataFrame({"quantity": rows, **{c: [col.get(r, "-") for r in rows] for c, col in columns.items()}})
    holds = pd.DataFrame(verdicts).fillna("-").rename_axis("claim").reset_index() if verdicts else pd.DataFrame()
    return table, holds, found


def build_page(figures_root: Path, profiles: list[str]) -> str:
    table, holds, found = side_by_side(figures_root, profiles)
    parts = ["# Real models side by side\n",
             "The real models this project ran on CPU, next to the paper's eight models (their released outputs, "
             "scored by this project: `make paper-numbers`). Each model's full report is in its own folder: "
             + ", ".join(f"[{name}]({name}/README.md)" for name in found) + ". Rebuilt by `make real-models` from the "
             "committed figure tables. Rates are shares of 100 samples per language: 95% intervals in brackets "
             "(Wilson; pooled over languages where a mean is shown).\n"]
    if not found:
        parts.append("No real model's report was found: run `make replicate PROFILE=gemma3-270m` (or smollm2-135m) first.\n")
        return "\n".join(parts) + "\n"
    parts += ["## The numbers\n", markdown_table(table), ""]
    if len(holds):
        parts += ["## Which claims hold on which model\n",
                  "Decided as in each report: from the 95% intervals where the claim is about rates (\"not shown\": the "
                  "intervals do not decide); a claim that fails on one model is a finding about that model.\n",
                  markdown_table(holds), ""]
    return "\n".join(parts) + "\n"


def write_page(figures_root: Path, profiles: list[str]) -> Path:
    return write_text(figures_root / OUT / "README.md", build_page(figures_root, profiles))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default=" ".join(REAL_PROFILES), help="profiles to put side by side")
    parser.add_argument("--figures-root", default="paper_figures")
    args = parser.parse_args(argv)
    path = write_page(paths.resolve(args.figures_root), args.profiles.split())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
