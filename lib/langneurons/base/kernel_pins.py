"""Same bits on other x86 CPUs: pin the instruction set PyTorch's CPU kernels use.

PyTorch picks kernels by CPU. ATen's vectorised code (softmax, sums, ...) runs AVX-512 where the
CPU has it, AVX2 elsewhere; MKL's matrix products pick a code path by vendor, instruction set and
thread count. Each path rounds differently, and a difference of one bit in a response can reorder
near-tied units or flip a sampled token: a run on an Intel Xeon did not reproduce figures made on an
AMD EPYC. Measured on the tiny default (AMD EPYC, 2 threads): the activation matrix changed with
the thread count (1 vs 2), with ATen's capability (AVX-512 vs AVX2) and with MKL's mode; with the
three settings below it was the same for 1 and 2 threads. MKL's mode is AVX2 *and* STRICT: on an
Intel Xeon, plain `MKL_CBWR=AVX2` let a linear map over a batch of texts round differently from the
same texts one at a time, and STRICT made them identical (at no measurable cost on the AMD EPYC:
BENCHMARKS.md). No pin is proven on every CPU, so activation collection also checks at run time
whether a batch gives the bits of its rows run alone (activations.py: probe_batch_invariance).

These defaults are set when langneurons is imported, before torch (every notebook's first import),
so they reach the kernels. A value already in the environment wins; LANGNEURONS_NATIVE_KERNELS=1
keeps each CPU's fastest kernels instead. Other architectures (ARM) and GPUs round their own way:
there, runs agree within tolerance (make check-figures), not bit for bit.
"""

from __future__ import annotations

import os
import sys

PINNED: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",  # ATen's vectorised kernels: AVX2 on every x86-64 CPU of the last decade
    "MKL_CBWR": "AVX2,STRICT",  # MKL's conditional numerical reproducibility: one code path for Intel and AMD;
                                # STRICT: results that do not depend on how many rows a product has
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN (mkldnn) kernels, likewise
}


def pin_cpu_kernels() -> dict[str, str]:
    """Set the PINNED defaults (unless set already or LANGNEURONS_NATIVE_KERNELS=1); returns what is in effect.

    Has no effect once torch is imported in this process, which is why the package does it first."""
    if os.environ.get("LANGNEURONS_NATIVE_KERNELS") == "1":
        return {}
    if "torch" not in sys.modules:
        for key, value in PINNED.items():
            os.environ.setdefault(key, value)
    return {key: os.environ.get(key, "") for key in PINNED}
