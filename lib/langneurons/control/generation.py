"""Unconditional text generation as in the paper: sample from the start-of-text token alone.

Each batch repeats one prompt, so all rows have the same length and need no padding. Sampling is
seeded per sample, as in the paper (sample i draws from its own generator seeded first_seed + i),
so a sample's text does not depend on the batch it was generated in: halving the batch after an
out-of-memory error gives the same texts.
"""

from __future__ import annotations

import math

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from langneurons.model.activations import pad_id_of
from langneurons.model.loading import input_device


class GenerationError(ValueError):
    """Generation parameters or tokenizer do not allow sampling."""


START_CHOICES = ("auto", "bos", "eos")  # generation.start; any other value is a text


def _special_ids(tokenizer: PreTrainedTokenizerBase, which: str) -> list[int]:
    token = tokenizer.bos_token if which == "bos" else tokenizer.eos_token
    ids = list(tokenizer(token, add_special_tokens=False)["input_ids"]) if token else []
    if not ids:
        other = "eos" if which == "bos" else "bos"
        raise GenerationError(f"{type(tokenizer).__name__} has no {which.upper()} token: set generation.start={other}, "
                              "auto or a text to start unconditional generation from")
    return ids


def start_ids(tokenizer: PreTrainedTokenizerBase, start: str = "auto") -> list[int]:
    """The tokens unconditional generation starts from (param generation.start).

    - auto (default): what the tokenizer itself puts before any text — XGLM `</s>`, Llama/Mistral
      `<s>`, Gemma `<bos>` (tokenizer("") is not empty) — and where it puts nothing (BLOOM, GPT-2,
      GPT-NeoX, Falcon, Qwen: no BOS token is added), its EOS token: the paper starts BLOOM from the
      text "</s>", its EOS, and a document boundary is what these models saw before a new text.
    - bos / eos: that special token (an error naming the other choice if the tokenizer has none:
      Qwen tokenizers have no BOS).
    - anything else: that text, tokenized with the tokenizer's special tokens (e.g. "The").
    """
    if start in ("bos", "eos"):
        return _special_ids(tokenizer, start)
    if start != "auto":
        ids = list(tokenizer(start)["input_ids"])
        if not ids:
            raise GenerationError(f"generation.start={start!r} tokenizes to nothing: use auto, bos, eos or a non-empty text")
        return ids
    ids = list(tokenizer("")["input_ids"])
    if ids:
        return ids
    if tokenizer.eos_token or tokenizer.bos_token:
        return _special_ids(tokenizer, "eos" if tokenizer.eos_token else "bos")
    raise GenerationError(f"{type(tokenizer).__name__} adds no start token and has no EOS/BOS token: "
                          "set generation.start to a text")


def _check_sampling(n_samples: int, max_new_tokens: int, temperature: float, top_k: int, top_p: float, batch_size: int) -> None:
    if n_samples < 1 or batch_size < 1 or max_new_tokens < 1:
        raise GenerationError(
            f"n_samples, batch_size and max_new_tokens must be >= 1, got {n_samples}, {batch_size}, {max_new_tokens}"
        )
    if temperature <= 0:
        raise GenerationError(f"temperature must be > 0 for sampling, got {temperature}")
    if top_k < 0:
        raise GenerationError(f"top_k must be >= 0 (0 = no top-k filtering), got {top_k}")
    if not 0 < top_p <= 1:
        raise GenerationError(f"top_p must lie in (0, 1] (1 = no nucleus filtering), got {top_p}")


def _eos_id(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int | list[int] | None:
    """The model's own EOS (may be several ids), else the tokenizer's."""
    eos = model.generation_config.eos_token_id
    return eos if eos is not None else tokenizer.eos_token_id


class InverseCdfSampler(LogitsProcessor):
    """Draws each row's next token from softmax(scores) and returns scores that only allow that token.

    Used as the last logits processor of a greedy `generate`, so greedy decoding emits the sampled
    token. It samples from exactly the same distribution as `do_sample=True`, but by inverting the
    cumulative distribution with one uniform number per row and step: torch.multinomial took half
    of the whole generation time on CPU (BENCHMARKS.md). Row r's numbers come from its own CPU
    generator seeded `seeds[r]` (drawn up front, `steps` per row), so a sample's random stream is
    the same whatever batch it is in and on whatever device the model runs.
    """

    def __init__(self, seeds: list[int], steps: int):
        self.uniforms = torch.stack([torch.rand(steps, generator=torch.Generator().manual_seed(s)) for s in seeds])
        self.step = 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if scores.shape[0] != self.uniforms.shape[0] or self.step >= self.uniforms.shape[1]:
            raise GenerationError(f"the sampler was made for {self.uniforms.shape[0]} rows and "
                                  f"{self.uniforms.shape[1]} steps; got row count {scores.shape[0]} at step {self.step + 1}")
        cdf = torch.softmax(scores.float(), dim=-1).cumsum_(dim=-1)  # in place: one [batch, vocab] buffer less
        u = self.uniforms[:, self.step:self.step + 1].to(scores.device) * cdf[:, -1:]
        self.step += 1
        token = torch.searchsorted(cdf, u, right=True).clamp_(max=scores.shape[-1] - 1)
        return scores.fill_(float("-inf")).scatter_(1, token, 0.0)  # generate hands us its own copy of the scores


def sample_texts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    n_samples: int,
    max_new_tokens: int,
    temperature: float,
    top_k: int,
    top_p: float,
    first_seed: int,
    batch_size: int,
    prompt_ids: list[int] | None = None,
    start: str = "auto",
) -> list[str]:
    """n_samples continuations of the start tokens (`start`, see start_ids; or prompt_ids), decoded
    without special tokens.

    Sample i is drawn with seed first_seed + i (the paper: seeds 1..100), whatever the batch size.

    Temperature, top-k and top-p are applied by our own processors, so a checkpoint's
    generation_config (e.g. Llama-2's top_p=0.9) cannot change them; top_k=0 means no top-k and
    top_p=1 no nucleus filtering (the paper's plain sampling).
    """
    _check_sampling(n_samples, max_new_tokens, temperature, top_k, top_p, batch_size)
    prompt = list(prompt_ids) if prompt_ids is not None else start_ids(tokenizer, start)
    if not prompt:
        raise GenerationError("prompt_ids is empty: pass at least one token id, or None for the start token")
    device = input_device(model)
    texts: list[str] = []
    for b in range(math.ceil(n_samples / batch_size)):
        size = min(batch_size, n_samples - b * batch_size)
        input_ids = torch.tensor([prompt], dtype=torch.long, device=device).repeat(size, 1)
        warpers: list[LogitsProcessor] = [TemperatureLogitsWarper(temperature)]
        if top_k > 0:
            warpers.append(TopKLogitsWarper(top_k))
        if top_p < 1:
            warpers.append(TopPLogitsWarper(top_p))
        first = first_seed + b * batch_size
        sampler = InverseCdfSampler(list(range(first, first + size)), max_new_tokens)
        # greedy decoding of the sampler's one-hot scores = sampling (see InverseCdfSampler)
        out = model.generate(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
            logits_processor=LogitsProcessorList([*warpers, sampler]), temperature=None, top_k=None, top_p=None,
            max_new_tokens=max_new_tokens, eos_token_id=_eos_id(model, tokenizer), pad_token_id=pad_id_of(tokenizer),
            return_dict_in_generate=False,
        )
        texts.extend(tokenizer.batch_decode(out[:, len(prompt):], skip_special_tokens=True))
    return texts


def left_pad(batch_ids: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists: generation appends on the right, so every prompt must end at the edge."""
    width = max(len(x) for x in batch_ids)
    input_ids = torch.full((len(batch_ids), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch_ids), width), dtype=torch.long)
    for i, x in enumerate(batch_ids):
        input_ids[i, width - len(x):] = torch.tensor(x, dtype=torch.long)
        attention_mask[i, width - len(x):] = 1
    return input_ids.to(device), attention_mask.to(device)


def first_line_complete(text: str) -> bool:
    """Whether the first line of `text` after leading whitespace has ended (translation.extract_answer's
    answer can no longer change): a line boundary, as str.splitlines sees one, follows some text."""
    lines = text.lstrip().splitlines(keepends=True)
    return bool(lines) and lines[0] != lines[0].splitlines()[0]


class FirstLineStop(StoppingCriteria):
    """Stops a row of greedy generation once its first answer line is complete.

    The translation prompt's answer is the first line after "Target Language:"; what the model
    writes after it (often a new "English:" line) is cut off anyway. Greedy rows are independent,
    so the tokens up to the stop are those of a full-length run (tests/test_translation_stop.py).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, prompt_length: int):
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length:], skip_special_tokens=True)
        return torch.tensor([first_line_complete(t) for t in texts], dtype=torch.bool, device=input_ids.device)


@torch.inference_mode()
def greedy_continuations(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str], max_new_tokens: int, batch_size: int,
    stop_at_first_line: bool = False,
) -> list[str]:
    """Greedy continuation of each prompt (tokenized as tokenizer(prompt)), batched with left padding.

    Prompts are batched by length (less padding) and returned in input order; the position ids
    transformers derives from the attention mask keep padded and unpadded runs equal.
    `stop_at_first_line`: a row stops once the first line of its continuation is complete (FirstLineStop).
    """
    if not prompts:
        return []
    ids = tokenizer(prompts, add_special_tokens=True)["input_ids"]
    order = sorted(range(len(prompts)), key=lambda i: len(ids[i]))
    out: list[str] = [""] * len(prompts)
    device = input_device(model)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        input_ids, attention_mask = left_pad([ids[i] for i in rows], pad_id_of(tokenizer), device)
        stopping = StoppingCriteriaList([FirstLineStop(tokenizer, input_ids.shape[1])] if stop_at_first_line else [])
        generated = model.generate(
            input_ids=input_ids, attention_mask=attention_mask, do_sample=False, max_new_tokens=max_new_tokens,
            eos_token_id=_eos_id(model, tokenizer), pad_token_id=pad_id_of(tokenizer), top_k=None, top_p=None,
            temperature=None, stopping_criteria=stopping,
        )
        texts = tokenizer.batch_decode(generated[:, input_ids.shape[1]:], skip_special_tokens=True)
        for i, text in zip(rows, texts):
            out[i] = text
    return out
