"""What the assignment notebooks and their tests call: the tiny model, texts, and langneurons'
own answers (responses, AP selections, forcing, language rates) to grade students' code against.

Everything runs on the embedded tiny model on a laptop CPU in seconds, deterministically.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from langneurons.model.activations import UNITS_FILE, collect_activations
from langneurons.scoring.ap import expertise
from langneurons.data.corpus import sentences
from langneurons.control.generation import sample_texts
from langneurons.control.intervention import Spec, force_units, forcing_spec
from langneurons.data.language_id import detect_languages
from langneurons.base.languages import LANGUAGES, check_languages
from langneurons.model.loading import load_model
from langneurons.base.params import ModelParams
from langneurons.scoring.selection import scores_table, select_units

TINY = "models/tiny"
SEQ_LEN = 256


def tiny_model() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The embedded tiny XGLM (4 blocks, 4,608 units) in eval mode on the CPU, with its tokenizer."""
    torch.manual_seed(0)
    return load_model(ModelParams(id="", path=TINY, revision=None, dtype="float32", device="cpu",
                                  device_map=None, attn_implementation="eager", trust_remote_code=False))


def texts(lang: str, n: int, seed: int = 0, held_out: bool = False) -> list[str]:
    """n sentences of `lang` from the bundled corpus, in a seeded order.

    held_out=True takes them from the other end of that order: texts the notebook never showed,
    which the hidden tests use.
    """
    check_languages([lang])
    pool = sentences(lang)
    if n < 1 or n > len(pool) // 2:
        raise ValueError(f"n={n}: ask for 1 to {len(pool) // 2} sentences of {lang}")
    order = np.random.default_rng([seed, LANGUAGES.index(lang)]).permutation(len(pool))
    picked = order[::-1][:n] if held_out else order[:n]
    return [pool[i] for i in picked]


def labelled_texts(target: str, n_positive: int = 100, n_negative_per_language: int = 20,
                   seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Positives in `target`, then negatives from each other paper language; labels 1/0 (the paper's design)."""
    positives = texts(target, n_positive, seed)
    negatives = [t for other in LANGUAGES if other != target for t in texts(other, n_negative_per_language, seed)]
    labels = np.r_[np.ones(len(positives), dtype=np.int64), np.zeros(len(negatives), dtype=np.int64)]
    return positives + negatives, labels


def responses(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """langneurons' mean responses [texts, units] (float32) and its units table (layer, unit, block, kind ...).

    Column j of the matrix is row j of the table; a module's units are the rows whose `layer` is its name.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = collect_activations(model, tokenizer, batch, Path(tmp) / "act", SEQ_LEN, 16)
        matrix = np.array(np.load(path, mmap_mode="r"))
        units = pd.read_parquet(Path(tmp) / "act" / UNITS_FILE)
    if np.isnan(matrix).any():
        raise ValueError(f"a text is longer than {SEQ_LEN} tokens: use shorter texts")
    return matrix, units


def module_responses(matrix: np.ndarray, units: pd.DataFrame, module: str) -> np.ndarray:
    """The columns of one module (its name as model.named_modules() gives it) in unit order."""
    cols = units.loc[units["layer"] == module, "column"].to_numpy()
    if len(cols) == 0:
        raise KeyError(f"{module!r} is not a linear module of the model's blocks")
    return matrix[:, cols]


def scores(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, target: str, seed: int = 0,
           n_positive: int = 100, n_negative_per_language: int = 20) -> pd.DataFrame:
    """Every unit with its AP for `target` and its response statistics (on_p50: median over positives ...)."""
    batch, labels = labelled_texts(target, n_positive, n_negative_per_language, seed)
    matrix, units = responses(model, tokenizer, batch)
    stats = expertise(torch.from_numpy(matrix), torch.from_numpy(labels))
    return scores_table(units, pd.DataFrame({k: v.numpy() for k, v in stats.items()}))


def selection(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, target: str, n_per_side: int,
              seed: int = 0) -> pd.DataFrame:
    """Top-N and bottom-N units by AP for `target` (column `side`), with the values forcing uses."""
    return select_units(scores(model, tokenizer, target, seed), n_per_side)


def spec_of(chosen: pd.DataFrame, value: str = "on_p50") -> Spec:
    """{module name: (unit indices, values)}: the units of a selection and what to fix them to."""
    return forcing_spec(chosen, value)


def reference_forcing(model: PreTrainedModel, spec: Spec) -> Any:
    """langneurons' own forcing context manager (what assignment 3 is graded against)."""
    return force_units(model, spec)


def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, n_samples: int = 40,
             max_new_tokens: int = 32, first_seed: int = 1) -> list[str]:
    """n_samples texts sampled from the start token (the paper's unconditional generation, shortened)."""
    return sample_texts(model, tokenizer, n_samples, max_new_tokens, temperature=0.8, top_k=0, top_p=1.0,
                        first_seed=first_seed, batch_size=n_samples)


def language_rate(generated: list[str], lang: str) -> float:
    """Percent of texts that FastText (lid.176) labels `lang`."""
    return 100.0 * float(np.mean([d == lang for d in detect_languages(generated)])) if generated else 0.0


def target_rate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, lang: str,
                forcing: Callable[[], Any] | None = None, n_samples: int = 40, max_new_tokens: int = 32) -> float:
    """Percent of generations in `lang`; with `forcing` (a callable returning a context manager) inside it."""
    if forcing is None:
        return language_rate(generate(model, tokenizer, n_samples, max_new_tokens), lang)
    with forcing():
        return language_rate(generate(model, tokenizer, n_samples, max_new_tokens), lang)


def attempt(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a function you are still writing: its error is printed in one line instead of stopping the notebook."""
    try:
        out = fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the point is to keep a half-done notebook running
        print(f"{getattr(fn, '__name__', fn)} raised {type(e).__name__}: {e}. Finish it above, then rerun this cell.")
        return None
    if out is None or out is Ellipsis:
        print(f"{getattr(fn, '__name__', fn)} returned {out!r}: it is not written yet.")
        return None
    return out
