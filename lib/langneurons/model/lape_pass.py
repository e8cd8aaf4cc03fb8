"""LAPE's statistics, gathered in the activation pass that already runs (no second forward over the data).

For every FFN activation unit (ffn_act.py) and every language, LAPE needs how many of the
language's tokens make the unit positive, and how many tokens the language has: the unit's
activation probability is their ratio. Each text belongs to one language (the `lang` column of
the data stage's texts), so a batch adds its per-text counts into its languages' rows. Per text we
also keep the unit's mean over the tokens, as for the linear units: the forcing value `on_p50`
of a LAPE unit is the median of it over the language's positive texts.

Written next to the activation matrix:
- ffn_act.npy: [texts x FFN units] mean activation per text (rows of dropped texts are NaN);
- ffn_units.parquet: one row per FFN unit (site ffn_act, its feeder linear unit);
- lape_counts.npz: `positive` int64 [languages x units] (tokens where the unit is > 0), `tokens`
  int64 [languages], `languages`.
Tokens are counted as the linear units are pooled: every real token, special tokens included.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import torch

from langneurons.base.atomic import atomic_path, write_parquet
from langneurons.model.activations import token_mean
from langneurons.model.ffn_act import ActModule, act_units_table, find_act_modules
from langneurons.model.units import find_blocks

FFN_MATRIX_FILE = "ffn_act.npy"
FFN_UNITS_FILE = "ffn_units.parquet"
COUNTS_FILE = "lape_counts.npz"
TEXTS_COUNTS_FILE = "lape_counts_texts.npz"  # this pass's counts when another protocol counted (lape_counting.py)
_STORAGE = {"float32": np.float32, "float16": np.float16}


class ActProbObserver:
    """Counts, per language, the tokens on which each FFN activation unit is > 0, and pools its mean."""

    def __init__(self, model: torch.nn.Module, text_languages: list[str], storage_dtype: str = "float32"):
        self.modules: list[ActModule] = find_act_modules(model)
        self.n_blocks = len(find_blocks(model)[1])
        self.n_units = sum(m.width for m in self.modules)
        self.languages = sorted(set(text_languages))
        index = {lang: i for i, lang in enumerate(self.languages)}
        self.text_language = np.array([index[lang] for lang in text_languages], dtype=np.int64)
        self.storage_dtype = storage_dtype
        self._by_path = dict(model.named_modules())
        self.device = next(model.parameters()).device
        self.positive = torch.zeros(len(self.languages), self.n_units, dtype=torch.int64, device=self.device)
        self.tokens = torch.zeros(len(self.languages), dtype=torch.int64, device=self.device)
        self.matrix: np.ndarray | None = None
        self.work_dir: Path | None = None
        self._mask: torch.Tensor | None = None
        self._lengths: torch.Tensor | None = None
        self._lang: torch.Tensor | None = None
        self._rows: np.ndarray | None = None
        self._new_batch(0)

    def identity(self) -> dict:
        return {"lape": {"languages": self.languages, "ffn_units": self.n_units, "storage_dtype": self.storage_dtype}}

    def open(self, work_dir: Path, batches_done: int) -> None:
        """Start from zeros and NaN rows, or continue from the counts saved with the last finished batch.

        The counts file records the batch it includes and that batch's own counts: after a kill
        between saving them and the progress record, the batch is taken out again (it reruns)."""
        self.work_dir = work_dir
        shape = (len(self.text_language), self.n_units)
        if batches_done == 0:
            self.matrix = np.lib.format.open_memmap(work_dir / FFN_MATRIX_FILE, mode="w+",
                                                    dtype=_STORAGE[self.storage_dtype], shape=shape)
            self.matrix[:] = np.nan
            self._new_batch(0)
            self.save(0)
            return
        with np.load(work_dir / COUNTS_FILE) as saved:
            positive, tokens = saved["positive"], saved["tokens"]
            if int(saved["batches_done"]) == batches_done + 1:  # saved, but the progress record was not written
                positive, tokens = positive - saved["batch_positive"], tokens - saved["batch_tokens"]
            elif int(saved["batches_done"]) != batches_done:
                raise ValueError(f"{work_dir / COUNTS_FILE} holds {int(saved['batches_done'])} batches, the progress "
                                 f"record {batches_done}: delete {work_dir} to start the activation pass afresh")
        self.positive.copy_(torch.from_numpy(positive))
        self.tokens.copy_(torch.from_numpy(tokens))
        self.matrix = np.load(work_dir / FFN_MATRIX_FILE, mmap_mode="r+")
        if self.matrix.shape != shape:
            raise ValueError(f"{work_dir / FFN_MATRIX_FILE} has shape {self.matrix.shape}, expected {shape}")

    def _new_batch(self, size: int) -> None:
        self._batch_positive = torch.zeros_like(self.positive)
        self._batch_tokens = torch.zeros_like(self.tokens)
        self._pooled = torch.empty(size, self.n_units, dtype=torch.float32, device=self.device)

    def _hook(self, m: ActModule):
        def hook(_module: torch.nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            mask = self._mask.to(output.device)
            if output.shape[:2] != mask.shape[:2] or output.shape[-1] != m.width:
                raise ValueError(f"{m.path} returned shape {tuple(output.shape)}, not [batch, tokens, {m.width}]")
            above = ((output > 0) & mask).sum(dim=1)  # [batch, width]: tokens where the unit is positive
            self._batch_positive[:, m.offset:m.offset + m.width].index_add_(0, self._lang, above.to(self.device))
            pooled = token_mean(output, mask, self._lengths.to(output.device))
            self._pooled[:, m.offset:m.offset + m.width] = pooled.to(self.device)
        return hook

    @contextmanager
    def attached(self) -> Iterator[ActProbObserver]:
        with ExitStack() as stack:
            for m in self.modules:
                stack.callback(self._by_path[m.path].register_forward_hook(self._hook(m)).remove)
            yield self

    def set_batch(self, attention_mask: torch.Tensor, rows: np.ndarray) -> None:
        """A new batch: its counts are kept apart until `save`, so a forward pass that fails (out of
        memory) and is rerun with a smaller batch is never counted twice."""
        self._new_batch(len(rows))
        self._mask = attention_mask.bool().unsqueeze(-1)
        self._lengths = attention_mask.sum(dim=1, keepdim=True).float()
        self._lang = torch.from_numpy(self.text_language[rows]).to(self.device)
        self._batch_tokens.index_add_(0, self._lang, attention_mask.sum(dim=1).to(self.device, torch.int64))
        self._rows = rows

    def save(self, batches_done: int) -> None:
        """Add the batch to the counts and write its rows and the counts (before the progress record)."""
        if self._rows is not None:
            self.positive += self._batch_positive
            self.tokens += self._batch_tokens
            self.matrix[self._rows] = self._pooled.cpu().numpy().astype(self.matrix.dtype)
            self._rows = None
        self.matrix.flush()
        with atomic_path(self.work_dir / COUNTS_FILE) as tmp, open(tmp, "wb") as f:
            np.savez(f, positive=self.positive.cpu().numpy(), tokens=self.tokens.cpu().numpy(),
                     batch_positive=self._batch_positive.cpu().numpy(), batch_tokens=self._batch_tokens.cpu().numpy(),
                     batches_done=np.int64(batches_done), languages=np.array(self.languages))

    def finish(self, work_dir: Path, out_dir: Path) -> None:
        self.matrix.flush()
        self.matrix = None
        for name in (FFN_MATRIX_FILE, COUNTS_FILE):
            os.replace(work_dir / name, out_dir / name)
        write_parquet(out_dir / FFN_UNITS_FILE, act_units_table(self.modules, self.n_blocks))


def load_lape_counts(out_dir: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(positive [languages x units], tokens [languages], languages) written by the activation stage."""
    path = out_dir / COUNTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: rerun notebook 02 with selection.method=lape or both "
                                "(LAPE's counts are gathered in the activation pass)")
    with np.load(path) as saved:
        return saved["positive"], saved["tokens"], [str(x) for x in saved["languages"]]

