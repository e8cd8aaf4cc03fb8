"""Load any Hugging Face causal LM (hub id or local directory) with its tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from langneurons.base import paths
from langneurons.base.params import ModelParams

if TYPE_CHECKING:  # transformers takes seconds to import: only loading a model needs it
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class ModelLoadError(RuntimeError):
    """The model could not be loaded: the message says why and what to do."""


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("model.device=cuda but no CUDA GPU is visible: use model.device=cpu (or auto)")
    return torch.device(device)


def model_source(mp: ModelParams) -> str:
    """What the weights are: the local directory when given, else the hub id (with the GGUF file's name)."""
    where = str(paths.resolve(mp.path)) if mp.path else (mp.id or (mp.gguf_package or ""))
    return f"{where}/{mp.gguf_file}" if mp.gguf_file else where


def weights_note(mp: ModelParams) -> str:
    """Where float weights came from when not a plain checkpoint (a GGUF file's quantization), else ''."""
    from langneurons.model.gguf_weights import describe

    return describe(mp)


def load_model(mp: ModelParams) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model in eval mode on the params' device (or spread by device_map) and its tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source = model_source(mp)
    if mp.gguf_file:  # dequantized once into a float folder in the user cache; loaded from there
        from langneurons.model.gguf_weights import GGUFError, float_copy

        try:
            source = str(float_copy(mp))
        except GGUFError as e:
            raise ModelLoadError(str(e)) from e
    dtype = "auto" if mp.dtype == "auto" else _DTYPES[mp.dtype]
    kwargs = dict(revision=mp.revision, trust_remote_code=mp.trust_remote_code)
    try:
        check_causal(AutoConfig.from_pretrained(source, **kwargs), source)  # before any weight is read
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, device_map=mp.device_map,
                                                     attn_implementation=mp.attn_implementation, **kwargs)
    except ValueError as e:
        if "Unrecognized configuration class" in str(e):
            raise ModelLoadError(
                f"{source} is not a causal (decoder) language model: langneurons needs one, e.g. XGLM, BLOOM, Llama"
            ) from e
        raise
    except OSError as e:
        local = mp.path is not None or mp.gguf_file is not None or Path(source).exists()
        hint = (
            "check the directory holds config.json, weights and tokenizer files"
            if local
            else "the hub may be unreachable (offline?) or the model gated (accept its licence, log in): "
            "offline, use the default profile (make replicate) or model.path=<local dir>"
        )
        cause = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"could not load model {source!r}: {hint}. ({cause})") from e
    if mp.device_map is None:
        model = model.to(resolve_device(mp.device))
    return model.eval(), tokenizer


def check_causal(config: PretrainedConfig, source: str) -> None:
    """Refuse encoders and encoder-decoders that AutoModelForCausalLM would still load (e.g. BERT).

    transformers maps BERT-like configs to an LM-head class, so loading alone does not tell; the
    architecture the checkpoint was saved with does. Read from the config, before any weight loads.
    """
    saved = list(getattr(config, "architectures", None) or [])
    causal = [a for a in saved if a.endswith(("ForCausalLM", "LMHeadModel"))]
    if getattr(config, "is_encoder_decoder", False) or (saved and not causal):
        raise ModelLoadError(
            f"{source} is not a causal (decoder) language model (saved as {', '.join(saved) or config.model_type}): "
            "langneurons needs one, e.g. XGLM, BLOOM, Llama"
        )


def input_device(model: PreTrainedModel) -> torch.device:
    """Where inputs go: the device of the input embeddings (also right under device_map)."""
    return model.get_input_embeddings().weight.device
