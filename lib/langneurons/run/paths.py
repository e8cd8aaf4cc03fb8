"""Every path in the project derives from one root, so notebooks run from any working directory."""

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]
PARAMS_DIR = PROJECT_ROOT / "params"
PROFILES_DIR = PARAMS_DIR / "profiles"
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"


def user_cache() -> Path:
    """This project's folder in the user cache ($XDG_CACHE_HOME, else ~/.cache): fetched and derived files."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "langneurons"


def resolve(path: str | Path) -> Path:
    """A path from params: absolute as given, otherwise relative to the project root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (PROJECT_ROOT / p).resolve()
