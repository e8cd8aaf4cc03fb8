"""Activation collection: one mean response per (text, unit), written to a memory-mapped matrix.

Each unique text is run once. Forward hooks on every linear map average its output over the
text's tokens, so only a [batch, units] tensor leaves the device. The average is the original
code's, bit for bit (token_mean). So is the forward: a batch holds texts of one length only, so no
text is padded. A padded batch gives the real tokens the same values in exact arithmetic, but not
always the same bits: BLOOM's attention softmax, summed over a longer row of padded keys, rounds
differently. Texts of equal length run together, so with the sets' many sentence lengths batches
stay nearly full (mean_responses still accepts right-padded batches of mixed lengths).

Same-length batches are exact only if the machine's matrix kernels give a row the same bits
whatever the number of rows beside it. The kernel pin (reproducible.py) aims at that, but no pin
is proven on every CPU, so each run checks it on its own layer shapes before it batches
(probe_batch_invariance) and, where the bits differ, runs one text per forward (activations.exact:
auto) or says that it is within float32 rounding of the original code (exact: false). Eager
attention runs text by text inside a batch (per_text_attention.py: Gemma 3's grouped-query
attention rounds differently at batch size 1), so the batch only shares the linear maps.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, ContextManager, Protocol

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from langneurons.base.atomic import write_json, write_parquet
from langneurons.base.batch_halving import BatchSize, as_batch_size
from langneurons.base.faults import batch_variance_point, crash_point, oom_point
from langneurons.model.loading import input_device
from langneurons.model.per_text_attention import per_text_attention
from langneurons.model.moe import experts_hooked
from langneurons.model.units import EXPERTS, ROUTER, LinearModule, UnitsError, find_blocks, find_linear_modules, units_table

if TYPE_CHECKING:  # transformers takes seconds to import; the scoring stages read the matrix without it
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

MATRIX_FILE = "activations.npy"
PROGRESS_FILE = "progress.json"
META_FILE = "meta.json"
UNITS_FILE = "units.parquet"
TOKENS_FILE = "token_counts.parquet"
_STORAGE = {"float32": np.float32, "float16": np.float16}


@dataclass
class Tokenized:
    ids: list[list[int]]  # token ids per text, special tokens included, as tokenizer(text) gives them
    kept: np.ndarray  # bool per text: at most seq_len tokens (the paper drops longer texts)


def tokenize(tokenizer: PreTrainedTokenizerBase, texts: list[str], seq_len: int) -> Tokenized:
    """`tokenizer(text)` with the tokenizer's own special tokens, exactly as the original code."""
    ids = tokenizer(texts, add_special_tokens=True)["input_ids"]
    kept = np.array([0 < len(x) <= seq_len for x in ids], dtype=bool)
    return Tokenized(ids, kept)


def token_mean(output: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over each row's real tokens, bit for bit what the original code computes at batch size 1.

    The original pools a text as np.mean(output[0, :T], axis=0) in float32: numpy adds the tokens
    one after another (each output feature accumulates x0 + x1 + x2 ...) and divides by T. A
    pairwise or blocked sum (torch's sum) rounds differently, by up to ~1e-7 per response, which is
    enough to reorder near-tied responses and move AP. So here the tokens are summed in that same
    order in float32 — on the CPU by numpy itself (masked tokens skipped), elsewhere by adding one
    token at a time (a padded token adds -0.0, which changes no bit) — and divided by the number
    of real tokens in float32. `output` [batch, tokens, width], mask [batch, tokens, 1] bool,
    lengths [batch, 1] float32; returns float32 [batch, width].
    """
    x = output.detach().float()
    if x.device.type == "cpu":
        full = bool(mask.all())  # same-length batches have no padding: the plain reduce, same order, ~2x faster
        array = x.contiguous().numpy()
        summed = np.add.reduce(array, axis=1) if full else np.add.reduce(array, axis=1, where=mask.numpy())
        return torch.from_numpy(summed) / lengths
    return sequential_token_sum(x, mask) / lengths


def sequential_token_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x0 + x1 + x2 ... over the tokens, one at a time, on any device (padded tokens add -0.0: no bit changes)."""
    x = x.masked_fill(~mask, -0.0)
    acc = x[:, 0].clone()
    for t in range(1, x.shape[1]):
        acc += x[:, t]
    return acc


class MeanPoolHooks:
    """Hooks writing each linear map's token-mean into its columns of one [batch, units] buffer.

    Linear layers: a forward hook on the module. Routers: a forward hook reading the logits (the
    first output). Expert tensors: an observer in moe.experts_forward, which applies every expert to
    every token while pooling (moe.py says why). MoE blocks flatten [batch, tokens] into one
    dimension; outputs of that shape are viewed back as [batch, tokens, width].
    """

    def __init__(self, modules: list[LinearModule], model: torch.nn.Module, device: torch.device):
        self.modules = modules
        self.device = device
        self.n_units = sum(m.width for m in modules)
        self.mask: torch.Tensor | None = None  # [batch, tokens, 1] bool, set before each forward
        self.lengths: torch.Tensor | None = None  # [batch, 1] float
        self.buffer: torch.Tensor | None = None
        self._by_path = dict(model.named_modules())

    def _pool(self, m: LinearModule, output: torch.Tensor, start: int, width: int) -> None:
        batch, tokens = self.mask.shape[:2]
        if output.ndim == 2 and output.shape[0] == batch * tokens:
            output = output.view(batch, tokens, -1)
        if output.shape[:2] != (batch, tokens) or output.shape[-1] != width:
            raise UnitsError(f"{m.path} returned shape {tuple(output.shape)}, not [batch, tokens, {width}]: "
                             "langneurons cannot pool its units")
        pooled = token_mean(output, self.mask.to(output.device), self.lengths.to(output.device))
        self.buffer[:, start:start + width] = pooled.to(self.device)

    def _hook(self, m: LinearModule):
        def hook(_module: torch.nn.Module, _inputs: tuple, output: torch.Tensor | tuple) -> None:
            self._pool(m, output[0] if m.site == ROUTER else output, m.offset, m.width)
        return hook

    def _observer(self, maps: dict[str, LinearModule]):
        def observe(tensor: str, expert: int, output: torch.Tensor) -> None:
            m = maps[tensor]
            self._pool(m, output, m.offset + expert * m.out, m.out)
        return observe

    @contextmanager
    def attached(self) -> Iterator[MeanPoolHooks]:
        with ExitStack() as stack:
            experts: dict[str, dict[str, LinearModule]] = {}
            for m in self.modules:
                if m.site == EXPERTS:
                    experts.setdefault(m.module, {})[m.tensor] = m
                else:
                    stack.callback(self._by_path[m.module].register_forward_hook(self._hook(m)).remove)
            for path, maps in experts.items():
                stack.enter_context(experts_hooked(self._by_path[path], observer=self._observer(maps)))
            yield self

    def set_batch(self, attention_mask: torch.Tensor) -> None:
        self.mask = attention_mask.bool().unsqueeze(-1)
        self.lengths = attention_mask.sum(dim=1, keepdim=True).float()
        self.buffer = torch.empty(attention_mask.shape[0], self.n_units, dtype=torch.float32, device=self.device)


class PassObserver(Protocol):
    """Something else computed in the same forward passes (e.g. lape_pass.ActProbObserver).

    It resumes with the matrix: `open` gets the work folder and the number of batches already done,
    `save` runs after each batch before the progress record is written (with the number of batches
    that record will say are done), `finish` moves its files
    into the output folder. `identity` joins the partial matrix's identity, so a partial run made
    without the observer (or with other settings) is not resumed with it.
    """

    def identity(self) -> dict: ...
    def open(self, work_dir: Path, batches_done: int) -> None: ...
    def attached(self) -> ContextManager: ...
    def set_batch(self, attention_mask: torch.Tensor, rows: np.ndarray) -> None: ...
    def save(self, batches_done: int) -> None: ...
    def finish(self, work_dir: Path, out_dir: Path) -> None: ...


def pad_batch(batch_ids: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists into input_ids and attention_mask tensors."""
    width = max(len(x) for x in batch_ids)
    input_ids = torch.full((len(batch_ids), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch_ids), width), dtype=torch.long)
    for i, x in enumerate(batch_ids):
        input_ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
        attention_mask[i, : len(x)] = 1
    return input_ids.to(device), attention_mask.to(device)


def pad_id_of(tokenizer: PreTrainedTokenizerBase) -> int:
    """Any id works for padding (it is masked out); Llama-2 has no pad token, so fall back to EOS/0."""
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    return 0


@torch.inference_mode()
def mean_responses(
    model: PreTrainedModel, hooks: MeanPoolHooks, batch_ids: list[list[int]], pad_id: int,
    observers: Sequence[PassObserver] = (), rows: np.ndarray | None = None,
) -> torch.Tensor:
    """[batch, units] mean responses for one batch of token lists (hooks and observers attached)."""
    input_ids, attention_mask = pad_batch(batch_ids, pad_id, input_device(model))
    hooks.set_batch(attention_mask)
    for observer in observers:
        observer.set_batch(attention_mask, rows)
    # The base model is enough: the hooks sit in its blocks, and skipping lm_head avoids a
    # [batch, tokens, vocab] logits tensor (250k vocab for XGLM/BLOOM).
    model.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    return hooks.buffer


@dataclass(frozen=True)
class Batching:
    """How the pass batches texts, and why: the run's log, meta.json and report say which."""

    one_per_forward: bool  # True: one text per forward pass (the original protocol)
    identical: bool | None  # the probe's answer: batched bits == one-at-a-time bits (None: not probed)
    probed: tuple[tuple[int, int], ...]  # (texts, tokens) of each probed batch
    max_abs_diff: float  # largest |batched - alone| over the probed responses
    line: str  # one sentence for the log and the report

    def record(self) -> dict:
        return {"one_per_forward": self.one_per_forward, "identical": self.identical,
                "probed": [list(x) for x in self.probed], "max_abs_diff": self.max_abs_diff, "line": self.line}


def probe_batch_invariance(
    model: PreTrainedModel, hooks: MeanPoolHooks, ids: list[list[int]], order: list[int], batch_size: int, pad_id: int,
) -> tuple[bool, tuple[tuple[int, int], ...], float]:
    """Whether batches give, bit for bit, the responses of their texts run one at a time.

    Checked on this machine with the run's own shapes: the batches of the shortest and the longest
    length and the fullest batch (a matrix kernel may round differently with the number of rows:
    one row is a matrix-vector product, many rows a blocked matrix product). Returns (identical,
    (texts, tokens) of each probed batch, largest absolute difference).
    """
    by_length: dict[int, list[int]] = {}
    for i in order:
        by_length.setdefault(len(ids[i]), []).append(i)
    groups = [rows[:batch_size] for rows in by_length.values() if len(rows) > 1]
    if batch_size < 2 or not groups:
        return True, (), 0.0  # every batch holds one text: nothing can differ
    picks = [min(groups, key=lambda g: len(ids[g[0]])), max(groups, key=len), max(groups, key=lambda g: len(ids[g[0]]))]
    picks = list({g[0]: g for g in picks}.values())
    identical, largest = True, 0.0
    for rows in picks:
        batched = batch_variance_point(mean_responses(model, hooks, [ids[i] for i in rows], pad_id).clone())
        alone = torch.cat([mean_responses(model, hooks, [ids[i]], pad_id).clone() for i in rows])
        identical &= torch.equal(batched, alone)
        largest = max(largest, float((batched.double() - alone.double()).abs().max()))
    return identical, tuple((len(rows), len(ids[rows[0]])) for rows in picks), largest


def decide_batching(
    exact: bool | str, batch: BatchSize, probe: Callable[[int], tuple[bool, tuple[tuple[int, int], ...], float]],
) -> Batching:
    """activations.exact: true = one text per forward; auto = batched where the probe finds the same
    bits, else one text per forward; false = batched even where the bits differ (within rounding)."""
    if exact is True or batch.used == 1:
        batch.cap(1)
        return Batching(True, None, (), 0.0, "one text per forward pass (the original protocol): responses are the "
                        "original code's, bit for bit")
    identical, probed, largest = batch.run(probe)
    shapes = ", ".join(f"{n} x {t} tokens" for n, t in probed)
    if identical:
        return Batching(False, True, probed, 0.0, f"batched forward passes give the bits of one text at a time on this "
                        f"machine (probed: {shapes or 'no batch of two texts'}): responses are the original code's, bit for bit")
    if exact == "auto":
        batch.cap(1)
        return Batching(True, False, probed, largest, f"batched forward passes round differently from one text at a time "
                        f"on this machine (probed: {shapes}; largest difference {largest:.3g}): running one text per "
                        "forward pass, so responses are the original code's, bit for bit (activations.exact=false keeps "
                        "batches: faster, within float32 rounding)")
    return Batching(False, False, probed, largest, f"batched forward passes round differently from one text at a time "
                    f"on this machine (probed: {shapes}; largest difference {largest:.3g}); activations.exact=false keeps "
                    "them: this run is within float32 rounding of the original code, not identical")


def _open_partial(
    work_dir: Path, shape: tuple[int, int], dtype: type, kept: np.ndarray, identity: dict
) -> tuple[np.memmap, dict[str, int]]:
    """The partial matrix and its progress (texts and batches done; zeros when starting afresh).

    The progress record names what the rows were computed from (`identity`: texts, units, ...);
    if anything differs, the partial matrix is discarded. The batch size is not part of it: a run
    whose batch was halved after an out-of-memory error continues with the smaller batches.
    """
    matrix_path, progress_path = work_dir / MATRIX_FILE, work_dir / PROGRESS_FILE
    try:
        progress = json.loads(progress_path.read_text())
        if progress["identity"] == identity:
            matrix = np.load(matrix_path, mmap_mode="r+")
            if matrix.shape == shape and matrix.dtype == dtype:
                done = {"texts_done": int(progress["texts_done"]), "batches_done": int(progress["batches_done"])}
                print(f"resuming activation collection after batch {done['batches_done']} "
                      f"({done['texts_done']} of {identity['n_kept']} texts) from {work_dir}")
                return matrix, done
    except (OSError, ValueError, KeyError):
        pass  # no usable progress: start afresh
    work_dir.mkdir(parents=True, exist_ok=True)
    progress_path.unlink(missing_ok=True)
    matrix = np.lib.format.open_memmap(matrix_path, mode="w+", dtype=dtype, shape=shape)
    matrix[~kept] = np.nan
    matrix.flush()
    done = {"texts_done": 0, "batches_done": 0}
    write_json(progress_path, {"identity": identity, **done})
    return matrix, done


def collect_activations(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    out_dir: Path,
    seq_len: int,
    batch_size: int | BatchSize,
    storage_dtype: str = "float32",
    provenance: dict | None = None,
    work_dir: Path | None = None,
    observers: Sequence[PassObserver] = (),
    exact: bool | str = "auto",
) -> Path:
    """Run every text once and store the [texts x units] matrix (row = text_id) under out_dir.

    Writes activations.npy (memory-mapped, filled batch by batch; rows of dropped texts are NaN),
    units.parquet, token_counts.parquet and meta.json (with `provenance`, e.g. the model id and
    revision, recorded as given). Returns the matrix path.

    The matrix is filled in `work_dir` with a progress record after every batch and moved to
    out_dir only when complete. Called again with the same `work_dir` after an interruption, it
    resumes from the last completed batch and gives the same matrix as an uninterrupted run. The
    caller must key `work_dir` by the model (the stage cache does); without one, a scratch folder
    beside out_dir is used and always started afresh. A `BatchSize` that may halve on
    out-of-memory continues after the last saved batch with the smaller size. `observers` compute
    more statistics in the same forward passes (LAPE's counts), resumed and finished with the matrix.
    `exact` (param activations.exact) decides between batches and one text per forward pass
    (decide_batching); meta.json records the decision and the probe behind it.
    """
    modules = find_linear_modules(model)
    _, blocks = find_blocks(model)
    device = input_device(model)
    tok = tokenize(tokenizer, texts, seq_len)
    if texts and not tok.kept.any():
        shortest = min(len(x) for x in tok.ids)
        raise ValueError(f"all {len(texts)} texts are longer than activations.seq_len={seq_len} tokens "
                         f"(the shortest has {shortest}): raise activations.seq_len or use shorter texts")
    hooks = MeanPoolHooks(modules, model, device)
    batch = as_batch_size("activations.batch_size", batch_size)
    order = [i for i in sorted(range(len(texts)), key=lambda i: -len(tok.ids[i])) if tok.kept[i]]  # longest first
    pad_id = pad_id_of(tokenizer)
    with hooks.attached(), per_text_attention(model) as attention_per_text:
        batching = decide_batching(exact, batch, lambda size: probe_batch_invariance(model, hooks, tok.ids, order, size, pad_id))
    print(batching.line, flush=True)
    identity = {"n_texts": len(texts), "n_kept": len(order), "n_units": hooks.n_units, "seq_len": seq_len,
                "storage_dtype": storage_dtype, "one_per_forward": batching.one_per_forward,
                "texts_sha256": hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode()).hexdigest()}
    if observers:
        identity["observers"] = [o.identity() for o in observers]
    out_dir.mkdir(parents=True, exist_ok=True)
    if work_dir is None:  # nothing says which model an old partial matrix came from: never resume it
        work_dir = out_dir.parent / f".{out_dir.name}.partial"
        shutil.rmtree(work_dir, ignore_errors=True)
    matrix, done = _open_partial(work_dir, (len(texts), hooks.n_units), _STORAGE[storage_dtype], tok.kept, identity)
    for observer in observers:
        observer.open(work_dir, done["batches_done"])
    bar = tqdm(desc="activations", unit="text", initial=done["texts_done"], total=len(order))

    def run_batches(size: int) -> None:
        """From the first text not yet saved to the end, `size` texts per forward pass."""
        while done["texts_done"] < len(order):
            rows = order[done["texts_done"]:done["texts_done"] + size]
            rows = [i for i in rows if len(tok.ids[i]) == len(tok.ids[rows[0]])]  # one length: no padding
            oom_point("activations", done["batches_done"], len(rows))
            pooled = mean_responses(model, hooks, [tok.ids[i] for i in rows], pad_id, observers, np.array(rows))
            matrix[np.array(rows)] = pooled.cpu().numpy().astype(matrix.dtype)
            matrix.flush()  # on disk before the progress record says so
            for observer in observers:
                observer.save(done["batches_done"] + 1)
            done["texts_done"] += len(rows)
            done["batches_done"] += 1
            write_json(work_dir / PROGRESS_FILE, {"identity": identity, **done})
            bar.update(len(rows))
            crash_point("activations", done["batches_done"])

    with hooks.attached(), per_text_attention(model), ExitStack() as attached, bar:
        for observer in observers:
            attached.enter_context(observer.attached())
        batch.run(run_batches)
    del matrix
    for observer in observers:
        observer.finish(work_dir, out_dir)
    matrix_path = out_dir / MATRIX_FILE
    os.replace(work_dir / MATRIX_FILE, matrix_path)
    shutil.rmtree(work_dir, ignore_errors=True)
    write_parquet(out_dir / UNITS_FILE, units_table(modules, len(blocks)))
    write_parquet(out_dir / TOKENS_FILE, pd.DataFrame({
        "text_id": np.arange(len(texts)), "n_tokens": [len(x) for x in tok.ids], "kept": tok.kept,
    }))
    write_json(out_dir / META_FILE, {
        "n_texts": len(texts), "n_units": hooks.n_units, "n_kept": int(tok.kept.sum()),
        "n_dropped_longer_than_seq_len": int((~tok.kept).sum()), "seq_len": seq_len,
        "storage_dtype": storage_dtype, "n_blocks": len(blocks), "n_linear_modules": len(modules),
        "example_tokens": tokenizer.convert_ids_to_tokens(tok.ids[0][:8]) if texts else [],
        "batching": batching.record(), "attention_per_text": attention_per_text, "provenance": provenance or {},
    })
    return matrix_path


def _npy_layout(f: BinaryIO) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset of an open .npy file (C order only, as we write them)."""
    version = np.lib.format.read_magic(f)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = read_header(f)
    if fortran_order:
        raise ValueError(f"{getattr(f, 'name', 'matrix')} is stored in Fortran order; expected C order")
    return shape, dtype, f.tell()


def matrix_shape(matrix_path: Path) -> tuple[int, int]:
    """(texts, units) of the stored matrix, from its header."""
    with open(matrix_path, "rb") as f:
        shape, _, _ = _npy_layout(f)
    return shape[0], shape[1]


def read_columns(matrix_path: Path, start: int, stop: int) -> np.ndarray:
    """Columns [start, stop) of the stored [texts x units] matrix, for all rows.

    Read with one pread per row into a fresh array rather than through a memory map: pages of a
    memory map count as the process's resident memory while mapped (the kernel maps whole cached
    folios around each access), so a map over a 24 GB matrix can grow resident memory to gigabytes
    even when only a narrow column chunk is used. A short read (truncated file) is an error.
    """
    with open(matrix_path, "rb") as f:
        (n_rows, n_cols), dtype, offset = _npy_layout(f)
        if not 0 <= start <= stop <= n_cols:
            raise IndexError(f"columns [{start}, {stop}) outside the matrix's {n_cols} columns")
        out = np.empty((n_rows, stop - start), dtype=dtype)
        row_bytes, item = n_cols * dtype.itemsize, dtype.itemsize
        fd = f.fileno()
        if stop - start == n_cols:  # whole rows: one contiguous read
            spans = [(out.reshape(-1), offset)]
        else:
            spans = [(out[i], offset + i * row_bytes + start * item) for i in range(n_rows)]
        for buf, at in spans:
            if os.preadv(fd, [buf], at) != buf.nbytes:
                raise ValueError(f"{matrix_path} is truncated (expected {n_rows} x {n_cols} {dtype}): rerun notebook 02")
    return out


def load_activations(out_dir: Path) -> tuple[np.ndarray, pd.DataFrame, dict]:
    """The memory-mapped matrix (read-only), the units table and the meta record."""
    matrix_path = out_dir / MATRIX_FILE
    if not matrix_path.is_file():
        raise FileNotFoundError(f"{matrix_path} is missing: run notebook 02 (activations) first")
    meta = json.loads((out_dir / META_FILE).read_text())
    matrix = np.load(matrix_path, mmap_mode="r")
    if matrix.shape != (meta["n_texts"], meta["n_units"]):
        raise ValueError(f"{matrix_path} has shape {matrix.shape}, expected {(meta['n_texts'], meta['n_units'])}: rerun notebook 02")
    return matrix, pd.read_parquet(out_dir / UNITS_FILE), meta
