"""LAPE's counting pass (model/lape_counting.py): the authors' packed protocol recounted by hand,
resumed after a kill, special tokens skipped, and a window the model cannot take refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SENTENCES
from families import build
from langneurons.model.ffn_act import find_act_modules
from langneurons.model.lape_counting import (CountingError, check_window, count_positive, model_max_positions,
                                             packed_windows, text_sequences, tokenize)

LANGS = ["en", "de", "ja"]
WINDOW = 8


def _by_hand(model, tok, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Per language: ids of every text without special tokens, end to end; every full window run alone;
    every position of every FFN activation unit looked at one by one."""
    acts = find_act_modules(model)
    modules = dict(model.named_modules())
    seen: dict[str, torch.Tensor] = {}
    hooks = [modules[a.path].register_forward_hook(lambda m, i, o, p=a.path: seen.__setitem__(p, o.detach()))
             for a in acts]
    positive = np.zeros((len(LANGS), sum(a.width for a in acts)), dtype=np.int64)
    tokens = np.zeros(len(LANGS), dtype=np.int64)
    try:
        for li, lang in enumerate(LANGS):
            stream: list[int] = []
            for text in SENTENCES[lang]:
                stream += tok(text, add_special_tokens=False)["input_ids"]
            for w in range(len(stream) // window):
                with torch.no_grad():
                    model(input_ids=torch.tensor([stream[w * window:(w + 1) * window]]))
                for a in acts:
                    out = seen[a.path][0]
                    for pos in range(window):
                        for j in range(a.width):
                            positive[li, a.offset + j] += int(out[pos, j] > 0)
                tokens[li] += window
    finally:
        for h in hooks:
            h.remove()
    return positive, tokens


def _packed(tok) -> dict:
    return {lang: packed_windows(tokenize(tok, SENTENCES[lang], "packed", "count")[0], WINDOW) for lang in LANGS}


def test_packed_counts_equal_a_recount_by_hand(tmp_path: Path):
    model, tok = build("xglm")
    positive, tokens, languages = count_positive(model, _packed(tok), batch_size=1, work_dir=tmp_path)
    want_positive, want_tokens = _by_hand(model, tok, WINDOW)
    assert languages == LANGS
    np.testing.assert_array_equal(tokens, want_tokens)
    np.testing.assert_array_equal(positive, want_positive)
    assert positive.sum() > 0


_KILLED = """
import sys; sys.path.insert(0, {tests!r})
import numpy as np
from pathlib import Path
from families import build
from test_lape_counting import _packed
from langneurons.model.lape_counting import count_positive
model, tok = build("xglm")
positive, tokens, _ = count_positive(model, _packed(tok), batch_size=1, work_dir=Path({work!r}))
np.save({out!r}, positive)
"""


@pytest.mark.slow
def test_a_killed_count_resumes_to_the_counts_by_hand(tmp_path: Path):
    script = _KILLED.format(tests=str(Path(__file__).parent), work=str(tmp_path / "work"), out=str(tmp_path / "p.npy"))
    env = {**os.environ, "LANGNEURONS_CRASH_AT": "lape_counting:3"}
    killed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode != 0 and not (tmp_path / "p.npy").exists()
    env.pop("LANGNEURONS_CRASH_AT")
    resumed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming after batch 3" in resumed.stdout
    model, tok = build("xglm")
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), _by_hand(model, tok, WINDOW)[0])


def test_the_tail_is_dropped_and_the_budget_holds():
    seqs = packed_windows([[1, 2, 3], [4, 5], [6, 7, 8, 9]], window=4)
    assert seqs.ids.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]] and seqs.positions == 8  # 9 dropped
    assert packed_windows([[1, 2, 3], [4, 5], [6, 7, 8, 9]], window=4, max_tokens=7).positions == 4


def test_skipping_special_tokens_counts_every_other_token():
    model, tok = build("xglm")
    ids, special = tokenize(tok, SENTENCES["en"], "texts", "skip")
    assert all(s[0] == 1 for s in special)  # XGLM prepends </s> to every text
    counted = text_sequences(ids, special, skip_special=True, pad_id=tok.pad_token_id)
    every = text_sequences(ids, special, skip_special=False, pad_id=tok.pad_token_id)
    assert every.positions - counted.positions == len(ids)
    assert (counted.attention == every.attention).all() and not counted.counted[:, 0].any()


def test_a_window_longer_than_the_model_takes_names_the_param():
    model, _ = build("xglm")
    limit = model_max_positions(model)
    check_window(limit, limit)
    with pytest.raises(CountingError, match=rf"selection.lape.window = {limit + 1} is longer than the model's {limit} "
                                            rf"positions: set selection.lape.window to at most {limit}"):
        check_window(limit + 1, limit)


def test_a_hub_corpus_is_streamed_up_to_the_token_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """source=hub: the first rows of each language's config, until max_tokens; a wrong column says which."""
    import pandas as pd

    import datasets

    from test_hub_data import _write_repo
    from langneurons.base.errors import DataError
    from langneurons.base.params import HubSource
    from langneurons.model.lape_counting import hub_texts

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # never the network; a fresh cache for the stand-in
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    rows = {f"wiki.{lang}": pd.DataFrame({"text": [f"{s} ({i})" for i, s in enumerate(SENTENCES[lang] * 5)]})
            for lang in LANGS}
    hub = HubSource(id=str(_write_repo(tmp_path / "wiki", "train", rows)), split="train", text_field="text",
                    configs={lang: f"wiki.{lang}" for lang in LANGS})
    _, tok = build("xglm")
    texts = hub_texts(hub, "de", tok, max_tokens=40)
    lengths = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert texts[0] == f"{SENTENCES['de'][0]} (0)" and sum(lengths[:-1]) < 40 <= sum(lengths)
    wrong = HubSource(id=hub.id, split="train", text_field="body", configs=hub.configs)
    with pytest.raises(DataError, match="has no column 'body'.*selection.lape.hub.text_field"):
        hub_texts(wrong, "de", tok, max_tokens=40)


def test_the_protocol_replaces_the_pass_counts_and_keeps_them_for_comparison(tmp_path: Path):
    """count_protocol (notebook 02): the run's lape_counts.npz becomes the protocol's counts, notebook 02's
    own counts move beside it, and the texts are taken per language in text_id order."""
    import dataclasses

    import pandas as pd

    from langneurons.base.params import load_params
    from langneurons.model.lape_counting import count_protocol
    from langneurons.model.lape_pass import COUNTS_FILE, TEXTS_COUNTS_FILE, load_lape_counts

    model, tok = build("xglm")
    rows = [(lang, s) for lang in LANGS for s in SENTENCES[lang]]
    texts = pd.DataFrame({"text_id": range(len(rows)), "text": [s for _, s in rows], "lang": [lang for lang, _ in rows]})
    texts = texts.sample(frac=1.0, random_state=0)  # stored order must not matter: text_id order does
    out = tmp_path / "activations"
    out.mkdir()
    np.savez(out / COUNTS_FILE, positive=np.zeros((3, 1)), tokens=np.ones(3), languages=np.array(LANGS))
    lape = dataclasses.replace(load_params("tiny").selection.lape, counting="packed", window=WINDOW, batch_size=2)
    counted = count_protocol(model, tok, lape, texts, LANGS, seq_len=64, out_dir=out, work_dir=tmp_path / "work")
    positive, tokens, languages = load_lape_counts(out)
    want_positive, want_tokens = _by_hand(model, tok, WINDOW)
    assert languages == LANGS and counted == dict(zip(LANGS, want_tokens.tolist()))
    np.testing.assert_array_equal(tokens, want_tokens)
    assert positive.shape == want_positive.shape and (out / TEXTS_COUNTS_FILE).is_file()
    assert not (tmp_path / "work" / "lape_counting_partial.npz").exists()
