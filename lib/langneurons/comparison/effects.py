"""The two experiments of notebook 07 on each method's units at matched size: forcing and deactivation.

Forcing is the paper's intervention (every position fixed to on_p50, unconditional sampling with
the paper's protocol and seeds, then lid.176); deactivation is LAPE's (every position fixed to 0,
perplexity of held-out texts of every language, see deactivation.py). The same units are used
for both, so the two experiments see the same sets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from langneurons.base.params import GenerationParams
from langneurons.control.deactivation import perplexity_matrix
from langneurons.control.generation import sample_texts
from langneurons.control.intervention import force_units, forcing_spec


def _sample(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, gen: GenerationParams) -> list[str]:
    return sample_texts(model, tokenizer, n_samples=gen.n_samples, max_new_tokens=gen.max_new_tokens,
                        temperature=gen.temperature, top_k=gen.top_k, top_p=gen.top_p, first_seed=gen.first_seed,
                        batch_size=gen.batch_size, start=gen.start)


def forcing_generations(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                        matched: dict[str, dict[str, pd.DataFrame]], languages: list[str], gen: GenerationParams,
                        value: str = "on_p50") -> pd.DataFrame:
    """Texts without intervention (condition none) and with each method's units of each language forced.

    Languages whose set is empty for a method are left out for it (nothing to force)."""
    todo = [(method, lang, by_lang[lang]) for method, by_lang in matched.items() for lang in languages
            if lang in by_lang and not by_lang[lang].empty]
    bar = tqdm(desc="forcing", unit="sample", total=(1 + len(todo)) * gen.n_samples)  # conditions x samples
    frames = [pd.DataFrame({"condition": "none", "target": "", "n_units": 0, "text": _sample(model, tokenizer, gen)})]
    bar.update(gen.n_samples)
    for method, lang, units in todo:
        bar.set_postfix_str(f"{method} {lang} k={len(units)}")
        with force_units(model, forcing_spec(units, value)):
            texts = _sample(model, tokenizer, gen)
        frames.append(pd.DataFrame({"condition": method, "target": lang, "n_units": len(units), "text": texts}))
        bar.update(gen.n_samples)
    bar.close()
    table = pd.concat(frames, ignore_index=True)
    table.insert(3, "sample", np.tile(np.arange(gen.n_samples), len(frames)))
    return table


def deactivation_table(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                       matched: dict[str, dict[str, pd.DataFrame]], heldout: dict[str, list[str]],
                       batch_size: int, seq_len: int) -> pd.DataFrame:
    """Per method, the language x language perplexity matrix with each language's units zeroed."""
    frames = []
    for method, by_lang in tqdm(matched.items(), desc="deactivation", unit="method"):
        specs = {lang: forcing_spec(units, "zero") for lang, units in by_lang.items() if not units.empty}
        if specs:
            frames.append(perplexity_matrix(model, tokenizer, heldout, specs, batch_size, seq_len).assign(method=method))
    if not frames:
        return pd.DataFrame(columns=["method", "deactivated", "evaluated", "tokens", "ppl_base", "ppl", "ppl_change",
                                     "log_ppl_change", "n_units"])
    table = pd.concat(frames, ignore_index=True)
    sizes = {(m, lang): len(u) for m, by_lang in matched.items() for lang, u in by_lang.items()}
    table["n_units"] = [sizes[(m, lang)] for m, lang in zip(table["method"], table["deactivated"])]
    return table[["method", *[c for c in table.columns if c != "method"]]]
