"""Control: annotations, decorators, loops, SPMD blocks and scopes. Parallel constructs are
race domains whose blocks run in a seeded shuffled order (`equiv.memory.RunContext`)."""

from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import torch

from equiv import rounding
from equiv.dtypes import BF16, FP16, FP32, INDEX, INT8, INT16, INT32, INT64, UINT8, DType  # noqa: F401
from equiv.memory import KernelError, Tensor, current

from contextlib import contextmanager

_range = range  # the builtin; ``range`` below is the DSL's

# ----------------------------------------------------------------------------------------
# Annotations and decorators (accepted, not enforced)
# ----------------------------------------------------------------------------------------
class _Annotation:
    def __class_getitem__(cls, item):
        return (cls, item)


class Out(_Annotation):
    pass


class InOut(_Annotation):
    pass


class Scalar(_Annotation):
    pass


def _tensor_class_getitem(cls, item):
    return (Tensor, item)


Tensor.__class_getitem__ = classmethod(_tensor_class_getitem)  # type: ignore[attr-defined]


class Level:
    CORE_GROUP = "CORE_GROUP"
    CORE = "CORE"
    HOST = "HOST"


class _Jit:
    """``@pl.jit`` and friends run the function eagerly."""

    def __call__(self, fn=None, **_kw):
        if fn is None:
            return lambda f: f
        return fn

    def inline(self, fn=None, **_kw):
        return self(fn)

    def host(self, fn=None, **_kw):
        # A host orchestrator dispatches per-rank programs (``f(..., device=r)``).
        from equiv.tile import distributed

        return distributed.host(fn)


jit = _Jit()


# ----------------------------------------------------------------------------------------
# Control constructs
# ----------------------------------------------------------------------------------------
def _parallel_blocks(n: int, name: str) -> Iterator[int]:
    ctx = current()
    stage = ctx.new_stage()
    for b in ctx.block_order(int(n)):
        with ctx.block(stage, b, name):
            yield b


def spmd(n: int, name_hint: str = "spmd", **_hints) -> Iterator[int]:
    """``n`` independent blocks, run in a seeded shuffled order; each is a race domain."""
    return _parallel_blocks(n, name_hint)


def parallel(start: int, stop: int | None = None, step: int = 1, name_hint: str = "parallel",
             **_hints) -> Iterator[int]:
    """Independent iterations (``pl.parallel``); run shuffled like ``spmd`` blocks."""
    values = list(_range(start) if stop is None else _range(start, stop, step))
    for i in _parallel_blocks(len(values), name_hint):
        yield values[i]


def range(start: int, stop: int | None = None, step: int = 1, **_hints) -> Iterator[int]:  # noqa: A001
    """Sequential ascending loop."""
    return iter(_range(int(start)) if stop is None else _range(int(start), int(stop), int(step)))


def pipeline(start: int, stop: int | None = None, step: int = 1, stage: int = 1, **_hints) -> Iterator[int]:
    """``pl.pipeline`` has exactly the iterations of ``range``; ``stage`` only overlaps loads."""
    return range(start, stop, step)


@contextmanager
def at(level: Any = None, name_hint: str = "", **_hints) -> Iterator[None]:
    """A single-task scope: the body runs once."""
    yield


