"""Live progress in the terminal while a notebook runs in its kernel.

papermill can copy everything a kernel prints to file-like objects of the caller (its
`stdout_file`/`stderr_file`). `StageOutput` is such an object: each line the notebook prints, and
each refresh of a tqdm bar (which ends in a carriage return), goes to the terminal prefixed with
the profile and stage, e.g. `  tiny 02_activations | activations:  41%|███  | 1712/4199 [00:07<00:10, 236text/s]`.
The bars (texts, chunks of units, conditions x samples) carry their own rate and ETA; the
executed notebook keeps its own output as before. Bars refresh every TQDM_MININTERVAL seconds
(10 in make replicate), so a long stage shows a line at least that often.
"""

from __future__ import annotations

import re
import sys
from typing import TextIO

_BREAK = re.compile(r"[\r\n]")


class StageOutput:
    """A write-only text stream that prints complete lines and tqdm refreshes with a prefix."""

    def __init__(self, label: str, terminal: TextIO | None = None):
        self.label = label
        self.terminal = terminal
        self._partial = ""
        self._last = ""

    def write(self, text: str) -> int:
        self._partial += text
        *complete, self._partial = _BREAK.split(self._partial)
        for segment in complete:
            self._emit(segment)
        return len(text)

    def _emit(self, segment: str) -> None:
        segment = segment.strip()
        if segment and segment != self._last:  # tqdm redraws the same line on close
            print(f"  {self.label} | {segment}", file=self.terminal or sys.stdout, flush=True)
            self._last = segment

    def flush(self) -> None:
        """Nothing buffered but an unfinished line, which is printed when it is finished."""

    def close(self) -> None:
        self._emit(self._partial)
        self._partial = ""
