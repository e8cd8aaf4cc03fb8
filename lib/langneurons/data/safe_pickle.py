"""Read the released translation pickles without running anything a pickle may ask for.

A pickle can name any importable callable and have it called while it loads (os.system, ...). The
released files only hold lists of dicts of strings, so the unpickler here refuses every global and
every persistent reference, and the result is checked to hold nothing but lists, dicts, strings and
integers. pickle.load is never called on the file.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from langneurons.base.errors import DataError

_ONLY = "only lists, dicts, strings and integers are read"
_FIX = "use the released file, never a pickle from elsewhere"


class _Refused(pickle.UnpicklingError):
    """Something the pickle asked for that is refused; the message says what, for DataError."""


class _BuiltinsOnly(pickle.Unpickler):
    """Builds only what the pickle opcodes make on their own: no import, hence no call."""

    def find_class(self, module: str, name: str) -> Any:
        raise _Refused(f"a pickled object of type '{module}.{name}'")

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("a persistent reference")


def _check(obj: Any, path: Path) -> None:
    """Walk the loaded value (iteratively, and each container once: a pickle may hold cycles)."""
    seen: set[int] = set()
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, dict)):
            if id(item) in seen:
                continue
            seen.add(id(item))
            if isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
            else:
                stack.extend(item)
        elif not isinstance(item, (str, int)):  # bool is an int
            raise DataError(f"{path} holds a value of type '{type(item).__name__}' ({_ONLY}): {_FIX}")


def load_builtin_pickle(path: Path) -> Any:
    """The value pickled in `path`, refused (DataError) unless it is made of lists, dicts, str and int."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is missing: fetch the released files with `make data`")
    try:
        with open(path, "rb") as f:
            obj = _BuiltinsOnly(f).load()
    except _Refused as e:
        raise DataError(f"{path} holds {e} ({_ONLY}): {_FIX}") from None
    except Exception as e:  # anything a malformed stream raises (EOFError, TypeError, ...): one message
        reason = " ".join(f"{type(e).__name__}: {e}".split())[:200]
        raise DataError(f"{path} is not a readable pickle ({reason}): {_FIX}") from None
    _check(obj, path)
    return obj
