"""Write files so a crash never leaves a half-written output under the final name."""

import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import yaml


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _write_with(path: str | Path, write: Callable[[Path], None]) -> Path:
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return _write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_yaml(path: str | Path, obj: Any) -> Path:
    return write_text(path, yaml.safe_dump(obj, sort_keys=False, allow_unicode=True))


def write_parquet(path: str | Path, df: pd.DataFrame) -> Path:
    return _write_with(path, lambda tmp: df.to_parquet(tmp, index=False))


def read_finished_part(path: Path | None) -> pd.DataFrame | None:
    """A part of a resumable stage saved by write_parquet, or None when there is none or it cannot be
    read (then the caller makes it again): what lets a rerun skip work an interruption left finished."""
    if path is None or not path.is_file():
        return None
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError):
        return None


def write_csv(path: str | Path, df: pd.DataFrame, quote_strings: bool = False) -> Path:
    """CSV without the index; quote_strings quotes every text field, so texts holding a carriage
    return or other control characters stay one field for any CSV reader."""
    quoting = csv.QUOTE_NONNUMERIC if quote_strings else csv.QUOTE_MINIMAL
    return _write_with(path, lambda tmp: df.to_csv(tmp, index=False, quoting=quoting))
