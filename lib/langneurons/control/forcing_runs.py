"""The control experiment (paper §4.2): generate while forcing a language's units, per condition.

Conditions per target language L, all forcing L's units to their statistic (default on_p50):
- `both`: top-N and bottom-N by AP (the paper's main result, N = scoring.n_per_side); the sweep
  over N (intervention.sweep, capped at half the units) uses the same condition at other N;
- `top`: top-N only; `bottom`: bottom-N only;
- `random`: a baseline, as many units as `both` at N drawn at random (seeded) from the same blocks,
  none of them L's selected units, each forced to its own statistic for L: forcing L's units steers
  only where `both` beats this by more than the intervals;
and one `none` condition without intervention, shared by all languages.

Each text also gets its fluency under the unforced model (control/fluency.py): a condition that makes
the model write target-script gibberish is not a success.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from langneurons.base.atomic import write_csv, write_parquet
from langneurons.base.batch_halving import BatchSize, as_batch_size
from langneurons.base.faults import oom_point
from langneurons.base.languages import LANGUAGES
from langneurons.base.params import FluencyParams, GenerationParams, Params
from langneurons.base.parts import Part, run_parts
from langneurons.control.fluency import fluency_columns
from langneurons.control.generation import sample_texts, start_ids
from langneurons.control.intervention import force_units, forcing_spec


@dataclass(frozen=True)
class Condition:
    name: str  # none | both | top | bottom | random
    target: str  # language whose units are forced; "" for none
    n_top: int  # top units by AP forced (random: as many units as these two, from the same blocks)
    n_bottom: int  # bottom units by AP forced
    seed: int = 0  # random: the draw's seed (intervention.random_seed)

    @property
    def n_per_side(self) -> int:
        return max(self.n_top, self.n_bottom)


def conditions_for(languages: list[str], n_per_side: int, sweep: list[int], n_units: int,
                   random_seed: int | None = None) -> list[Condition]:
    """All conditions of the experiment, each once (sweep values capped at n_units // 2); with
    `random_seed`, each language's random-unit baseline at N too."""
    cap = n_units // 2
    out = [Condition("none", "", 0, 0)]
    for lang in languages:
        sizes = sorted({min(k, cap) for k in [*sweep, n_per_side]})
        out += [Condition("both", lang, k, k) for k in sizes]
        out += [Condition("top", lang, n_per_side, 0), Condition("bottom", lang, 0, n_per_side)]
        if random_seed is not None:
            out.append(Condition("random", lang, n_per_side, n_per_side, random_seed))
    return out


def experiment_conditions(p: Params, languages: list[str], n_units: int) -> list[Condition]:
    """Notebook 05's conditions (the cluster's array tasks build the same list: run/shard_parts.py)."""
    return conditions_for(languages, p.scoring.n_per_side, p.intervention.sweep, n_units, p.intervention.random_seed)


def _selected(ap: np.ndarray, n_top: int, n_bottom: int) -> np.ndarray:
    top = np.argsort(-ap, kind="stable")[:n_top]
    bottom = np.argsort(ap, kind="stable")[:n_bottom]
    return np.concatenate([top, bottom])


def random_units(scores: pd.DataFrame, n_top: int, n_bottom: int, seed: int, language: str) -> pd.DataFrame:
    """As many units as the language's top-n_top + bottom-n_bottom, drawn at random from the same
    blocks (block by block, the same count), never one of those selected units; seeded by (seed,
    language), so each language gets its own draw and a rerun the same one."""
    chosen = _selected(scores["ap"].to_numpy(), n_top, n_bottom)
    blocks = scores["block"].to_numpy()
    wanted = pd.Series(blocks[chosen]).value_counts()
    rng = np.random.default_rng([seed, LANGUAGES.index(language) if language in LANGUAGES else sum(map(ord, language))])
    key = rng.random(len(scores))
    key[chosen] = np.inf  # the language's own units come last: never drawn while others remain
    rank = pd.Series(key).groupby(blocks).rank(method="first").to_numpy()
    take = rank <= pd.Series(blocks).map(wanted).fillna(0).to_numpy()
    if take.sum() != len(chosen) or np.isinf(key[take]).any():
        raise ValueError(f"random units for {language}: a block has too few units besides the selected ones "
                         f"(n_per_side {max(n_top, n_bottom)} is too large for a random baseline on this model)")
    return scores.iloc[np.flatnonzero(take)]


def units_for(scores: pd.DataFrame, condition: Condition) -> pd.DataFrame:
    """The forced units of a condition: highest-AP n_top and lowest-AP n_bottom (stable ties), or
    for `random` as many drawn at random from the same blocks."""
    if condition.name == "random":
        return random_units(scores, condition.n_top, condition.n_bottom, condition.seed, condition.target)
    return scores.iloc[_selected(scores["ap"].to_numpy(), condition.n_top, condition.n_bottom)]


ModelLoader = Callable[[], tuple[PreTrainedModel, PreTrainedTokenizerBase]]


def condition_parts(load: ModelLoader, conditions: list[Condition], scores: dict[str, pd.DataFrame],
                    gen: GenerationParams, value: str, batch: BatchSize, fluency: FluencyParams | None = None) -> list[Part]:
    """One part per condition (base/parts.py): its gen.n_samples texts, one row each; with `fluency`,
    each text's fluency under the unforced model (control/fluency.py) in the same row.

    `load` gives the model and tokenizer when a part is made (a cluster job whose parts are all
    finished never loads the model)."""

    def make(i: int, cond: Condition) -> pd.DataFrame:
        model, tokenizer = load()

        def generate(size: int) -> list[str]:
            oom_point("generation", i, size)
            args = dict(n_samples=gen.n_samples, max_new_tokens=gen.max_new_tokens, temperature=gen.temperature,
                        top_k=gen.top_k, top_p=gen.top_p, first_seed=gen.first_seed, batch_size=size,
                        start=gen.start)
            if cond.name == "none":
                return sample_texts(model, tokenizer, **args)
            with force_units(model, forcing_spec(units_for(scores[cond.target], cond), value)):
                return sample_texts(model, tokenizer, **args)

        table = pd.DataFrame({
            "condition": cond.name, "target": cond.target, "n_top": cond.n_top, "n_bottom": cond.n_bottom,
            "sample": np.arange(gen.n_samples), "seed": gen.first_seed + np.arange(gen.n_samples),
            "text": batch.run(generate),
        })
        if fluency is None:
            return table
        stats = fluency_columns(model, tokenizer, table["text"].tolist(), start_ids(tokenizer, gen.start),
                                fluency.distinct2_below, fluency.repeat_share_above, fluency.batch_size)
        return pd.concat([table, stats], axis=1)

    return [Part(f"{c.name} {c.target or '-'} N={c.n_per_side}", lambda i=i, c=c: make(i, c), gen.n_samples)
            for i, c in enumerate(conditions)]


def run_conditions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    conditions: list[Condition],
    scores: dict[str, pd.DataFrame],
    gen: GenerationParams,
    value: str,
    progress: bool = True,
    parts_dir: Path | None = None,
    batch_size: BatchSize | None = None,
    fluency: FluencyParams | None = None,
) -> pd.DataFrame:
    """Generate gen.n_samples texts per condition; one row per text.

    Every condition uses the same seeds (sample i: gen.first_seed + i), so conditions differ only
    by the forcing. With `parts_dir`, each finished condition is saved there and reused by a rerun
    (after an interruption, or made by a cluster job: run/shard_parts.py) instead of being generated
    again; the caller keys the folder by everything the texts depend on. `batch_size` (default:
    gen.batch_size, fixed) may halve on out-of-memory: the failed condition is generated again with
    the smaller batch, and since samples are seeded one by one the texts are the same. `fluency`:
    score each text's fluency too (control/fluency.py).
    """
    batch = as_batch_size("generation.batch_size", batch_size or gen.batch_size)
    parts = condition_parts(lambda: (model, tokenizer), conditions, scores, gen, value, batch, fluency)
    # conditions x samples, with a rate and an ETA (shown live in the terminal by make replicate)
    bar = tqdm(desc="generation", unit="sample", total=len(conditions) * gen.n_samples, disable=not progress)
    frames = run_parts(parts, parts_dir, bar=bar, crash_as="generation")
    bar.close()
    return pd.concat(list(frames.values()), ignore_index=True)


def write_generations(table: pd.DataFrame, stem: Path) -> None:
    """<stem>.parquet (exact: what later cells and stages read) and <stem>.csv (to read by eye).

    Generated text can hold any character (carriage returns, NUL from a tiny model); parquet keeps
    it exactly, where a CSV round trip can split such a text into two rows.
    """
    write_parquet(stem.with_suffix(".parquet"), table)
    write_csv(stem.with_suffix(".csv"), table, quote_strings=True)


def read_generations(stem: Path) -> pd.DataFrame:
    """The table saved by write_generations."""
    return pd.read_parquet(stem.with_suffix(".parquet"))
