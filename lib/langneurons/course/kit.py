"""What the assignment notebooks and their tests call: the tiny model, texts, and langneurons'
own answers (responses, AP selections, forcing, language rates) to grade students' code against.

Everything runs on the embedded tiny model on a laptop CPU in seconds, deterministically.
"""

from __future__ import annotations

import copy
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


_PRISTINE: dict[str, PreTrainedModel] = {}


def tiny_model() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The embedded tiny XGLM (4 blocks, 4,608 units) in eval mode on the CPU, with its tokenizer."""
    torch.manual_seed(0)
    model, tokenizer = load_model(ModelParams(id="", path=TINY, revision=None, dtype="float32", device="cpu",
                                              device_map=None, attn_implementation="eager", trust_remote_code=False))
    _PRISTINE.setdefault("model", copy.deepcopy(model))
    return model, tokenizer


def fresh_model() -> PreTrainedModel:
    """A copy of the tiny model as first loaded: what grading runs a student's code on, so that a hook or
    a weight change left on the notebook's model by one piece of code cannot fail another's test."""
    if "model" not in _PRISTINE:
        tiny_model()
    return copy.deepcopy(_PRISTINE["model"])


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


def model_state(model: PreTrainedModel) -> tuple | None:
    """What the model's answers depend on, when it is the plain tiny model: None when any hook is
    registered (forcing, a student's leftover hook), so such a model is never served from the cache."""
    modules = list(model.modules())
    if any(m._forward_hooks or m._forward_pre_hooks for m in modules) or model.training:
        return None
    with torch.no_grad():
        weights = tuple(float(p.double().sum()) for p in model.parameters())
    return (str(getattr(model, "name_or_path", "")), weights)


_SCORES: dict[tuple, pd.DataFrame] = {}
_RATES: dict[tuple, float] = {}


def scores(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, target: str, seed: int = 0,
           n_positive: int = 100, n_negative_per_language: int = 20) -> pd.DataFrame:
    """Every unit with its AP for `target` and its response statistics (on_p50: median over positives ...).

    Kept for the session per (model weights, target, seed, sizes) when no hook is on the model: a notebook
    and its grading ask for the same selections many times (each takes a forward pass over 200 texts)."""
    state = model_state(model)
    key = (state, target, seed, n_positive, n_negative_per_language)
    if state is not None and key in _SCORES:
        return _SCORES[key].copy()
    batch, labels = labelled_texts(target, n_positive, n_negative_per_language, seed)
    matrix, units = responses(model, tokenizer, batch)
    stats = expertise(torch.from_numpy(matrix), torch.from_numpy(labels))
    table = scores_table(units, pd.DataFrame({k: v.numpy() for k, v in stats.items()}))
    if state is not None:
        _SCORES[key] = table.copy()
    return table


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
    """Percent of generations in `lang`; with `forcing` (a callable returning a context manager) inside it.

    Without forcing, the plain model's rate is kept for the session (seeded sampling: the same texts)."""
    if forcing is None:
        state = model_state(model)
        key = (state, lang, n_samples, max_new_tokens)
        if state is None or key not in _RATES:
            rate = language_rate(generate(model, tokenizer, n_samples, max_new_tokens), lang)
            if state is None:
                return rate
            _RATES[key] = rate
        return _RATES[key]
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


# Assignment 5: LAPE


_LAST_PASS: dict[str, Any] = {}


def _lape_pass(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts_by_language: dict[str, list[str]]
               ) -> tuple[np.ndarray, pd.DataFrame, np.ndarray, np.ndarray, pd.DataFrame]:
    """One activation pass with LAPE's observer (the pipeline's notebook 02): linear responses and LAPE counts.

    The last pass is kept (when no hook is on the model: model_state), so lape_counts and ap_scores
    on the same texts run the model once.
    """
    from langneurons.model.lape_pass import FFN_UNITS_FILE, ActProbObserver, load_lape_counts

    languages = list(texts_by_language)
    if not languages or any(len(texts_by_language[lang]) == 0 for lang in languages):
        raise ValueError("texts_by_language needs at least one text for every language")
    batch = [t for lang in languages for t in texts_by_language[lang]]
    state = model_state(model)
    key = (state, tuple((lang, tuple(texts_by_language[lang])) for lang in languages))
    if state is not None and _LAST_PASS.get("key") == key:
        return _LAST_PASS["value"]
    text_languages = [lang for lang in languages for _ in texts_by_language[lang]]
    observer = ActProbObserver(model, text_languages)
    with tempfile.TemporaryDirectory() as tmp:
        path = collect_activations(model, tokenizer, batch, Path(tmp) / "act", SEQ_LEN, 16, observers=[observer],
                                   exact=False)  # batches, within float32 rounding: seconds, not a minute
        matrix = np.array(np.load(path, mmap_mode="r"))
        units = pd.read_parquet(Path(tmp) / "act" / UNITS_FILE)
        positive, tokens, counted = load_lape_counts(Path(tmp) / "act")
        act_units = pd.read_parquet(Path(tmp) / "act" / FFN_UNITS_FILE)
    if np.isnan(matrix).any():
        raise ValueError(f"a text is longer than {SEQ_LEN} tokens: use shorter texts")
    order = [counted.index(lang) for lang in languages]
    value = (matrix, units, positive[order].astype(np.int64), tokens[order].astype(np.int64), act_units)
    if state is not None:
        _LAST_PASS.update(key=key, value=value)
    return value


def lape_counts(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts_by_language: dict[str, list[str]]
                ) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """LAPE's counts, from langneurons' own activation pass (model/lape_pass.py).

    Returns (counts int64 [languages x FFN activation units]: tokens of each language on which the
    unit is > 0; tokens int64 [languages]: each language's tokens, special tokens included; the FFN
    activation units table: column, layer (the activation module), unit, block, feeder_layer,
    feeder_unit ...). Rows follow the order of `texts_by_language`; column j of counts is row j of
    the table.
    """
    _, _, counts, tokens, act_units = _lape_pass(model, tokenizer, texts_by_language)
    return counts.copy(), tokens.copy(), act_units.copy()


def ap_scores(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts_by_language: dict[str, list[str]]
              ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every linear unit's AP for each language, on the same texts (and the same pass) as lape_counts.

    For language L the positives are L's texts, the negatives every other language's texts.
    Returns (ap: DataFrame [linear units x languages], one column per language; the units table:
    layer, unit, block, kind ...); row j of both is the same unit.
    """
    from langneurons.scoring.ap import average_precision

    matrix, units, _, _, _ = _lape_pass(model, tokenizer, texts_by_language)
    text_languages = np.array([lang for lang in texts_by_language for _ in texts_by_language[lang]])
    x = torch.from_numpy(matrix)
    ap = {lang: average_precision(x, torch.from_numpy((text_languages == lang).astype(np.int64))).numpy()
          for lang in texts_by_language}
    return pd.DataFrame(ap, index=units.index), units.copy()


def ffn_columns(units: pd.DataFrame, act_units: pd.DataFrame) -> np.ndarray:
    """For each linear unit (row of `units`), the FFN activation unit (column of `act_units`) it feeds, else -1.

    In XGLM, unit j of a block's fc1 is what the activation's unit j reads: the same neuron before
    and after the activation function. Units elsewhere (attention, fc2) feed no activation unit.
    """
    from langneurons.comparison.unit_sets import ffn_keys

    return ffn_keys(units, act_units)


def lape_reference(p: np.ndarray, top_rate: float, filter_rate: float, activation_bar_ratio: float) -> list[np.ndarray]:
    """langneurons' LAPE selection of p [units x languages]: per language (column of p), the selected
    unit indices in increasing order (what assignment 5's lape_select is graded against)."""
    from types import SimpleNamespace

    from langneurons.scoring.lape import lape_select

    names = [f"l{i}" for i in range(p.shape[1])]
    rates = SimpleNamespace(top_rate=top_rate, filter_rate=filter_rate, activation_bar_ratio=activation_bar_ratio)
    table, _ = lape_select(np.asarray(p, dtype=np.float64), names, rates)  # selection reads the three rates only
    return [np.flatnonzero(table[f"for_{name}"].to_numpy()) for name in names]


def overlap_reference(ap: pd.DataFrame, units: pd.DataFrame, act_units: pd.DataFrame,
                      lape_sets: dict[str, np.ndarray]) -> pd.DataFrame:
    """langneurons' overlap of AP and LAPE at matched k (comparison.unit_sets, notebook 07's code).

    For each language: k (its LAPE set's size), ap_feeding (how many of AP's top-k units, ties by
    lowest row, feed an FFN activation unit), shared (how many of those LAPE selected for the
    language) and overlap = shared / k (NaN when k = 0); indexed by language.
    """
    from langneurons.comparison.unit_sets import matched_sets, overlap_table

    scores = {lang: units.assign(ap=ap[lang].to_numpy()) for lang in ap.columns}
    sets = {lang: act_units.iloc[np.sort(np.asarray(cols, dtype=np.int64))].reset_index(drop=True)
            for lang, cols in lape_sets.items()}
    table = overlap_table(matched_sets(scores, sets, None), act_units, int(act_units["block"].max()) + 1)
    out = table.set_index("language").rename(columns={"n": "k", "ap_units_feeding_ffn": "ap_feeding"})
    out["overlap"] = out["shared_percent"] / 100
    return out[["k", "ap_feeding", "shared", "overlap"]]


def perplexities(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts_by_language: dict[str, list[str]],
                 zeroed: pd.DataFrame | None = None) -> pd.Series:
    """Each language's perplexity on its texts (langneurons' control.deactivation.text_nll), indexed by language.

    With `zeroed` (rows with `layer` and `unit`: linear units from ap_scores' table or FFN activation
    units from lape_counts' table, or both), those units are fixed to 0 at every position: LAPE's
    deactivation experiment.
    """
    from langneurons.control.deactivation import text_nll

    def measure() -> pd.Series:
        out = {}
        for lang, batch in texts_by_language.items():
            nll, count = text_nll(model, tokenizer, batch, 16, SEQ_LEN)
            out[lang] = float(np.exp(nll / count))
        return pd.Series(out, name="perplexity")

    if zeroed is not None and not isinstance(zeroed, pd.DataFrame):
        raise TypeError("zeroed must be rows of a units table (a DataFrame with layer and unit), "
                        f"not {type(zeroed).__name__}")
    if zeroed is None or len(zeroed) == 0:
        return measure()
    with force_units(model, forcing_spec(zeroed, "zero")):
        return measure()
