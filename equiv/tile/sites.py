"""Kernel sites: the file:line of the kernel's own code that made an access or a decision,
found by walking the stack past the emulator's frames, and sites interned as small ints."""

from __future__ import annotations

import contextvars
import os
import sys
from contextlib import contextmanager
from typing import Iterator


# The package directory: frames in its files are the emulator's own, not the kernel's.
_EQUIV_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_SITE_OVERRIDE: contextvars.ContextVar[str | None] = contextvars.ContextVar("equiv_site", default=None)


@contextmanager
def site_override(site: str) -> Iterator[None]:
    """Within the block, `kernel_site()` is `site` (a batched stage replays its stores after
    the kernel line that made them has passed)."""
    token = _SITE_OVERRIDE.set(site)
    try:
        yield
    finally:
        _SITE_OVERRIDE.reset(token)


def kernel_site() -> str:
    """file:line of the innermost frame outside the emulator (the kernel's own line)."""
    override = _SITE_OVERRIDE.get()
    if override is not None:
        return override
    frame = sys._getframe(1)
    cwd = os.getcwd()
    while frame is not None:
        shown = _kernel_file(frame.f_code.co_filename, cwd)
        if shown is not None:
            return f"{shown}:{frame.f_lineno}"
        frame = frame.f_back
    return "<unknown>"


_KERNEL_FILES: dict[tuple[str, str], str | None] = {}


def _kernel_file(co_filename: str, cwd: str) -> str | None:
    """How a code file is shown in sites, or None for the emulator's own files (cached: the
    walk runs for every store of every block)."""
    key = (co_filename, cwd)
    try:
        return _KERNEL_FILES[key]
    except KeyError:
        pass
    fname = os.path.abspath(co_filename)
    shown = None if fname.startswith(_EQUIV_DIR + os.sep) or "contextlib" in fname else short_path(fname)
    _KERNEL_FILES[key] = shown
    return shown


def short_path(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel

# Kernel sites interned process-wide, so an int32 per element names the line that wrote it
# and ids compare across the runs of a check.
SITES: list[str] = []
_SITE_IDS: dict[str, int] = {}


def intern_site(site: str) -> int:
    sid = _SITE_IDS.get(site)
    if sid is None:
        sid = _SITE_IDS[site] = len(SITES)
        SITES.append(site)
    return sid
