"""Progress lines for long runs: on a terminal only, silent in CI logs and pipes."""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from equiv.runner import Case


class Progress:
    """Rewrites one status line on stderr (cases done, current pair and shape, elapsed)."""

    def __init__(self, enabled: bool | None = None, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = self.stream.isatty() and not os.environ.get("CI")
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self._width = 0

    def __call__(self, pair: str, done: int, total: int, case: Case | None) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.t0
        where = f"{case.shape} {case.recipe}" + (f" {case.variant_label}" if case and case.variant else "") \
            if case else "done"
        line = f"[{elapsed:6.1f}s] {pair}: {done}/{total} cases  {where}"
        pad = max(0, self._width - len(line))
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._width = len(line)

    def message(self, text: str) -> None:
        if self.enabled:
            self.clear()
            self.stream.write(text + "\n")
            self.stream.flush()

    def clear(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0
