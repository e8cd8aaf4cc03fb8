"""Loading one split of a Hugging Face dataset, with failures turned into errors that say what to do.

Shared by the `hub` data source (PAWS-X, FLORES-200) and the translation tasks' hub loader.
"""

from __future__ import annotations

from typing import Any

from .textsets import DataError


def load_hub_split(dataset_id: str, config: str, split: str, fix: str, offline: str) -> Any:
    """datasets.load_dataset(path=dataset_id, name=config, split=split) — the exact online code path.

    `fix` says which params to correct when the config or split is wrong; `offline` what to use
    instead when the hub cannot be reached.
    """
    import datasets  # imported here: loading it is slow and only the hub sources need it

    where = f"dataset {dataset_id} (config {config}, split {split})"
    try:
        return datasets.load_dataset(path=dataset_id, name=config, split=split)
    except ValueError as e:  # unknown config or split: the dataset loaded, the params are wrong
        raise DataError(f"{where} could not be read ({e}): {fix}") from e
    except (OSError, datasets.exceptions.DatasetsError) as e:  # no network, not found, gated, ...
        raise DataError(
            f"{where} could not be loaded ({type(e).__name__}: {e}). The Hugging Face hub may be "
            "unreachable, or the dataset gated (openlanguagedata/flores_plus needs its terms accepted "
            f"on the hub and `huggingface-cli login`). Offline, {offline}"
        ) from e
