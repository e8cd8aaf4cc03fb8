"""Stopping a translation row once its answer line is complete gives the answers (and BLEU) of
full-length generation (param translation.stop_at_answer_line)."""

from __future__ import annotations

import pytest

from conftest import ALL_SENTENCES, SENTENCES
from langneurons.control.generation import first_line_complete, greedy_continuations
from langneurons.control.translation import build_prompt, corpus_bleu, extract_answer
from langneurons.model.tiny import build_model, train_tokenizer


@pytest.mark.parametrize("text, complete", [
    ("", False), ("   ", False), ("\n\n", False), (" Hallo", False), (" Hallo Welt\n", True),
    ("\n Hallo\nEnglish:", True), (" Hallo\r", True), (" Hallo\u2028x", True), ("\n\n  Bonjour", False),
])
def test_the_first_line_is_complete_once_a_line_boundary_follows_text(text, complete):
    assert first_line_complete(text) is complete
    if complete:  # what extract_answer keeps can no longer change, whatever comes next
        assert extract_answer(text) == extract_answer(text + "more words\nEnglish: again")


def test_stopping_at_the_answer_line_gives_the_answers_and_bleu_of_full_length_generation():
    # A random Llama with a byte-level vocabulary trained on prompts: it writes line breaks at random
    # places, so some rows stop early and others run to max_new_tokens.
    tokenizer = train_tokenizer([build_prompt(s) + " " + t + "\n" for s, t in zip(SENTENCES["en"] * 6, ALL_SENTENCES)] * 3,
                                "llama", vocab_size=400)
    model = build_model("llama", tokenizer, init_std=0.3)
    prompts = [build_prompt(s) for s in ALL_SENTENCES]
    full = greedy_continuations(model, tokenizer, prompts, 40, 8)
    early = greedy_continuations(model, tokenizer, prompts, 40, 8, stop_at_first_line=True)

    answers_full, answers_early = [extract_answer(c) for c in full], [extract_answer(c) for c in early]
    assert answers_early == answers_full
    assert corpus_bleu(answers_early, ALL_SENTENCES, "de") == corpus_bleu(answers_full, ALL_SENTENCES, "de")
    stopped = [i for i, (f, e) in enumerate(zip(full, early)) if len(e) < len(f)]
    assert len(stopped) >= 2, "no row stopped early: the comparison would not test the stop"
    assert all(full[i].startswith(early[i]) for i in range(len(prompts)))  # the same tokens, cut after the answer line
    assert len(stopped) < len(prompts)  # and rows without a complete line ran to the end
