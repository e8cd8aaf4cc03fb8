"""Batch sizes that fit: out-of-memory (injected with faults.OOM_ENV) halves the batch and the work goes on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import ALL_SENTENCES
from langneurons.model.activations import MATRIX_FILE, collect_activations
from langneurons.base.batch_halving import BatchSize, DeviceOutOfMemoryError
from langneurons.control.forcing_runs import Condition, run_conditions
from langneurons.base.faults import OOM_ENV
from langneurons.base.params import GenerationParams
from langneurons.control.translation_eval import run_translation


def test_halves_until_it_fits_and_records_it(capsys):
    calls = []

    def work(size: int) -> str:
        calls.append(size)
        if size > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return "done"

    batch = BatchSize("generation.batch_size", 16)
    assert batch.run(work) == "done"
    assert calls == [16, 8, 4, 2] and batch.record() == {"asked": 16, "used": 2}
    assert "out of memory with generation.batch_size=16: continuing with 8" in capsys.readouterr().out


def test_other_errors_pass_through_and_oom_can_be_refused():
    def broken(size: int) -> None:
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        BatchSize("activations.batch_size", 4).run(broken)

    def no_memory(size: int) -> None:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 GB")

    with pytest.raises(DeviceOutOfMemoryError, match=r"activations.batch_size=4: lower it, .*=2") as err:
        BatchSize("activations.batch_size", 4, halve_on_oom=False).run(no_memory)
    assert "\n" not in str(err.value)
    with pytest.raises(DeviceOutOfMemoryError, match="even with translation.batch_size=1"):
        BatchSize("translation.batch_size", 2).run(no_memory)


def test_activations_continue_after_the_last_saved_batch(tiny, tmp_path: Path, monkeypatch):
    model, tokenizer = tiny("xglm")
    texts = ALL_SENTENCES[:12]
    collect_activations(model, tokenizer, texts, tmp_path / "ref", seq_len=64, batch_size=4)
    monkeypatch.setenv(OOM_ENV, "activations:1:2")  # from the 2nd batch on, batches over 2 texts fail
    batch = BatchSize("activations.batch_size", 4)
    collect_activations(model, tokenizer, texts, tmp_path / "oom", seq_len=64, batch_size=batch)
    assert batch.record() == {"asked": 4, "used": 2}
    ref, oom = (np.load(tmp_path / d / MATRIX_FILE) for d in ("ref", "oom"))
    assert not np.isnan(oom).any()
    np.testing.assert_allclose(oom, ref, rtol=1e-5, atol=1e-6)  # the same responses, from smaller batches


def test_generation_redoes_the_failed_condition_with_the_same_texts(tiny, monkeypatch):
    model, tokenizer = tiny("bloom")
    gen = GenerationParams(n_samples=4, first_seed=1, max_new_tokens=6, temperature=1.0, top_k=0, top_p=1.0, batch_size=4,
                           start="auto")
    scores = {"de": pd.DataFrame({"layer": ["transformer.h.0.mlp.dense_4h_to_h"] * 4, "unit": range(4),
                                  "ap": [0.9, 0.8, 0.1, 0.2], "on_p50": [3.0, -3.0, 2.0, 1.0]})}
    conditions = [Condition("none", "", 0, 0), Condition("both", "de", 1, 1), Condition("top", "de", 2, 0)]
    reference = run_conditions(model, tokenizer, conditions, scores, gen, "on_p50", progress=False)
    monkeypatch.setenv(OOM_ENV, "generation:1:1")  # from the 2nd condition on, batches over 1 sample fail
    batch = BatchSize("generation.batch_size", 4)
    halved = run_conditions(model, tokenizer, conditions, scores, gen, "on_p50", progress=False, batch_size=batch)
    assert batch.record() == {"asked": 4, "used": 1}
    pd.testing.assert_frame_equal(halved, reference)
    assert halved["seed"].tolist() == [1, 2, 3, 4] * 3


def test_translation_halves_and_finishes(tiny, monkeypatch):
    model, tokenizer = tiny("llama")
    pairs = {("wmt", "de"): pd.DataFrame({"source": ALL_SENTENCES[:3], "reference": ALL_SENTENCES[4:7]})}
    scores = {"de": pd.DataFrame({"layer": ["model.layers.0.mlp.down_proj"] * 2, "unit": [0, 1], "ap": [0.9, 0.1],
                                  "on_p50": [1.0, -1.0]})}
    monkeypatch.setenv(OOM_ENV, "translation:1:1")
    batch = BatchSize("translation.batch_size", 3)
    results = run_translation(model, tokenizer, pairs, scores, 1, "on_p50", 4, batch)
    assert batch.record() == {"asked": 3, "used": 1}
    assert len(results) == 6 and results["condition"].tolist() == ["none"] * 3 + ["both"] * 3


def test_translation_resumes_from_its_finished_parts(tiny, monkeypatch, tmp_path: Path):
    """An interrupted translation run keeps each finished (task, language, condition) and a rerun
    generates only the rest, with the table an uninterrupted run gives."""
    import langneurons.control.translation_eval as translation_eval

    model, tokenizer = tiny("llama")
    pairs = {(task, "de"): pd.DataFrame({"source": ALL_SENTENCES[:2], "reference": ALL_SENTENCES[4:6]})
             for task in ("flores200", "wmt")}
    scores = {"de": pd.DataFrame({"layer": ["model.layers.0.mlp.down_proj"] * 2, "unit": [0, 1], "ap": [0.9, 0.1],
                                  "on_p50": [1.0, -1.0]})}
    reference = run_translation(model, tokenizer, pairs, scores, 1, "on_p50", 4, 2)

    real, calls = translation_eval.greedy_continuations, []

    def interrupted_at_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user stops the run during the third of four generations
        return real(*args, **kwargs)

    monkeypatch.setattr(translation_eval, "greedy_continuations", interrupted_at_third)
    with pytest.raises(KeyboardInterrupt):
        run_translation(model, tokenizer, pairs, scores, 1, "on_p50", 4, 2, parts_dir=tmp_path / "parts")
    # the two finished parts, and what each part is (base/parts.py); no temp file
    assert sorted(f.name for f in (tmp_path / "parts").iterdir()) == ["0000.parquet", "0001.parquet", "parts.json"]

    calls.clear()

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(translation_eval, "greedy_continuations", counted)
    resumed = run_translation(model, tokenizer, pairs, scores, 1, "on_p50", 4, 2, parts_dir=tmp_path / "parts")
    assert len(calls) == 2  # only the two unfinished generations ran again
    pd.testing.assert_frame_equal(resumed, reference)
