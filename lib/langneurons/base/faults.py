"""Fault injection for the resume and out-of-memory tests: crashes and memory limits on demand.

LANGNEURONS_CRASH_AT=<point>:<count> (e.g. activations:3 = right after the 3rd batch is saved):
the process sends itself SIGKILL, so nothing gets a chance to clean up — the case resuming must survive.

LANGNEURONS_PAUSE_AT=<point>:<count>: the process stops there for ten minutes instead (a running job for
a test to cancel with scancel).

LANGNEURONS_OOM=<point>:<from>:<max_batch> (e.g. generation:2:25): from step <from> of that point on
(batch or condition index, counted from 0), any batch larger than <max_batch> raises torch's
out-of-memory error, as a device with less memory would.

LANGNEURONS_BATCH_VARIANT=1: the batch-invariance probe of activation collection sees batched
responses one float32 step away from the same texts run alone, as on a CPU whose matrix kernels
round differently with the number of rows. Unset (always, outside the tests), all three do nothing.
"""

from __future__ import annotations

import os
import signal
import time

import torch

ENV = "LANGNEURONS_CRASH_AT"
PAUSE_ENV = "LANGNEURONS_PAUSE_AT"
OOM_ENV = "LANGNEURONS_OOM"
BATCH_VARIANT_ENV = "LANGNEURONS_BATCH_VARIANT"


def crash_point(point: str, count: int) -> None:
    if os.environ.get(ENV) == f"{point}:{count}":
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(PAUSE_ENV) == f"{point}:{count}":
        time.sleep(600)


def oom_point(point: str, step: int, batch_size: int) -> None:
    spec = os.environ.get(OOM_ENV, "")
    name, _, rest = spec.partition(":")
    if name != point or not rest:
        return
    start, _, max_batch = rest.partition(":")
    if step >= int(start) and batch_size > int(max_batch):
        raise torch.OutOfMemoryError(f"CUDA out of memory (simulated by {OOM_ENV}={spec}) with a batch of {batch_size}")


def batch_variance_point(batched: torch.Tensor) -> torch.Tensor:
    """The probe's batched responses, moved one float32 step when LANGNEURONS_BATCH_VARIANT=1."""
    if os.environ.get(BATCH_VARIANT_ENV) == "1":
        return torch.nextafter(batched, torch.full_like(batched, float("inf")))
    return batched
