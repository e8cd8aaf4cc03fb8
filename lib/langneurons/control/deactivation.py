"""Deactivation (LAPE's main experiment): zero a language's units and measure perplexity on every language.

If a set of units carries language L, switching it off (fixing it to 0 at every position) should
hurt the model on L's texts much more than on other languages' texts. Per method, zeroing each
language's units in turn and measuring the perplexity of held-out texts of every language gives a
language x language matrix whose diagonal should stand out.

Held-out texts must not be texts the units were selected from: `heldout_texts` takes texts the
data stage did not use and `check_heldout` refuses any overlap with the selection texts.
Perplexity is exp(mean negative log-likelihood per predicted token) over all of a language's
texts, each text scored on its own tokens (special tokens the tokenizer adds included, the first
token not predicted), in right-padded batches with the padding masked out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from langneurons.base.errors import DataError
from langneurons.data.textsets import TextSets
from langneurons.model.activations import pad_batch, pad_id_of
from langneurons.model.loading import input_device
from langneurons.control.intervention import Spec, force_units


def _normal(text: str) -> str:
    return " ".join(text.split())


def candidate_texts(lang: str, data_source: str, files_path: Path | None, heldout_path: Path | None) -> list[str]:
    """Texts of `lang` that may serve as held-out texts, before removing the selection texts.

    `heldout_path` (a folder of <code>.txt) wins; else a `files` source offers its own files (the
    lines it did not sample); any other source offers the bundled corpus's held-out split (the six
    languages only), which no bundled set draws from.
    """
    from langneurons.data.files_source import read_language_file

    folder = heldout_path or (files_path if data_source == "files" else None)
    if folder is not None:
        path = folder / f"{lang}.txt"
        return read_language_file(path).texts if path.is_file() else []
    from langneurons.data.corpus import DATASET_BUILD_CODES, heldout_sentences

    return heldout_sentences(lang) if lang in DATASET_BUILD_CODES else []


def heldout_texts(text_sets: TextSets, languages: list[str], n_per_language: int, seed: int, data_source: str,
                  files_path: Path | None = None, heldout_path: Path | None = None) -> dict[str, list[str]]:
    """Up to `n_per_language` texts per language that no set of the data stage uses (seeded sample).

    A language without any such text is left out of the result (the caller says so)."""
    used = {_normal(t) for t in text_sets.texts["text"]}
    out = {}
    for i, lang in enumerate(languages):
        pool = [t for t in dict.fromkeys(candidate_texts(lang, data_source, files_path, heldout_path)) if _normal(t) not in used]
        if not pool:
            continue
        rng = np.random.default_rng([seed, i])
        pick = np.sort(rng.choice(len(pool), size=min(n_per_language, len(pool)), replace=False))
        out[lang] = [pool[j] for j in pick]
    check_heldout(out, text_sets)
    return out


def check_heldout(heldout: dict[str, list[str]], text_sets: TextSets) -> None:
    """Refuse held-out texts that any selection set uses (compared with whitespace normalised)."""
    used = {_normal(t) for t in text_sets.texts["text"]}
    for lang, texts in heldout.items():
        shared = [t for t in texts if _normal(t) in used]
        if shared:
            raise DataError(f"{len(shared)} held-out {lang} texts are also selection texts (e.g. {shared[0][:60]!r}): "
                            "held-out texts must be unseen by the selection; use other texts (comparison.heldout_path)")


@torch.inference_mode()
def text_nll(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str], batch_size: int,
             seq_len: int) -> tuple[float, int]:
    """(summed negative log-likelihood, predicted tokens) over the texts, each cut to seq_len tokens."""
    ids = [x[:seq_len] for x in tokenizer(texts, add_special_tokens=True)["input_ids"]]
    ids = [x for x in ids if len(x) >= 2]
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # similar lengths together: little padding
    total, count = 0.0, 0
    for start in range(0, len(order), batch_size):
        batch = [ids[i] for i in order[start:start + batch_size]]
        input_ids, mask = pad_batch(batch, pad_id_of(tokenizer), input_device(model))
        logits = model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
        target, keep = input_ids[:, 1:], mask[:, 1:].bool()
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        total += float(nll[keep].sum())
        count += int(keep.sum())
    return total, count


def perplexity_matrix(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, heldout: dict[str, list[str]],
                      specs: dict[str, Spec], batch_size: int, seq_len: int) -> pd.DataFrame:
    """One row per (deactivated language, evaluated language): perplexity before and after zeroing.

    `specs` maps each deactivated language to its forcing spec (values 0). Columns: deactivated,
    evaluated, tokens, ppl_base, ppl, ppl_change (after - before), log_ppl_change (log of the ratio:
    comparable across languages whose base perplexities differ)."""
    base = heldout_nll(model, tokenizer, heldout, None, batch_size, seq_len)
    after = {target: heldout_nll(model, tokenizer, heldout, spec, batch_size, seq_len) for target, spec in specs.items()}
    return perplexity_rows(base, after)


NLL_COLUMNS = ["evaluated", "nll", "tokens"]


def heldout_nll(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, heldout: dict[str, list[str]],
                spec: Spec | None, batch_size: int, seq_len: int) -> pd.DataFrame:
    """Summed negative log-likelihood and predicted tokens per evaluated language, with `spec`'s units
    forced (None: the model as it is). One such table is a part of notebook 07's work (float64: exact
    when saved and read back)."""
    def measure() -> list[tuple[float, int]]:
        return [text_nll(model, tokenizer, texts, batch_size, seq_len) for texts in heldout.values()]

    if spec is None:
        values = measure()
    else:
        with force_units(model, spec):
            values = measure()
    return pd.DataFrame({"evaluated": list(heldout), "nll": [v[0] for v in values], "tokens": [v[1] for v in values]})


def perplexity_rows(base: pd.DataFrame, after: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """perplexity_matrix's table from heldout_nll tables: the model as it is, and per deactivated language."""
    before = {lang: nll / count for lang, nll, count in base[NLL_COLUMNS].itertuples(index=False)}
    rows = []
    for target, table in after.items():
        for lang, nll, count in table[NLL_COLUMNS].itertuples(index=False):
            rows.append({"deactivated": target, "evaluated": lang, "tokens": int(count),
                         "ppl_base": float(np.exp(before[lang])), "ppl": float(np.exp(nll / count)),
                         "log_ppl_change": nll / count - before[lang]})
    table = pd.DataFrame(rows)
    table.insert(5, "ppl_change", table["ppl"] - table["ppl_base"])
    return table


def diagonal_summary(matrix: pd.DataFrame, value: str = "log_ppl_change", how: str = "mean") -> dict[str, float]:
    """Mean (or median: `how`) change where the deactivated language is the evaluated one, and where it is
    not. The mean of log_ppl_change is the log of the geometric mean ratio: one language whose perplexity
    is multiplied by 60 does not outweigh the others as it does in a mean of % changes."""
    same = matrix["deactivated"] == matrix["evaluated"]
    values = matrix[value].astype(float)
    return {"diagonal": float(values[same].agg(how)), "off_diagonal": float(values[~same].agg(how))}
