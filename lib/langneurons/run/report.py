"""The report page: paper_figures/<profile>/README.md, every figure with a caption and its numbers.

Built from the files the notebooks wrote, so it can be regenerated without rerunning any model;
sections whose files are missing (stages not run) are left out.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from langneurons.base import paths
from langneurons.base.atomic import write_text
from langneurons.comparison.summary import report_lines
from langneurons.scoring.overlap_reference import overlap_reference_lines
from langneurons.scoring.stability import stability_lines
from langneurons.model.lape_counting import describe
from langneurons.run.claims import claims_table
from langneurons.base.paths import RunLayout
from langneurons.base.params import Params
from langneurons.run.stagelog import batch_size_table, stage_table
from langneurons.run.stages import Fig


def markdown_table(df: pd.DataFrame, digits: int = 1) -> str:
    """A Markdown table (no extra dependency), numbers rounded."""
    df = df.round(digits)
    cells = [[str(c) for c in df.columns]] + [[str(v) for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
    lines += ["| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in cells[1:]]
    return "\n".join(lines)


def _figure(layout: RunLayout, name: str, caption: str) -> str:
    return f"![{caption}]({name}.png)\n\n*{caption}* ([PDF]({name}.pdf))\n" if (layout.figures / f"{name}.png").is_file() else ""


def _with_interval(value: float, low: float, high: float) -> str:
    return f"{value:.0f} [{low:.0f}, {high:.0f}]"


def rates_with_intervals(main: pd.DataFrame) -> pd.DataFrame:
    """fig3_main_rates as the report shows it: each rate and rise with its 95% interval in brackets."""
    out = pd.DataFrame({"target": main["target"]})
    for column in ("none", "top", "bottom", "random", "both", "rise", "over_random"):
        if column not in main.columns:
            continue
        if f"{column}_low" in main.columns:
            out[column] = [_with_interval(v, lo, hi) for v, lo, hi in
                           main[[column, f"{column}_low", f"{column}_high"]].itertuples(index=False)]
        else:
            out[column] = main[column].round(1)
    return out.rename(columns={"over_random": "both - random"})


def fluency_display(fluency: pd.DataFrame, n_per_side: int) -> pd.DataFrame:
    """Fluency of the main conditions (none, random, top, bottom, both at N), with intervals."""
    keep = (fluency["condition"] != "both") | (fluency["n_top"] == n_per_side)
    f = fluency[keep]
    return pd.DataFrame({
        "condition": f["condition"], "target": f["target"].fillna("").replace("", "(none)"), "n": f["n"],
        "median perplexity": [f"{m:.1f} [{lo:.1f}, {hi:.1f}]" for m, lo, hi in f[["median_ppl", "ppl_low", "ppl_high"]].itertuples(index=False)],
        "degenerate %": [_with_interval(v, lo, hi) for v, lo, hi in f[["degenerate", "degenerate_low", "degenerate_high"]].itertuples(index=False)],
    })


def _depth_share(dist: pd.DataFrame) -> pd.DataFrame:
    """Share of each side's units in the first, middle and last thirds of the depth, next to the
    share those blocks would get if units were spread uniformly (a 4-block model's thirds are uneven)."""
    parts = ["first third", "middle third", "last third"]
    bins = pd.cut(dist["depth"], [-0.01, 1 / 3, 2 / 3, 1.0], labels=parts)
    table = dist.assign(part=bins).groupby(["side", "part"], observed=False)["count"].sum().unstack()
    table = 100 * table.div(table.sum(axis=1), axis=0)
    blocks = dist.drop_duplicates("block").assign(part=bins).groupby("part", observed=False).size()
    table.loc["uniform"] = 100 * blocks / blocks.sum()
    return table.reset_index()


def paper_dir(p: Params) -> Path:
    """make paper-numbers' folder: <figures_root>/paper/, else the one committed with the project."""
    own = paths.resolve(p.figures_root) / "paper"
    return own if own.is_dir() else paths.PROJECT_ROOT / "paper_figures" / "paper"


def paper_tables(figures_root: Path, model: str) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(rates, translation metrics) of one release model from <figures_root>/paper/ (written by
    `make paper-numbers`), or None when they are not there."""
    out = figures_root / "paper"
    if not (out / Fig.TARGET_RATES).is_file():
        return None
    rates = pd.read_csv(out / Fig.TARGET_RATES, keep_default_na=False)
    rates = rates[rates.model == model]
    trans = pd.read_csv(out / Fig.TRANSLATION) if (out / Fig.TRANSLATION).is_file() else pd.DataFrame()
    trans = trans[trans.model == model] if len(trans) else pd.DataFrame(columns=["task", "target", "condition"])
    return (rates, trans) if len(rates) else None


def beside_paper(ours: pd.DataFrame, paper: pd.DataFrame, keys: list[str], values: list[str]) -> pd.DataFrame:
    """Our numbers and the paper's for every key both have (e.g. condition, target, N), side by side."""
    merged = ours[keys + values].merge(paper[keys + values], on=keys, suffixes=(" (run)", " (paper)"))
    return merged[keys + [f"{v} ({who})" for v in values for who in ("run", "paper")]]


def _paper_section(p: Params, layout: RunLayout) -> list[str]:
    """The paper's value next to the run's, for every number both have, both scored by the same code."""
    if not p.paper_model:
        return []
    tables = paper_tables(paths.resolve(p.figures_root), p.paper_model)
    if tables is None:
        return ["## Beside the paper's own numbers\n",
                f"Run `make paper-numbers` to score the authors' released generations of `{p.paper_model}` and show "
                "them here next to this run's.\n"]
    paper_rates, paper_trans = tables
    parts = ["## Beside the paper's own numbers\n",
             f"The authors' released generations of `{p.paper_model}`, scored by the same code as this run "
             "(`paper_figures/paper/`). `n_top`/`n_bottom`: units forced per side (the paper's \"2000 both\" = 1000 + 1000).\n"]
    rates_file = layout.figures / Fig.TARGET_RATES
    if rates_file.is_file():
        ours = pd.read_csv(rates_file, keep_default_na=False)
        keys = ["condition", "target", "n_top", "n_bottom"]
        parts += ["Target-language rate of unconditional generation (%):\n",
                  markdown_table(beside_paper(ours, paper_rates, keys, ["target_rate"])), ""]
    trans_file = layout.figures / Fig.TRANSLATION
    if trans_file.is_file() and len(paper_trans):
        ours = pd.read_csv(trans_file)
        parts += ["Translation prompt: answers in the target language (%) and BLEU:\n",
                  markdown_table(beside_paper(ours, paper_trans, ["task", "target", "condition"], ["target_rate", "bleu"])), ""]
    return parts


def _lape_counting(p: Params, figures: Path) -> list[str]:
    """How LAPE counted: the protocol, the tokens per language, and (another protocol than `texts`) the
    Jaccard similarity of each language's set to the `texts` counts' set."""
    f = figures / Fig.LAPE_SUMMARY
    if not f.is_file():
        return []
    summary = pd.read_csv(f)
    columns = [c for c in ("language", "units", "tokens_counted", "tokens_counted_texts_protocol",
                           "jaccard_vs_texts_protocol") if c in summary.columns]
    return [f"LAPE counted by the `{p.selection.lape.counting}` protocol ({describe(p.selection.lape)}); tokens "
            "counted per language" + (" and how its sets differ from the `texts` protocol's (Jaccard):\n"
                                      if "jaccard_vs_texts_protocol" in columns else ":\n"),
            markdown_table(summary[columns], 3), ""]


def _comparison_section(p: Params, layout: RunLayout) -> list[str]:
    """Notebook 07: AP against LAPE at matched sizes (beyond the paper)."""
    f = layout.figures
    if not (f / Fig.AP_LAPE_SUMMARY).is_file():
        return []
    parts = ["## Beyond the paper: AP against LAPE (Figures 9-10)\n",
             "LAPE (Tang et al., ACL 2024) selects FFN activation units whose activation probability has a low entropy "
             f"across languages (filters: top_rate {p.selection.lape.top_rate}, filter_rate {p.selection.lape.filter_rate}, "
             f"activation_bar_ratio {p.selection.lape.activation_bar_ratio}). Each language gets k units from both methods: "
             "LAPE's set and AP's top-k. AP units that feed an FFN activation (fc1 / gate_proj) are mapped to it; see notebook 07.\n",
             _figure(layout, Fig.AP_LAPE_UNITS_PLOT, "Left: units the two methods share per language (bars) against chance "
                     "(ticks) and the overlap of their layer distributions. Right: where each method's units sit.")]
    parts += _lape_counting(p, f)
    overlap = pd.read_csv(f / Fig.AP_LAPE_OVERLAP) if (f / Fig.AP_LAPE_OVERLAP).is_file() else pd.DataFrame()
    if len(overlap):
        parts += [markdown_table(overlap, 2), ""]
    parts.append(_figure(layout, Fig.AP_LAPE_EFFECTS_PLOT, "Left: perplexity change of held-out texts (columns) with one "
                         "language's units zeroed (rows), per method, coloured on a log scale of ppl / ppl_base so that "
                         "both methods can be read. Right: target-language rate with the units forced to on_p50 (95% intervals)."))
    if (f / Fig.AP_LAPE_PER_LANGUAGE).is_file():
        parts += report_lines(pd.read_csv(f / Fig.AP_LAPE_SUMMARY), pd.read_csv(f / Fig.AP_LAPE_PER_LANGUAGE), markdown_table)
    else:
        parts += [markdown_table(pd.read_csv(f / Fig.AP_LAPE_SUMMARY), 2), ""]
    parts.append("Held-out texts are never texts of the selection sets (checked), but the model may have seen them in "
                 "training; each rate is a share of the generated samples, with its 95% interval.\n")
    return parts


def _exactness_section(layout: RunLayout) -> list[str]:
    """Whether the responses are the original code's bit for bit, or within float32 rounding (notebook 02's probe)."""
    meta = layout.activations / "meta.json"
    batching = json.loads(meta.read_text()).get("batching") if meta.is_file() else None
    if not batching:
        return []
    return ["## Responses: exact or within rounding\n", f"Activation collection: {batching['line']}.\n"]


def _stages_section(layout: RunLayout) -> list[str]:
    """Each stage's wall time and peak memory in the run that made these results (reused: read from the cache)."""
    table = stage_table(layout.root, computed=True)
    if table.empty:
        return []
    return ["## Stages\n", "Wall time (s) and peak memory (MiB) of the run that computed each stage's outputs; "
            "`reused` = the last `make replicate` found them in the stage cache.\n",
            markdown_table(table.drop(columns=["batch_size_used"]), 2), ""]


def _batch_section(layout: RunLayout) -> list[str]:
    """The batch sizes the stages actually used: smaller than asked after an out-of-memory error."""
    table = batch_size_table(layout.root)
    if table.empty:
        return []
    return ["## Batch sizes\n", "Asked in params and actually used by the stages that computed these results "
            "(halved and continued after an out-of-memory error, unless `halve_batch_on_oom: false`).\n",
            markdown_table(table), ""]


def _weights(layout: RunLayout) -> str:
    """' (GGUF …, quantization …)' when the activation stage recorded where float weights came from."""
    meta = layout.activations / "meta.json"
    note = json.loads(meta.read_text()).get("provenance", {}).get("weights") if meta.is_file() else None
    return f" ({note})" if note else ""


def build_report(p: Params, layout: RunLayout) -> str:
    f = layout.figures
    model = f"{p.model.path or p.model.id or p.model.gguf_package}" + (f"/{p.model.gguf_file}" if p.model.gguf_file else "")
    parts = [
        f"# Replication report — profile `{p.profile}`\n",
        f"Model: `{model}`{_weights(layout)} · data: `{p.data.source}` · languages: {', '.join(p.languages)} · "
        f"N = {p.scoring.n_per_side} units per side · forced value: `{p.intervention.value}`. "
        f"Regenerated by `make replicate PROFILE={p.profile}`; numbers behind each figure are in the CSV "
        f"files beside it and in `runs/{p.profile}/`.\n",
    ]
    if p.report_note:
        parts.append(f"> **Note.** {p.report_note}\n")
    claims = claims_table(f, p.scoring.n_per_side, paper_dir(p))
    if len(claims):
        parts += ["## The paper's claims on this model\n",
                  "What Kojima et al. found on their eight models (from their released outputs, `make paper-numbers`), and "
                  "the same quantity from this run's tables (sections below). Rates are shares of samples: a claim about "
                  "them holds where the 95% intervals of the differences lie above 0 (Wilson intervals for rates, "
                  "Newcombe's for differences, in brackets), and is \"not shown\" where they do not decide. A claim that "
                  "does not hold here is a finding about this model.\n",
                  markdown_table(claims), ""]
    summary = layout.scores / "summary.csv"
    if summary.is_file():
        parts += ["## Expertise (AP) of every unit\n", _figure(layout, Fig.AP_DISTRIBUTION, "AP of every unit per language; red/blue: top-N/bottom-N cut-offs, dashed: chance."),
                  markdown_table(pd.read_csv(summary)[["language", "units", "max_ap", "min_ap", "top_cutoff_ap", "bottom_cutoff_ap", "selected_share_%"]], 3), ""]
    if (f / Fig.LAYER_DISTRIBUTION).is_file():
        dist = pd.read_csv(f / Fig.LAYER_DISTRIBUTION)
        parts += ["## Where the units sit (Figure 1)\n", _figure(layout, Fig.LAYER_DISTRIBUTION_PLOT, "Selected units per block against relative depth (paper: mostly first and last layers)."),
                  "Share of the selected units by depth (%, all languages):\n", markdown_table(_depth_share(dist)), ""]
    if (f / Fig.OVERLAP).is_file():
        shared = pd.read_csv(f / Fig.OVERLAP)
        off = shared[shared.language_a != shared.language_b]
        parts += ["## Overlap between languages (Figure 2)\n", _figure(layout, Fig.OVERLAP_PLOT, "Units shared by two languages' top-N (left) and bottom-N (right) sets, % of N (paper: < 5%)."),
                  f"Largest overlap between two languages: top {off[off.side == 'top'].percent_of_n.max():.1f}%, bottom {off[off.side == 'bottom'].percent_of_n.max():.1f}% of N.\n",
                  "A small overlap is nearly built in: AP is computed one language against the rest, so a unit that "
                  "ranks two languages' texts first scores about 0.5 AP for each, below every top cut-off. The "
                  "references below can fail where the overlap cannot.\n"]
        if (f / Fig.OVERLAP_REFERENCE).is_file():
            parts += overlap_reference_lines(pd.read_csv(f / Fig.OVERLAP_REFERENCE)) + [""]
    if (f / Fig.STABILITY).is_file():
        parts += stability_lines(pd.read_csv(f / Fig.STABILITY)) + [""]
    if (f / Fig.MAIN_RATES).is_file():
        main = pd.read_csv(f / Fig.MAIN_RATES)
        parts += ["## Forcing the units steers generation (Figures 3-5)\n",
                  _figure(layout, Fig.TARGET_RATE_PLOT, "Share of 100 unconditional generations in each language, without vs with its top-N + bottom-N units forced."),
                  "Target-language rate (%) per condition, 95% Wilson interval in brackets; `rise` = both - none and "
                  "`both - random` (as many random units of the same blocks forced) with Newcombe's interval.\n",
                  markdown_table(rates_with_intervals(main)),
                  f"\nMean rise: **{main['rise'].mean():+.1f} points** (target-language rate, percent); its interval lies "
                  f"above 0 for {int((main['rise_low'] > 0).sum()) if 'rise_low' in main.columns else '?'} of {len(main)} languages.\n",
                  _figure(layout, Fig.RATE_VS_N_PLOT, "Target-language rate against the number of forced units per side (log axis)."),
                  _figure(layout, Fig.TOP_BOTTOM_BOTH_PLOT, "Forcing only the top-N, only the bottom-N, or both.")]
        if (f / Fig.FLUENCY).is_file():
            fluency = pd.read_csv(f / Fig.FLUENCY)  # numbers may be NaN (a condition of empty texts)
            parts += ["### Fluency of the forced texts\n",
                      "Language ID alone counts target-script gibberish as a success. Per condition: the median perplexity "
                      "of the texts under the unforced model (95% interval of the median) and the share of degenerate "
                      "texts (few distinct token bigrams, or one token over half the text; Wilson interval).\n",
                      markdown_table(fluency_display(fluency, p.scoring.n_per_side)), ""]
    if (f / Fig.TRANSLATION).is_file() and (layout.root / "generations" / "translation.csv").is_file():
        tr = pd.read_csv(f / Fig.TRANSLATION)
        values = [v for v in ("target_rate", "content_rate", "bleu", "language_name_only") if v in tr.columns]
        wide = tr.pivot_table(index=["task", "target"], columns="condition", values=values, sort=False)
        wide.columns = [f"{metric} ({cond})" for metric, cond in wide.columns]
        parts += ["## Translation prompt with forced units (Figure 6)\n",
                  _figure(layout, Fig.TRANSLATION_PLOT, "Answers to the translation prompt in the target language (top) and BLEU (bottom), without vs with the target's units forced."),
                  "`none` = no intervention, `both` = top-N + bottom-N forced; `language_name_only` counts answers that only "
                  "name a language (\"英語\" is Japanese but not a translation); `content_rate` is the target-language rate "
                  "without them, on which the claim is decided.\n",
                  markdown_table(wide.reset_index()), ""]
    if (f / Fig.EXAMPLES).is_file():
        ex = pd.read_csv(f / Fig.EXAMPLES, keep_default_na=False)
        ex = ex.assign(text=ex["text"].str.slice(0, 160), target=ex["target"].replace("", "(none)"))
        columns = ["condition", "target", *(["degenerate"] if "degenerate" in ex.columns else []), "text"]
        parts += ["## Example generations\n", markdown_table(ex[columns]), ""]
    parts += _comparison_section(p, layout)
    parts += _paper_section(p, layout) + _exactness_section(layout) + _stages_section(layout) + _batch_section(layout)
    return "\n".join(parts) + "\n"


def write_report(p: Params, layout: RunLayout) -> Path:
    return write_text(layout.figures / "README.md", build_report(p, layout))
