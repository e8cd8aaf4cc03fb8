"""Batch sizes that fit: on out-of-memory, halve the batch and continue from the last saved work.

A batch size that fits a 24 GB GPU may not fit a 16 GB one, and a user should not have to guess
it. Each stage that batches (activations, generation, translation) runs its work through a
`BatchSize`: when the device runs out of memory it halves the size, frees the device's cache and
calls the work again. The work itself resumes where it stopped (activations: from the last saved
batch; generation: from the condition that failed), so nothing finished is redone. The size
actually used is recorded in the stage log and the report. `halve_batch_on_oom: false` turns this
off: then out-of-memory is an error naming the param to lower.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import torch

T = TypeVar("T")


class DeviceOutOfMemoryError(RuntimeError):
    """A batch did not fit in the device's memory: the message names the batch-size param to lower."""


def is_out_of_memory(error: BaseException) -> bool:
    """torch's own OOM error, Python's MemoryError, or a RuntimeError that says so (CPU allocators)."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def free_device_memory() -> None:
    """Give the failed batch's memory back before trying a smaller one."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class BatchSize:
    """The batch size of one stage's param (e.g. activations.batch_size), halved on out-of-memory."""

    param: str  # the param it comes from, named in messages and logs
    asked: int  # the value in params
    halve_on_oom: bool = True  # param halve_batch_on_oom
    used: int = field(init=False)  # the size in use now (= asked until an out-of-memory)

    def __post_init__(self) -> None:
        if self.asked < 1:
            raise ValueError(f"{self.param}={self.asked}: a batch size must be >= 1")
        self.used = self.asked

    def run(self, work: Callable[[int], T]) -> T:
        """work(batch size); after an out-of-memory error, work(half of it) again, down to 1.

        `work` must continue from its last saved result when called again (it is not undone).
        """
        while True:
            try:
                return work(self.used)
            except (torch.OutOfMemoryError, MemoryError, RuntimeError) as e:
                if not is_out_of_memory(e):
                    raise
                free_device_memory()
                if not self.halve_on_oom:
                    raise DeviceOutOfMemoryError(
                        f"out of memory with {self.param}={self.used}: lower it, e.g. SET=\"{self.param}="
                        f"{max(1, self.used // 2)}\", or set halve_batch_on_oom=true (finished work is kept; the rerun resumes)"
                    ) from e
                if self.used == 1:
                    raise DeviceOutOfMemoryError(
                        f"out of memory even with {self.param}=1: the model does not fit this device; use "
                        "model.dtype=float16, model.device_map=auto (several GPUs) or a smaller model"
                    ) from e
                print(f"out of memory with {self.param}={self.used}: continuing with {self.used // 2} "
                      "(finished work is kept)", flush=True)
                self.used //= 2

    def cap(self, size: int) -> None:
        """Use at most `size` from now on (e.g. one text per forward where batches are not exact)."""
        self.used = min(self.used, size)

    def record(self) -> dict[str, int]:
        return {"asked": self.asked, "used": self.used}


def as_batch_size(param: str, value: int | BatchSize) -> BatchSize:
    """A plain int (library callers, tests) is a fixed batch size: out-of-memory is an error, as before."""
    return value if isinstance(value, BatchSize) else BatchSize(param, value, halve_on_oom=False)
