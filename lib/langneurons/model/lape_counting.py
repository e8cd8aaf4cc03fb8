"""LAPE's counts by its authors' protocol, or over a corpus of LAPE's own: a counting pass.

Notebook 02's activation pass counts LAPE's statistics on the AP sets' texts, each text alone with
the tokenizer's special tokens (lape_pass.py): the `texts` protocol. Tang et al.'s code counts
differently (RUCAIBox/Language-Specific-Neurons, activation.py): per language, the token ids of
its texts *without* special tokens are concatenated into one stream, cut into windows of the
model's length, the tail is dropped, and every position of every window is counted. That is
`packed` here. Either protocol can also skip the special tokens of each text (`texts` with
`special_tokens: skip`) and read a corpus of its own (more tokens than AP's 500 positives).

Only counts are kept: per language and FFN activation unit, the positions where the unit is > 0
(int64), and the positions counted. No per-token (or per-text) activation is stored. The pass
saves the counts after every batch with the number of batches done (one file, written atomically), so a killed run resumes after
the last saved batch and ends with the counts of an uninterrupted one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from langneurons.base import paths
from langneurons.base.atomic import atomic_path
from langneurons.base.faults import crash_point
from langneurons.base.errors import DataError
from langneurons.base.params import HubSource, LapeParams
from langneurons.data.files_source import read_language_file
from langneurons.model.ffn_act import find_act_modules
from langneurons.model.lape_pass import COUNTS_FILE, TEXTS_COUNTS_FILE
from langneurons.model.loading import input_device

PARTIAL_COUNTS = "lape_counting_partial.npz"


class CountingError(ValueError):
    """LAPE's counting cannot run with these params or texts: the message names the fix."""


@dataclass(frozen=True)
class Sequences:
    """One language's inputs: token ids [n x length] (right-padded) and the positions to count."""

    ids: np.ndarray  # int64 [n, length]
    attention: np.ndarray  # bool [n, length]: real tokens (the model sees them)
    counted: np.ndarray  # bool [n, length]: positions whose activations are counted

    @property
    def positions(self) -> int:
        return int(self.counted.sum())


def model_max_positions(model: torch.nn.Module) -> int | None:
    """The longest input the model's position embeddings allow (None when the config does not say)."""
    config = model.config
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_window(window: int, max_positions: int | None) -> None:
    if window < 1:
        raise CountingError(f"selection.lape.window = {window}: use a positive number of tokens")
    if max_positions is not None and window > max_positions:
        raise CountingError(f"selection.lape.window = {window} is longer than the model's {max_positions} positions: "
                            f"set selection.lape.window to at most {max_positions}")


def packed_windows(token_ids: list[list[int]], window: int, max_tokens: int | None = None) -> Sequences:
    """The authors' protocol: the texts' ids (no special tokens) in order, concatenated, cut into
    windows of `window` tokens, the tail dropped; at most max_tokens // window windows."""
    stream = np.fromiter((t for ids in token_ids for t in ids), dtype=np.int64)
    n = len(stream) // window
    if max_tokens is not None:
        n = min(n, max_tokens // window)
    ids = stream[: n * window].reshape(n, window)
    full = np.ones_like(ids, dtype=bool)
    return Sequences(ids, full, full.copy())


def text_sequences(token_ids: list[list[int]], special: list[list[int]], skip_special: bool, pad_id: int,
                   max_tokens: int | None = None) -> Sequences:
    """Each text alone (right-padded): every real token counted, or all but the special ones.
    With max_tokens, whole texts are taken in order while their counted positions fit the budget."""
    chosen, total = [], 0
    for i, (ids, mask) in enumerate(zip(token_ids, special)):
        count = sum(1 for m in mask if not m) if skip_special else len(ids)
        if max_tokens is not None and total + count > max_tokens:
            break
        chosen.append(i)
        total += count
    length = max((len(token_ids[i]) for i in chosen), default=0)
    ids = np.full((len(chosen), length), pad_id, dtype=np.int64)
    attention = np.zeros((len(chosen), length), dtype=bool)
    counted = np.zeros_like(attention)
    for row, i in enumerate(chosen):
        n = len(token_ids[i])
        ids[row, :n] = token_ids[i]
        attention[row, :n] = True
        counted[row, :n] = ~np.array(special[i], dtype=bool) if skip_special else True
    return Sequences(ids, attention, counted)


def tokenize(tokenizer, texts: list[str], counting: str, special_tokens: str) -> tuple[list[list[int]], list[list[int]]]:
    """(ids, special-token masks) per text: without special tokens for `packed`, as tokenizer(text) otherwise."""
    add = counting == "texts"
    enc = tokenizer(texts, add_special_tokens=add, return_special_tokens_mask=True)
    return [list(x) for x in enc["input_ids"]], [list(x) for x in enc["special_tokens_mask"]]


class _Counter:
    """Forward hooks on the FFN activations: positions > 0 per unit, over the counted positions."""

    def __init__(self, model: torch.nn.Module):
        self.modules = find_act_modules(model)
        self.n_units = sum(m.width for m in self.modules)
        self._by_path = dict(model.named_modules())
        self.batch = torch.zeros(self.n_units, dtype=torch.int64)
        self.mask: torch.Tensor | None = None

    def _hook(self, offset: int, width: int):
        def hook(_module: torch.nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            above = (output > 0) & self.mask.to(output.device).unsqueeze(-1)
            self.batch[offset:offset + width] += above.sum(dim=(0, 1)).cpu()
        return hook

    @contextmanager
    def attached(self) -> Iterator[_Counter]:
        with ExitStack() as stack:
            for m in self.modules:
                stack.callback(self._by_path[m.path].register_forward_hook(self._hook(m.offset, m.width)).remove)
            yield self


def _batches(languages: list[str], seqs: dict[str, Sequences], batch_size: int) -> list[tuple[int, int, int]]:
    """(language index, first row, end row) of every batch, languages in order: the pass's fixed plan."""
    return [(li, s, min(s + batch_size, len(seqs[lang].ids))) for li, lang in enumerate(languages)
            for s in range(0, len(seqs[lang].ids), batch_size)]


@torch.no_grad()
def count_positive(model: torch.nn.Module, seqs: dict[str, Sequences], batch_size: int, work_dir: Path
                   ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(positive int64 [languages x FFN units], positions counted int64 [languages], languages).

    Resumable: after each batch the running counts and the batches done are saved in work_dir; a
    rerun with the same inputs continues after the last saved batch."""
    languages = list(seqs)
    plan = _batches(languages, seqs, batch_size)
    counter = _Counter(model)
    positive = np.zeros((len(languages), counter.n_units), dtype=np.int64)
    tokens = np.array([seqs[lang].positions for lang in languages], dtype=np.int64)
    identity = {"languages": languages, "rows": [len(seqs[lang].ids) for lang in languages],
                "positions": tokens.tolist(), "batch_size": batch_size, "units": counter.n_units}
    work_dir.mkdir(parents=True, exist_ok=True)
    done = 0
    saved_path = work_dir / PARTIAL_COUNTS  # one file, written atomically: counts and batches done agree
    if saved_path.is_file():
        with np.load(saved_path) as saved:
            if json.loads(str(saved["identity"])) != identity:
                raise CountingError(f"{work_dir} holds an unfinished count of other inputs: delete it to count afresh")
            positive, done = saved["positive"].copy(), int(saved["batches_done"])
        print(f"LAPE counting: resuming after batch {done} of {len(plan)}")
    device = input_device(model)
    with counter.attached():
        for b in range(done, len(plan)):
            li, start, end = plan[b]
            s = seqs[languages[li]]
            counter.batch.zero_()
            counter.mask = torch.from_numpy(s.counted[start:end])
            model(input_ids=torch.from_numpy(s.ids[start:end]).to(device),
                  attention_mask=torch.from_numpy(s.attention[start:end]).long().to(device))
            positive[li] += counter.batch.numpy()
            with atomic_path(saved_path) as tmp, open(tmp, "wb") as f:
                np.savez(f, positive=positive, batches_done=np.int64(b + 1), identity=np.array(json.dumps(identity)))
            crash_point("lape_counting", b + 1)
    return positive, tokens, languages


# ------------------------------------------------------------------- the protocol chosen in params



def needs_counting_pass(lape: LapeParams) -> bool:
    """Whether the chosen protocol differs from what notebook 02's pass counts (each AP-set text alone,
    special tokens included)."""
    return lape.counting != "texts" or lape.special_tokens != "count" or lape.source != "sets"


def hub_texts(hub: HubSource, lang: str, tokenizer, max_tokens: int) -> list[str]:
    """The first rows of a language's config, streamed (nothing beyond them is downloaded), until their
    tokens (without special tokens) reach max_tokens."""
    import datasets  # imported here: slow, and only this source needs it

    where = f"dataset {hub.id} (config {hub.configs[lang]}, split {hub.split})"
    try:
        rows = datasets.load_dataset(path=hub.id, name=hub.configs[lang], split=hub.split, streaming=True)
        texts, total = [], 0
        for row in rows:
            if hub.text_field not in row:
                raise DataError(f"{where} has no column '{hub.text_field}' (it has {sorted(row)}): "
                                "fix selection.lape.hub.text_field")
            text = str(row[hub.text_field]).strip()
            if text:
                texts.append(text)
                total += len(tokenizer(text, add_special_tokens=False)["input_ids"])
            if total >= max_tokens:
                break
    except (ValueError, OSError, datasets.exceptions.DatasetsError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{where} could not be streamed ({type(e).__name__}: {e}): check selection.lape.hub, or "
                        "offline use selection.lape.source=files with a folder of <code>.txt") from e
    return texts


def corpus(lape: LapeParams, texts: pd.DataFrame, languages: list[str], tokenizer=None) -> dict[str, list[str]]:
    """Each language's texts, in a reproducible order: the run's texts of that language (by text_id),
    the lines of <code>.txt in selection.lape.files_path, or the first rows of the hub dataset."""
    if lape.source == "hub":
        return {lang: hub_texts(lape.hub, lang, tokenizer, lape.max_tokens or 0) for lang in languages}
    if lape.source == "files":
        folder = paths.resolve(lape.files_path)
        return {lang: read_language_file(folder / f"{lang}.txt").texts for lang in languages}
    ordered = texts.sort_values("text_id")
    return {lang: ordered.loc[ordered["lang"] == lang, "text"].tolist() for lang in languages}


def window_for(lape: LapeParams, model: torch.nn.Module) -> int:
    """selection.lape.window, or the model's maximum positions capped at window_cap (said in one line)."""
    limit = model_max_positions(model)
    if lape.window is not None:
        check_window(lape.window, limit)
        return lape.window
    if limit is None:
        raise CountingError("the model's config names no maximum positions: set selection.lape.window")
    if limit > lape.window_cap:
        print(f"LAPE counting: windows of {lape.window_cap} tokens, not the model's {limit} positions "
              "(selection.lape.window_cap, for memory; set selection.lape.window to choose)")
        return lape.window_cap
    return limit


def count_protocol(model: torch.nn.Module, tokenizer, lape: LapeParams, texts: pd.DataFrame, languages: list[str],
                   seq_len: int, out_dir: Path, work_dir: Path) -> dict[str, int]:
    """Count by the protocol in params and make it the run's LAPE counts (out_dir/lape_counts.npz, the
    format of lape_pass.py); notebook 02's own counts move to lape_counts_texts.npz. Returns the
    positions counted per language."""
    by_lang = corpus(lape, texts, languages, tokenizer)
    seqs = {}
    for lang, items in by_lang.items():
        ids, special = tokenize(tokenizer, items, lape.counting, lape.special_tokens)
        if lape.counting == "packed":
            seqs[lang] = packed_windows(ids, window_for(lape, model), lape.max_tokens)
        else:  # as notebook 02: texts over activations.seq_len tokens are dropped
            kept = [i for i, x in enumerate(ids) if 0 < len(x) <= seq_len]
            seqs[lang] = text_sequences([ids[i] for i in kept], [special[i] for i in kept],
                                        lape.special_tokens == "skip", tokenizer.pad_token_id or 0, lape.max_tokens)
        if seqs[lang].positions == 0:
            raise CountingError(f"LAPE counting: no {lang} tokens to count (source {lape.source}): add texts, or "
                                "use a shorter selection.lape.window")
    positive, tokens, counted = count_positive(model, seqs, lape.batch_size, work_dir)
    if (out_dir / COUNTS_FILE).is_file():
        os.replace(out_dir / COUNTS_FILE, out_dir / TEXTS_COUNTS_FILE)
    with atomic_path(out_dir / COUNTS_FILE) as tmp, open(tmp, "wb") as f:
        np.savez(f, positive=positive, tokens=tokens, languages=np.array(counted),
                 protocol=np.array(describe(lape)))
    (work_dir / PARTIAL_COUNTS).unlink(missing_ok=True)
    return dict(zip(counted, tokens.tolist()))


def describe(lape: LapeParams, named: bool = False) -> str:
    """The protocol in a few words, for the summary and the report. Without its name by default: the
    report already names it ("LAPE counted by the `texts` protocol (...)"); `named` prefixes it where
    nothing else does."""
    source = {"sets": "the AP sets' texts", "files": f"the files in {lape.files_path}",
              "hub": f"the first rows of {lape.hub.id} ({lape.hub.split})"}[lape.source]
    budget = f", at most {lape.max_tokens:,} tokens per language" if lape.max_tokens else ""
    if lape.counting == "packed":
        window = lape.window or f"the model's positions (cap {lape.window_cap})"
        words = f"{source} without special tokens, end to end in windows of {window}{budget}, as the LAPE authors count"
    else:
        words = f"{source}, each text alone, special tokens {'counted' if lape.special_tokens == 'count' else 'skipped'}{budget}"
    return f"{lape.counting}: {words}" if named else words
