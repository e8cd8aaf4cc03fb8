"""Is a forced text still language, or target-script gibberish? Fluency beside the language rate.

Language ID alone counts "很喜欢，，，，，，，，，" as Chinese. Two measures per generated text:
- its perplexity under the *unforced* model (how likely the model itself finds the text when
  nothing is forced: repetitive or broken text scores high, or suspiciously low when it repeats);
- whether it is degenerate: under `distinct2_below` of its token bigrams are distinct, or one token
  makes up more than `repeat_share_above` of it (an empty text is degenerate too).
Both work on the model's own tokens, so Chinese and Japanese (no spaces) are measured like the rest.
Per condition the table gives the median perplexity with a 95% interval (order statistics, no
assumption on the distribution) and the degenerate share with its Wilson interval.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from langneurons.base.proportions import Z95, wilson
from langneurons.model.loading import input_device
from langneurons.model.activations import pad_batch, pad_id_of

STATS = ("tokens", "distinct2", "top_token_share", "degenerate", "ppl")


def repetition(ids: list[list[int]]) -> pd.DataFrame:
    """Per text: tokens, share of distinct token bigrams (NaN under two tokens), share of its most
    frequent token (NaN when empty)."""
    rows = []
    for x in ids:
        n = len(x)
        bigrams = len(set(zip(x, x[1:]))) / (n - 1) if n >= 2 else math.nan
        top = max(np.unique(np.asarray(x), return_counts=True)[1]) / n if n else math.nan
        rows.append((n, bigrams, top))
    return pd.DataFrame(rows, columns=["tokens", "distinct2", "top_token_share"])


def degenerate(stats: pd.DataFrame, distinct2_below: float, repeat_share_above: float) -> pd.Series:
    """True where a text is empty, repeats its bigrams or is mostly one token."""
    return ((stats["tokens"] == 0) | (stats["distinct2"] < distinct2_below)
            | (stats["top_token_share"] > repeat_share_above)).rename("degenerate")


@torch.inference_mode()
def text_perplexity(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prefix: list[int],
                    ids: list[list[int]], batch_size: int) -> np.ndarray:
    """Per text: exp of the mean negative log-likelihood of its tokens after `prefix` (the start tokens
    it was generated from), under the model as it is; NaN for an empty text."""
    out = np.full(len(ids), np.nan)
    order = [i for i in sorted(range(len(ids)), key=lambda i: -len(ids[i])) if ids[i]]
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        seqs = [prefix + ids[i] for i in chunk]
        input_ids, mask = pad_batch(seqs, pad_id_of(tokenizer), input_device(model))
        logits = model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), input_ids[:, 1:], reduction="none")
        scored = mask[:, 1:].bool().clone()
        scored[:, : len(prefix) - 1] = False  # only the generated tokens count, not the start tokens
        mean = (nll * scored).sum(1) / scored.sum(1)
        out[chunk] = torch.exp(mean).cpu().numpy()
    return out


def fluency_columns(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str], prefix: list[int],
                    distinct2_below: float, repeat_share_above: float, batch_size: int) -> pd.DataFrame:
    """The STATS columns for generated texts (call with nothing forced: the unforced model judges)."""
    ids = [list(x) for x in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
    stats = repetition(ids)
    stats["degenerate"] = degenerate(stats, distinct2_below, repeat_share_above)
    stats["ppl"] = text_perplexity(model, tokenizer, list(prefix), ids, batch_size)
    return stats[list(STATS)]


def median_interval(values: np.ndarray, z: float = Z95) -> tuple[float, float, float]:
    """(median, low, high): the 95% distribution-free interval of a median from order statistics
    (ranks n/2 ± z·sqrt(n)/2); NaNs left out, all NaN for no values."""
    x = np.sort(np.asarray(values, dtype=float)[~np.isnan(np.asarray(values, dtype=float))])
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan
    half = z * math.sqrt(n) / 2
    low = max(int(math.floor(n / 2 - half)), 1)
    high = min(int(math.ceil(n / 2 + 1 + half)), n)
    return float(np.median(x)), float(x[low - 1]), float(x[high - 1])


def fluency_table(generations: pd.DataFrame, keys: tuple[str, ...] = ("condition", "target", "n_top", "n_bottom")) -> pd.DataFrame:
    """Per condition: texts n, median perplexity under the unforced model with its interval, and the
    degenerate share (percent) with its Wilson interval."""
    keys = tuple(k for k in keys if k in generations.columns)
    rows = []
    for key, group in generations.groupby(list(keys), sort=False):
        median, low, high = median_interval(group["ppl"].to_numpy())
        bad = int(group["degenerate"].sum())
        d_low, d_high = wilson(bad, len(group))
        rows.append({**dict(zip(keys, key)), "n": len(group), "median_ppl": median, "ppl_low": low, "ppl_high": high,
                     "degenerate": 100 * bad / len(group), "degenerate_low": 100 * float(d_low),
                     "degenerate_high": 100 * float(d_high)})
    return pd.DataFrame(rows)
