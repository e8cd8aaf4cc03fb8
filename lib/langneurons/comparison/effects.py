"""The two experiments of notebook 07 on each method's units at matched size: forcing and deactivation.

Forcing is the paper's intervention (every position fixed to on_p50, unconditional sampling with
the paper's protocol and seeds, then lid.176); deactivation is LAPE's (every position fixed to 0,
perplexity of held-out texts of every language, see deactivation.py). The same units are used
for both, so the two experiments see the same sets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from langneurons.base.params import GenerationParams
from langneurons.base.parts import Part
from langneurons.control.deactivation import heldout_nll, perplexity_rows
from langneurons.control.forcing_runs import ModelLoader
from langneurons.control.generation import sample_texts
from langneurons.control.intervention import force_units, forcing_spec


def _sample(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, gen: GenerationParams) -> list[str]:
    return sample_texts(model, tokenizer, n_samples=gen.n_samples, max_new_tokens=gen.max_new_tokens,
                        temperature=gen.temperature, top_k=gen.top_k, top_p=gen.top_p, first_seed=gen.first_seed,
                        batch_size=gen.batch_size, start=gen.start)


def forcing_parts(load: ModelLoader, matched: dict[str, dict[str, pd.DataFrame]], languages: list[str],
                  gen: GenerationParams, value: str = "on_p50") -> list[Part]:
    """One part per condition (base/parts.py): no intervention (condition none), then each method's
    units of each language forced. Languages whose set is empty for a method are left out for it."""
    todo = [("none", "", None)] + [(method, lang, by_lang[lang]) for method, by_lang in matched.items()
                                   for lang in languages if lang in by_lang and not by_lang[lang].empty]

    def make(method: str, lang: str, units: pd.DataFrame | None) -> pd.DataFrame:
        model, tokenizer = load()
        if units is None:
            texts = _sample(model, tokenizer, gen)
        else:
            with force_units(model, forcing_spec(units, value)):
                texts = _sample(model, tokenizer, gen)
        return pd.DataFrame({"condition": method, "target": lang, "n_units": 0 if units is None else len(units),
                             "text": texts})

    return [Part(f"forcing {m} {lang or '-'}", lambda x=(m, lang, u): make(*x), gen.n_samples) for m, lang, u in todo]


def forcing_table(frames: list[pd.DataFrame], n_samples: int) -> pd.DataFrame:
    """The forcing parts in one table, with each text's sample index."""
    table = pd.concat(frames, ignore_index=True)
    table.insert(3, "sample", np.tile(np.arange(n_samples), len(frames)))
    return table


def deactivation_parts(load: ModelLoader, matched: dict[str, dict[str, pd.DataFrame]], heldout: dict[str, list[str]],
                       batch_size: int, seq_len: int) -> tuple[list[Part], list[tuple[str, str]]]:
    """The held-out NLL of the model as it is (the first part), then one part per (method, language)
    whose units are zeroed; and the (method, language) of each of those."""
    zeroed = [(method, lang) for method, by_lang in matched.items() for lang, units in by_lang.items() if not units.empty]

    def make(method: str | None, lang: str | None) -> pd.DataFrame:
        model, tokenizer = load()
        spec = None if method is None else forcing_spec(matched[method][lang], "zero")
        return heldout_nll(model, tokenizer, heldout, spec, batch_size, seq_len)

    parts = [Part("held-out perplexity", lambda: make(None, None))]
    parts += [Part(f"deactivation {m} {lang}", lambda x=(m, lang): make(*x)) for m, lang in zeroed]
    return parts, zeroed


def deactivation_from_parts(frames: list[pd.DataFrame], zeroed: list[tuple[str, str]],
                            matched: dict[str, dict[str, pd.DataFrame]]) -> pd.DataFrame:
    """Per method, the language x language perplexity matrix with each language's units zeroed."""
    if not zeroed:
        return pd.DataFrame(columns=["method", "deactivated", "evaluated", "tokens", "ppl_base", "ppl", "ppl_change",
                                     "log_ppl_change", "n_units"])
    base, after = frames[0], frames[1:]
    methods = list(dict.fromkeys(m for m, _ in zeroed))
    table = pd.concat([perplexity_rows(base, {lang: t for (m, lang), t in zip(zeroed, after) if m == method})
                       .assign(method=method) for method in methods], ignore_index=True)
    table["n_units"] = [len(matched[m][lang]) for m, lang in zip(table["method"], table["deactivated"])]
    return table[["method", *[c for c in table.columns if c != "method"]]]
