"""The translation experiment (paper §4.3): does forcing L's units make a translation prompt answer in L?

For each task and target language L, the model continues the paper's prompt greedily, once without
intervention and once with L's top-N + bottom-N units forced. The prompt never names the target
language, so without intervention a model may answer in any language (or just name one).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tqdm import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from langneurons.base.parts import Part, run_parts
from langneurons.base.proportions import wilson
from langneurons.base.batch_halving import BatchSize, as_batch_size
from langneurons.control.forcing_runs import Condition, ModelLoader, units_for
from langneurons.base.faults import oom_point
from langneurons.control.generation import greedy_continuations
from langneurons.control.intervention import force_units, forcing_spec
from langneurons.data.language_id import detect_languages
from langneurons.base.params import Params
from langneurons.data.profile_data import translation_dir, translation_pairs
from langneurons.control.translation import build_prompt, corpus_bleu, extract_answer, is_language_name_only, load_hub_pairs, load_official_pairs


COLUMNS = ["task", "target", "condition", "n_per_side", "pair", "source", "reference", "continuation", "answer"]


def translation_parts(load: ModelLoader, pairs: dict[tuple[str, str], pd.DataFrame], scores: dict[str, pd.DataFrame],
                      n_per_side: int, value: str, max_new_tokens: int, batch: BatchSize,
                      stop_at_answer_line: bool) -> list[Part]:
    """One part per (task, language, condition), in that order (base/parts.py): its answers, one row per pair.

    `load` gives the model and tokenizer when a part is made (a cluster job whose parts are all
    finished never loads the model)."""

    def make(step: int, task: str, lang: str, cond: Condition, table: pd.DataFrame) -> pd.DataFrame:
        model, tokenizer = load()
        prompts = [build_prompt(s) for s in table["source"]]

        def generate(size: int) -> list[str]:
            oom_point("translation", step, size)
            if cond.name == "none":
                return greedy_continuations(model, tokenizer, prompts, max_new_tokens, size, stop_at_answer_line)
            with force_units(model, forcing_spec(units_for(scores[cond.target], cond), value)):
                return greedy_continuations(model, tokenizer, prompts, max_new_tokens, size, stop_at_answer_line)

        out = batch.run(generate)
        return table.assign(task=task, target=lang, condition=cond.name, n_per_side=cond.n_per_side,
                            pair=range(len(table)), continuation=out, answer=[extract_answer(c) for c in out])

    todo = [(task, lang, cond, table) for (task, lang), table in pairs.items()
            for cond in (Condition("none", lang, 0, 0), Condition("both", lang, n_per_side, n_per_side))]
    return [Part(f"{task} {lang} {cond.name}", lambda i=i, x=(task, lang, cond, table): make(i, *x), len(table))
            for i, (task, lang, cond, table) in enumerate(todo)]


def run_translation(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: dict[tuple[str, str], pd.DataFrame],
    scores: dict[str, pd.DataFrame],
    n_per_side: int,
    value: str,
    max_new_tokens: int,
    batch_size: int | BatchSize,
    stop_at_answer_line: bool = False,
    parts_dir: Path | None = None,
) -> pd.DataFrame:
    """One row per (task, target, condition, pair): source, reference, raw continuation, answer.

    `stop_at_answer_line` (param translation.stop_at_answer_line): a row stops once its answer line
    is complete; the answers (and so BLEU) are those of full-length generation, the stored
    continuation ends after the answer line.

    With `parts_dir`, each finished (task, language, condition) is saved there and reused by a rerun
    after an interruption (a real model spends an hour here on a CPU), or made by a cluster job
    (run/shard_parts.py); the caller keys the folder by everything the answers depend on.

    A `BatchSize` that halves on out-of-memory generates the failed (task, language, condition) again
    with the smaller batch."""
    batch = as_batch_size("translation.batch_size", batch_size)
    parts = translation_parts(lambda: (model, tokenizer), pairs, scores, n_per_side, value, max_new_tokens, batch,
                              stop_at_answer_line)
    bar = tqdm(desc="translation", unit="prompt", total=sum(part.size for part in parts))  # rate and ETA
    frames = run_parts(parts, parts_dir, bar=bar)
    bar.close()
    return pd.concat(list(frames.values()), ignore_index=True)[COLUMNS]


def translation_metrics(results: pd.DataFrame) -> pd.DataFrame:
    """Per (task, target, condition): target-language rate of the answers with its 95% Wilson interval
    (low, high), corpus BLEU, how many answers are only a language name, and `content_rate`: the rate
    without them ("英語" is Japanese, but not a translation; the claim is decided on this one), with
    its interval (content_low, content_high)."""
    detected = results.assign(detected=detect_languages(results["answer"].fillna("").tolist()),
                              name_only=[is_language_name_only(a) for a in results["answer"].fillna("")])
    rows = []
    for (task, lang, cond), g in detected.groupby(["task", "target", "condition"], sort=False):
        hits = int((g["detected"] == lang).sum())
        content = int(((g["detected"] == lang) & ~g["name_only"]).sum())
        low, high = wilson(hits, len(g))
        c_low, c_high = wilson(content, len(g))
        rows.append({
            "task": task, "target": lang, "condition": cond, "n": len(g),
            "target_rate": 100 * hits / len(g), "low": 100 * float(low), "high": 100 * float(high),
            "content_rate": 100 * content / len(g), "content_low": 100 * float(c_low), "content_high": 100 * float(c_high),
            "bleu": corpus_bleu(g["answer"].fillna("").tolist(), g["reference"].tolist(), lang),
            "language_name_only": int(g["name_only"].sum()),
            "empty": int((g["answer"].fillna("") == "").sum()),
        })
    return pd.DataFrame(rows)


def load_pairs(p: Params) -> dict[tuple[str, str], pd.DataFrame]:
    """(task, language) -> first n source/reference pairs, for the run's languages."""
    out = {}
    official_dir = translation_dir(p) if p.translation.source == "official" else None  # fetched once, if needed
    for task, lang in translation_pairs(p):
        if official_dir is not None:
            out[(task, lang)] = load_official_pairs(official_dir, task, lang, p.translation.n_pairs)
        else:
            spec = p.translation.hub.get(f"{task}/{lang}") or p.translation.hub[task]
            out[(task, lang)] = load_hub_pairs(spec, lang, p.translation.n_pairs)
    return out
