"""Progress of long runs, on stderr.

On a terminal: one status line (pair, cases done of total, rate, ETA, current shape) rewritten
in place with ``\\r`` and clear-to-end-of-line, cut to the terminal's width so it never wraps
(a wrapped line cannot be rewritten and leaves stale lines behind). In a pipe or CI log
(``CI`` set): one plain line every `every` cases or `every_seconds`, whichever comes first, so
a long job still shows it is alive.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import TextIO

from equiv.results import Case

CLEAR_EOL = "\x1b[K"
PLAIN_EVERY = 25  # cases between two plain progress lines in a pipe or CI log
PLAIN_SECONDS = 60.0  # ... or seconds, when cases are slow (expert_shared at pro: ~10 s each)


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Callable as ``progress(pair, done, total, case)`` (what `equiv.check` reports)."""

    def __init__(self, enabled: bool | None = None, stream: TextIO | None = None, live: bool | None = None,
                 every: int = PLAIN_EVERY, every_seconds: float = PLAIN_SECONDS):
        self.stream = stream or sys.stderr
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.live = (tty and not os.environ.get("CI")) if live is None else live
        self.enabled = True if enabled is None else enabled
        self.every = max(1, every)
        self.every_seconds = every_seconds
        self.t0 = time.perf_counter()
        self._last_plain_t = self.t0
        self._pair: str | None = None
        self._pair_t0 = self.t0
        self._shown = False
        self._last_plain = 0

    def _columns(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            return shutil.get_terminal_size((80, 24)).columns

    def status(self, pair: str, done: int, total: int, case: Case | None) -> str:
        now = time.perf_counter()
        if pair != self._pair:
            self._pair, self._pair_t0, self._last_plain, self._last_plain_t = pair, now, 0, now
        elapsed = now - self._pair_t0
        rate = done / elapsed if done and elapsed > 0 else 0.0
        eta = f"ETA {_duration((total - done) / rate)}" if rate and done < total else "ETA ?"
        text = f"{pair} {done}/{total} cases, {rate:.2g}/s, {eta}"
        if case is not None:
            text += f" — {case.shape} {case.recipe}" + (f" {case.variant_label}" if case.variant else "")
        return text

    def __call__(self, pair: str, done: int, total: int, case: Case | None) -> None:
        if not self.enabled:
            return
        text = self.status(pair, done, total, case)
        if self.live:
            limit = max(10, self._columns() - 1)  # never the last column: some terminals wrap there
            if len(text) > limit:
                text = text[:limit - 1] + "…"
            self.stream.write("\r" + text + CLEAR_EOL)
            self._shown = True
            self.stream.flush()
        elif done and done < total and (done - self._last_plain >= self.every or (
                done > self._last_plain and time.perf_counter() - self._last_plain_t >= self.every_seconds)):
            self._last_plain, self._last_plain_t = done, time.perf_counter()
            self.stream.write(text.split(" — ")[0] + "\n")
            self.stream.flush()

    def message(self, text: str) -> None:
        if self.enabled:
            self.clear()
            self.stream.write(text + "\n")
            self.stream.flush()

    def clear(self) -> None:
        if self.live and self._shown:
            self.stream.write("\r" + CLEAR_EOL)
            self.stream.flush()
            self._shown = False
