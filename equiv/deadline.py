"""A hard deadline for a block of work in the main thread.

The gate's budget is for the whole pull request: pypto-lib's PR job is killed at its own
timeout, and a gate killed there leaves no verdict, no JUnit and no report. Entries start only
while budget is left, but one entry's cases can run far past its estimate; this stops it where
the budget ends, so the gate can still list it as not checked and write everything out.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

# Set once a deadline stopped a block: its emulated ranks and blocks may still be running.
abandoned_threads = False


class DeadlineReached(BaseException):
    """The deadline passed while the block ran. A BaseException, so that no ``except
    Exception`` (a kernel's, or equiv's around a kernel) takes it for the kernel's failure."""


def available() -> bool:
    """Whether a hard deadline can be set here (POSIX timers, in the main thread)."""
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def hard_deadline(seconds: float | None) -> Iterator[None]:
    """Raise `DeadlineReached` in the main thread once `seconds` pass inside the block (None,
    or where `available()` is false: no deadline; the caller's own checks still apply).
    Emulated ranks and blocks run in daemon threads; they are abandoned, not joined."""
    if seconds is None or not available():
        yield
        return

    def fire(signum: int, frame: object) -> None:
        global abandoned_threads
        abandoned_threads = True
        raise DeadlineReached(f"the deadline of {seconds:.0f} s passed")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def exit_process(code: int) -> None:
    """Leave the process with `code`. After a deadline stopped a block, its abandoned daemon
    threads can make the interpreter's shutdown abort (SIGABRT, exit 134) after the verdict was
    printed; everything is written by then, so the process leaves without that shutdown."""
    if abandoned_threads:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
