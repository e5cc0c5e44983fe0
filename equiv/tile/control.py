"""Control: annotations, decorators, loops, SPMD blocks and scopes. Parallel constructs are
race domains whose blocks run in a seeded shuffled order (`equiv.memory.RunContext`)."""

from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import torch

from equiv import rounding
from equiv.dtypes import BF16, FP16, FP32, INDEX, INT8, INT16, INT32, INT64, UINT8, DType  # noqa: F401
from equiv.memory import KernelError, Tensor, UnsupportedOpError, current, kernel_site

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

    def incore(self, fn=None, **_kw):
        """``@pl.jit.incore``: a kernel run on one core; eagerly, a plain call."""
        return self(fn)

    def extern(self, fn=None, **kw):
        """``@pl.jit.extern(source=..., ...)``: a kernel written in C++ outside the DSL. Its
        name is covered; calling it is an emulator gap (its body is not Python)."""
        def wrap(f):
            source = kw.get("source") or kw.get("aiv_source") or kw.get("aic_source") or "?"

            def extern_kernel(*_a, **_k):
                raise UnsupportedOpError(f"pl.jit.extern kernel {f.__name__}", kernel_site(),
                                         f"its body is external C++ ({source})")

            extern_kernel.__name__ = f.__name__
            extern_kernel.__wrapped__ = f
            return extern_kernel

        return wrap if fn is None else wrap(fn)

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


def spmd(n: int, name_hint: str = "spmd", **hints) -> Any:
    """``n`` independent blocks, run in a seeded shuffled order; each is a race domain.
    The loop, ``with`` and task-id forms are `equiv.tile.blocks.spmd`."""
    from equiv.tile import blocks

    return blocks.spmd(n, name_hint, **hints)


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
def at(level: Any = None, name_hint: str = "", *, deps: Sequence[Any] | None = None,
       **_hints) -> Iterator[Any]:
    """A single-task scope: the body runs once; ``as tid`` gives its task id.

    ``optimizations=`` (``pl.split``, ``pl.auto_chunk``, ``pl.cross_core_slot``) and
    ``deps=`` are scheduling and placement hints: they do not change what the body computes.
    """
    from equiv.tile.blocks import TaskId

    yield TaskId(name_hint or "at", deps)


# ----------------------------------------------------------------------------------------
# Scopes, scheduling hints, program structure. All of these only steer the compiler or the
# runtime scheduler; the emulator runs each task to completion in program order (one order
# the runtime may pick), so they run as what their bodies compute.
# ----------------------------------------------------------------------------------------
class ScopeMode:
    AUTO = "AUTO"
    MANUAL = "MANUAL"


@contextmanager
def scope(mode: str = ScopeMode.AUTO, **_hints) -> Iterator[None]:
    """``with pl.scope():`` a runtime dependency/memory scope; the body runs once."""
    yield


@contextmanager
def manual_scope(**_hints) -> Iterator[None]:
    """``with pl.manual_scope():`` dependency tracking off for a region; the body runs once."""
    yield


def unroll(start: int, stop: int | None = None, step: int = 1) -> Iterator[int]:
    """``pl.unroll``: compile-time unrolled loop, the iterations of ``range``."""
    return range(start, stop, step)


def yield_(*values: Any) -> Any:
    """``pl.yield_(a, b)``: the values carried out of a loop or branch (one value or a tuple)."""
    return values[0] if len(values) == 1 else tuple(values)


def no_dep(tensor: Any) -> Any:
    """``pl.no_dep(t)`` at a call argument: no dependency tracking for it; the tensor itself."""
    return tensor


class Optimization:
    """A compiler optimisation request (``pl.split(...)``, ``pl.auto_chunk``, ...): a hint."""

    def __init__(self, kind: str, *args: Any, **kwargs: Any):
        self.kind, self.args, self.kwargs = kind, args, kwargs

    def __repr__(self) -> str:
        return f"pl.{self.kind}"


auto_chunk = Optimization("auto_chunk")


def split(mode: Any, **kwargs: Any) -> Optimization:
    return Optimization("split", mode, **kwargs)


def cross_core_slot(**kwargs: Any) -> Optimization:
    return Optimization("cross_core_slot", **kwargs)


class FunctionType:
    """``pl.FunctionType``: where a function runs; eagerly every type is a plain call."""

    Opaque = "Opaque"
    Orchestration = "Orchestration"
    InCore = "InCore"
    AIC = "AIC"
    AIV = "AIV"
    Group = "Group"
    Spmd = "Spmd"
    Inline = "Inline"
    Graph = "Graph"


def function(fn: Any = None, *, type: str = FunctionType.Opaque, **_kw) -> Any:  # noqa: A002
    """``@pl.function`` / ``@pl.function(type=...)``: the function itself."""
    if fn is None:
        return lambda f: f
    return fn


def inline(fn: Any = None, **_kw) -> Any:
    """``@pl.inline``: substituted at each call site by pypto; eagerly a plain call."""
    if fn is None:
        return lambda f: f
    return fn


def program(cls: Any = None, **_kw) -> Any:
    """``@pl.program class P:`` a program of ``@pl.function`` methods: an instance, so
    ``P.kernel(...)`` and ``self.other(...)`` inside it call the methods."""
    if cls is None:
        return lambda c: c()
    return cls()


class _PrefetchNamespace:
    """``pl.prefetch``: warming caches ahead of use changes no value."""

    @staticmethod
    def make_context() -> object:
        return object()

    @staticmethod
    def async_prefetch(src: Any, ctx: Any) -> None:
        if not isinstance(src, Tensor):
            raise KernelError(f"pl.prefetch.async_prefetch of a {type(src).__name__}, not a tensor")
        return None


prefetch = _PrefetchNamespace()


