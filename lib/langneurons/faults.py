"""Fault injection for the resume tests: kill this process at a named point, like a crash would.

Set LANGNEURONS_CRASH_AT=<point>:<count> (e.g. activations:3 = right after the 3rd batch is saved).
The process sends itself SIGKILL, so nothing gets a chance to clean up — the case resuming must survive.
Unset (always, outside the tests), crash_point does nothing.
"""

from __future__ import annotations

import os
import signal

ENV = "LANGNEURONS_CRASH_AT"


def crash_point(point: str, count: int) -> None:
    if os.environ.get(ENV) == f"{point}:{count}":
        os.kill(os.getpid(), signal.SIGKILL)
