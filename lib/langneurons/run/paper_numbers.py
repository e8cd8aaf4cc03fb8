"""The paper's own numbers: the authors' released generations, scored by this project's code.

The original code released, for each of the paper's eight models, the texts it generated under
every forcing condition (584 CSV files, outputs/<model>/sense/<lang>/expertise/*.csv). Scoring
them with the same functions that score our runs (FastText language ID, answer extraction,
BLEU) gives the paper's figures 3-6 from the authors' own generations, and numbers to put beside
a run of the same model: `make paper-numbers` writes paper_figures/paper/.

File names: created_sentence_on_p50_<N>_expertise_limited_<M>_<top|bottom|both>[_<task>_condition_2].csv.
N is the number of forced units (`both`: N/2 top + N/2 bottom; `top`/`bottom`: N of that side);
N = 0 is no intervention (one unconditional file per model, under en/; one translation file per
task and language). In translation files `sentence` is prompt + continuation, and `seed` is the
1-based index of the pair in the released pickle.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from langneurons.base import paths
from langneurons.base.atomic import write_csv, write_text
from langneurons.run.figures import plot_rate_vs_n, plot_rate_with_without, plot_top_bottom_both, plot_translation, save_figure
from langneurons.base.languages import LANGUAGES
from langneurons.control.language_rates import detect, main_rates, target_rates
from langneurons.base.params import PAPER_MODELS as RELEASE_MODELS
from langneurons.data.release_files import Entry, Release, ReleaseError, generation_files, load_manifest, translation_file
from langneurons.run.report import markdown_table
from langneurons.base.errors import DataError
from langneurons.base.proportions import wilson
from langneurons.base.params import TASKS
from langneurons.control.translation import extract_answer, load_official_pairs, split_continuation
from langneurons.control.translation_eval import translation_metrics
from langneurons.run.stages import Fig

UNCONDITIONAL = "uncond"
PAPER_N_PER_SIDE = 1000  # the paper's main condition: top-1000 + bottom-1000 ("2000 both")
COLUMNS = ("forcing_value", "num_units", "top_n", "seed", "sentence", "mean_metric", "forced_layer", "perplexity",
           "context", "concept")
_NAME = re.compile(
    r"^outputs/(?P<model>[^/]+)/sense/(?P<lang>[a-z]+)/expertise/created_sentence_on_p50_(?P<n>\d+)"
    r"_expertise_limited_(?P<limit>\d+)_(?P<selection>top|bottom|both)(?:_(?P<task>[a-z0-9]+)_condition_2)?\.csv$"
)


@dataclass(frozen=True)
class ReleasedFile:
    path: str  # path in the release
    model: str  # the release's model folder, e.g. Llama-2-7b-hf
    lang: str  # the language folder: the forced language (for N = 0 translation: the target language)
    task: str  # uncond, or the translation task
    n_units: int  # units forced in all (both: half top, half bottom)
    selection: str  # top | bottom | both

    @property
    def condition(self) -> str:
        """Our condition name: none (N = 0), else the selection."""
        return "none" if self.n_units == 0 else self.selection

    @property
    def n_top(self) -> int:
        return {"none": 0, "top": self.n_units, "bottom": 0, "both": self.n_units // 2}[self.condition]

    @property
    def n_bottom(self) -> int:
        return {"none": 0, "top": 0, "bottom": self.n_units, "both": self.n_units // 2}[self.condition]


def parse_path(path: str) -> ReleasedFile:
    m = _NAME.match(path)
    if not m:
        raise DataError(f"{path} is not a released generation file (outputs/<model>/sense/<lang>/expertise/"
                        "created_sentence_on_p50_<N>_expertise_limited_<N>_<top|bottom|both>[_<task>_condition_2].csv)")
    task = m["task"] or UNCONDITIONAL
    if task != UNCONDITIONAL and task not in TASKS:
        raise DataError(f"{path}: unknown translation task '{task}' (known: {', '.join(TASKS)})")
    return ReleasedFile(path, m["model"], m["lang"], task, int(m["n"]), m["selection"])


def read_generation_file(local: Path, where: str) -> pd.DataFrame:
    """seed and sentence of a released CSV (an unnamed index column first); empty sentences stay ''."""
    try:
        table = pd.read_csv(local, index_col=0, keep_default_na=False, dtype={"sentence": str})
    except (ValueError, pd.errors.ParserError) as e:
        raise DataError(f"{where} is not a readable CSV ({e}): fetch it again (make paper-numbers)") from e
    missing = [c for c in ("seed", "sentence") if c not in table.columns]
    if missing:
        raise DataError(f"{where} lacks the columns {missing} (has {list(table.columns)}): not a released generation file")
    return table.assign(seed=pd.to_numeric(table["seed"], errors="raise").astype(int))


def released_tables(
    files: list[ReleasedFile], local: dict[str, Path], pairs_dir: Path
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(unconditional, translation) generations in the layout of our own runs' tables.

    Unconditional: model, path, condition, target, n_top, n_bottom, seed, text — the N = 0 file
    is the shared `none` condition (empty target), as in our runs. Translation: model, path, task,
    target, condition, n_per_side, pair, continuation, answer, reference.
    """
    uncond, trans = [], []
    pairs_cache: dict[tuple[str, str], pd.DataFrame] = {}
    for f in files:
        table = read_generation_file(local[f.path], f.path)
        if f.task == UNCONDITIONAL:
            uncond.append(pd.DataFrame({
                "model": f.model, "path": f.path, "condition": f.condition, "target": "" if f.n_units == 0 else f.lang,
                "n_top": f.n_top, "n_bottom": f.n_bottom, "seed": table["seed"].to_numpy(), "text": table["sentence"].to_numpy(),
            }))
            continue
        key = (f.task, f.lang)
        if key not in pairs_cache:
            pairs_cache[key] = load_official_pairs(pairs_dir, f.task, f.lang, 10**6)
        pairs = pairs_cache[key]
        index = table["seed"].to_numpy() - 1
        if index.min(initial=0) < 0 or index.max(initial=0) >= len(pairs):
            raise DataError(f"{f.path}: seed values must index the {len(pairs)} released {f.task} pairs (1-based)")
        continuation = [split_continuation(s) for s in table["sentence"]]
        trans.append(pd.DataFrame({
            "model": f.model, "path": f.path, "task": f.task, "target": f.lang, "condition": f.condition,
            "n_per_side": f.n_top, "pair": index, "continuation": continuation,
            "answer": [extract_answer(c) for c in continuation], "reference": pairs["reference"].to_numpy()[index],
        }))
    empty_u = pd.DataFrame(columns=["model", "path", "condition", "target", "n_top", "n_bottom", "seed", "text"])
    empty_t = pd.DataFrame(columns=["model", "path", "task", "target", "condition", "n_per_side", "pair", "continuation",
                                    "answer", "reference"])
    return (pd.concat(uncond, ignore_index=True) if uncond else empty_u,
            pd.concat(trans, ignore_index=True) if trans else empty_t)


@dataclass
class PaperNumbers:
    released_scores: pd.DataFrame  # one row per released file: model, lang, task, n_units, selection, target_rate, bleu
    rates: pd.DataFrame  # model + our rates layout (condition, target, n_top, n_bottom, n, target_rate)
    translation: pd.DataFrame  # model + our translation metrics layout


def score_released(files: list[ReleasedFile], local: dict[str, Path], pairs_dir: Path) -> PaperNumbers:
    """Score every released file with the code that scores our runs (lid_scoring, translation_eval)."""
    uncond, trans = released_tables(files, local, pairs_dir)
    detected = detect(uncond)
    keys = ("condition", "target", "n_top", "n_bottom")
    rates = pd.concat([target_rates(d, list(LANGUAGES), keys).assign(model=m)
                       for m, d in detected.groupby("model", sort=False)], ignore_index=True)
    metrics = pd.concat([translation_metrics(t).assign(model=m) for m, t in trans.groupby("model", sort=False)],
                        ignore_index=True) if len(trans) else pd.DataFrame(columns=["model", "task", "target", "condition",
                                                                                     "target_rate", "bleu"])
    rows = []
    by_path = detected.groupby("path", sort=False)["detected"]
    for f in files:
        if f.task == UNCONDITIONAL:
            rate, bleu = 100 * float((by_path.get_group(f.path) == f.lang).mean()), None
        else:
            m = metrics[(metrics.model == f.model) & (metrics.task == f.task) & (metrics.target == f.lang)
                        & (metrics.condition == f.condition)].iloc[0]
            rate, bleu = float(m["target_rate"]), float(m["bleu"])
        rows.append({"model": f.model, "lang": f.lang, "task": f.task, "n_units": f.n_units, "selection": f.selection,
                     "target_rate": rate, "bleu": bleu})
    return PaperNumbers(pd.DataFrame(rows), rates[["model", *keys, "n", "hits", "target_rate", "low", "high"]],
                        metrics[["model", *[c for c in metrics.columns if c != "model"]]])


def mean_over_models(rates: pd.DataFrame) -> pd.DataFrame:
    """Per language: mean target rate over the models at N = 0 and with top-1000 + bottom-1000 forced,
    the samples behind each (n) and the 95% Wilson interval of the pooled rate (all models' samples)."""
    main = pd.concat([main_rates(r, PAPER_N_PER_SIDE).assign(model=m) for m, r in rates.groupby("model", sort=False)])
    out = main.groupby("target", sort=False)[["none", "both"]].mean().reindex(list(LANGUAGES))
    out["models"] = main.groupby("target")["model"].nunique().reindex(list(LANGUAGES))
    for side, mask in (("none", rates.condition == "none"),
                       ("both", (rates.condition == "both") & (rates.n_top == PAPER_N_PER_SIDE))):
        pooled = rates[mask].groupby("target")[["hits", "n"]].sum().reindex(list(LANGUAGES))
        low, high = wilson(pooled["hits"].to_numpy(), pooled["n"].to_numpy())
        out[f"{side}_n"], out[f"{side}_low"], out[f"{side}_high"] = pooled["n"].to_numpy(), 100 * low, 100 * high
    return out.reset_index()


def write_paper_numbers(numbers: PaperNumbers, out_dir: Path) -> Path:
    """released_scores.csv, per-model figures 3-6 with their CSVs, mean rates and a README page."""
    write_csv(out_dir / "released_scores.csv", numbers.released_scores)
    write_csv(out_dir / Fig.TARGET_RATES, numbers.rates)
    write_csv(out_dir / Fig.TRANSLATION, numbers.translation)
    means = mean_over_models(numbers.rates)
    write_csv(out_dir / "mean_rates.csv", means)
    langs = list(LANGUAGES)
    n = PAPER_N_PER_SIDE
    parts = [
        "# The paper's own numbers, from the authors' released generations\n",
        "Every text the original code released for the paper's eight models (github.com/kojima-takeshi188/lang_neuron, "
        "pinned commit), scored by this project's code: FastText lid.176 for the language, the first answer line and "
        "sacrebleu for translation. Rebuilt by `make paper-numbers`; numbers in the CSV files beside this page "
        "(`released_scores.csv`: one row per released file).\n",
        f"## Mean over the models: target-language rate without forcing and with top-{n} + bottom-{n} forced\n",
        markdown_table(means), "",
    ]
    for model, rates in numbers.rates.groupby("model", sort=False):
        figs = [(f"{Fig.TARGET_RATE_PLOT}-{model}", plot_rate_with_without(rates, langs, n, f"Forcing language units — {model} (paper)")),
                (f"{Fig.RATE_VS_N_PLOT}-{model}", plot_rate_vs_n(rates, langs, f"Rate vs forced units — {model} (paper)")),
                (f"{Fig.TOP_BOTTOM_BOTH_PLOT}-{model}", plot_top_bottom_both(rates, langs, n, f"Top vs bottom vs both — {model} (paper)"))]
        tr = numbers.translation[numbers.translation.model == model]
        if len(tr):
            figs.append((f"{Fig.TRANSLATION_PLOT}-{model}", plot_translation(tr, f"Translation prompt — {model} (paper)")))
        parts += [f"## {model}\n", markdown_table(main_rates(rates, n)), ""]
        for name, fig in figs:
            save_figure(fig, out_dir, name)
            plt.close(fig)
            parts.append(f"![{name}]({name}.png)\n")
    return write_text(out_dir / "README.md", "\n".join(parts) + "\n")


def release_files(manifest: dict[str, Entry], models: tuple[str, ...] = RELEASE_MODELS) -> list[ReleasedFile]:
    return [f for f in map(parse_path, generation_files(manifest)) if f.model in models]


def run(release: Release, out_dir: Path, models: tuple[str, ...] = RELEASE_MODELS) -> PaperNumbers:
    """Fetch (or find verified) the generation files and translation pairs, score them, write out_dir."""
    files = release_files(release.manifest, models)
    if not files:
        raise DataError(f"the release manifest lists no generation files for {list(models)}")
    pair_files = sorted({translation_file(f.task, f.lang) for f in files if f.task != UNCONDITIONAL})
    release.fetch_all(pair_files)
    local = dict(zip([f.path for f in files], release.fetch_all([f.path for f in files])))
    pairs_dir = release.local_path(pair_files[0]).parent if pair_files else out_dir
    numbers = score_released(files, local, pairs_dir)
    write_paper_numbers(numbers, out_dir)
    return numbers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=None, help="release base: a mirror, folder or file:// URL "
                        "(default: $LANGNEURONS_RELEASE_URL, else GitHub at the pinned commit)")
    parser.add_argument("--cache-dir", default=None, help="where fetched files are kept (default: the user cache)")
    parser.add_argument("--out", default="paper_figures/paper", help="output folder (relative = project root)")
    args = parser.parse_args(argv)
    try:
        release = Release(url=args.url, cache_dir=args.cache_dir, manifest=load_manifest())
        numbers = run(release, paths.resolve(args.out))
    except (ReleaseError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    means = mean_over_models(numbers.rates)
    print(f"scored {len(numbers.released_scores)} released files -> {paths.resolve(args.out)}")
    print(f"mean target rate over the models, N = 0 vs top-{PAPER_N_PER_SIDE} + bottom-{PAPER_N_PER_SIDE}:")
    print(means.round(1).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
