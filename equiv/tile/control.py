"""Control: annotations, decorators, loops, SPMD blocks and scopes. Parallel constructs are
race domains whose blocks run in a seeded shuffled order (`equiv.tile.context.RunContext`)."""

from __future__ import annotations

import functools

from typing import Any, Iterator, Sequence


from equiv.tile import context
from equiv.tile.errors import KernelError, UnsupportedOpError
from equiv.tile.memory import Tensor
from equiv.tile.context import current
from equiv.tile.sites import kernel_site
from equiv.tile.lanes import Lanes
from equiv.tile.batch.stages import Stage

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

    def __call__(self, fn=None, *, auto_scope: bool = True, **_kw):
        """``auto_scope`` (compiler-placed runtime scopes) is a scheduling choice."""
        if fn is None:
            return lambda f: f
        return fn

    def inline(self, fn=None, *, auto_scope: bool = True, **_kw):
        return self(fn)

    def incore(self, fn=None, **_kw):
        """``@pl.jit.incore``: a kernel run on one core; eagerly, a plain call (as kernel
        code, not orchestration: see `equiv.tile.access.slice`)."""
        if fn is None:
            return lambda f: self.incore(f)

        @functools.wraps(fn)
        def kernel(*args, **kwargs):
            with _in_kernel():
                return fn(*args, **kwargs)
        return kernel

    def extern(self, fn=None, *, core_type: str = "aiv", source: str | None = None,
               aic_source: str | None = None, aiv_source: str | None = None,
               include_dirs: Sequence[str] = (), dual_aiv_dispatch: bool = False, **_kw):
        """``@pl.jit.extern(source=..., ...)``: a kernel written in C++ outside the DSL. Its
        name is covered; calling it is an emulator gap (its body is not Python)."""
        def wrap(f):
            src = source or aiv_source or aic_source or "?"

            def extern_kernel(*_a, **_k):
                raise UnsupportedOpError(f"pl.jit.extern kernel {f.__name__}", kernel_site(),
                                         f"its body is external C++ ({src})")

            extern_kernel.__name__ = f.__name__
            extern_kernel.__wrapped__ = f
            return extern_kernel

        return wrap if fn is None else wrap(fn)

    def host(self, fn=None, **_kw):
        # A host orchestrator dispatches per-rank programs (``f(..., device=r)``).
        from equiv.tile.distributed.host import host

        return host(fn)


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


class _ParallelLoop:
    """What ``pl.parallel(...)`` returns: its iterations as parallel blocks (see `parallel`)."""

    def __init__(self, values: list, name: str, chunk: int | None):
        self.values, self.name, self.chunk = values, name, chunk

    def __iter__(self) -> Iterator[int]:
        if self.chunk is None:
            for i in _parallel_blocks(len(self.values), self.name):
                yield self.values[i]
            return
        c = self.chunk
        for k in _parallel_blocks((len(self.values) + c - 1) // c, self.name):
            yield from self.values[k * c:(k + 1) * c]

    def batch_stage(self) -> Any:
        """The stage of a batched run (`equiv.tile.batch.stages.Stage`), or None where there is
        nothing to batch (one block; chunks run their iterations in order)."""
        if self.chunk is not None or len(self.values) <= 1:
            return None
        ctx = current()
        stage = ctx.new_stage()
        return Stage(stage, ctx.block_order(len(self.values)), self.name, self.values.__getitem__)


def parallel(start: int, stop: int | None = None, step: int = 1, name_hint: str = "parallel",
             chunk: int | None = None, **_hints) -> _ParallelLoop:
    """Independent iterations (``pl.parallel``); run shuffled like ``spmd`` blocks.

    ``chunk=c`` groups `c` consecutive iterations into one task: the chunks are the
    parallel blocks (shuffled, race domains) and the iterations of a chunk run in order."""
    values = list(_range(start) if stop is None else _range(start, stop, step))
    if chunk is not None and int(chunk) <= 0:
        raise KernelError(f"pl.parallel: chunk={chunk}")
    return _ParallelLoop(values, name_hint, None if chunk is None else int(chunk))


class _Carried:
    """Loop-carried values of a ``range``/``pipeline`` with ``init_values``: each iteration
    sees what the previous one passed to ``pl.yield_``."""

    __slots__ = ("values",)

    def __init__(self, values: tuple):
        self.values = values


def _carried_stack() -> list:
    ctx = current()
    stack = getattr(ctx, "_equiv_carried", None)
    if stack is None:
        stack = []
        ctx._equiv_carried = stack
    return stack


def _with_carried(indices: Iterator[int], init_values: Sequence[Any]) -> Iterator[tuple[int, tuple]]:
    carried = _Carried(tuple(init_values))
    stack = _carried_stack()
    stack.append(carried)
    try:
        for i in indices:
            yield i, carried.values
    finally:
        if stack and stack[-1] is carried:
            stack.pop()


def _lane_range(start: Any, stop: Any, step: Any) -> Iterator[Any]:
    """A loop whose bounds differ per block of a batched stage (`equiv.tile.lanes.Lanes`):
    iteration `i` is every block's `i`-th value, when every block makes the same number of
    iterations (else the stage runs one block at a time)."""
    from equiv.tile.errors import fallback

    n = next(len(v.values) for v in (start, stop, step) if isinstance(v, Lanes))
    lane = [(v.values if isinstance(v, Lanes) else [v] * n) for v in (start, stop, step)]
    ranges = [_range(int(a), int(b), int(s)) for a, b, s in zip(*lane)]
    if any(len(r) != len(ranges[0]) for r in ranges):
        fallback("a loop whose trip count differs per block")
    for i in _range(len(ranges[0])):
        values = [r[i] for r in ranges]
        yield values[0] if all(v == values[0] for v in values) else Lanes(values)


def range(start: int, stop: int | None = None, step: int = 1, *,  # noqa: A001
          init_values: Sequence[Any] | None = None, **_hints) -> Iterator[Any]:
    """Sequential ascending loop. With ``init_values=(a, b)`` it yields ``(i, (a_i, b_i))``
    where ``(a_0, b_0)`` are the initial values and each later pair is what the previous
    iteration returned through ``pl.yield_``. In a batched stage, bounds may differ per
    block (`_lane_range`)."""
    if stop is None:
        start, stop = 0, start
    if any(isinstance(v, Lanes) for v in (start, stop, step)):
        indices = _lane_range(start, stop, step)
    else:
        indices = iter(_range(int(start), int(stop), int(step)))
    if init_values is None:
        return indices
    return _with_carried(indices, init_values)


def pipeline(start: int, stop: int | None = None, step: int = 1, stage: int = 1, *,
             init_values: Sequence[Any] | None = None, **_hints) -> Iterator[Any]:
    """``pl.pipeline`` has exactly the iterations of ``range``; ``stage`` only overlaps loads."""
    return range(start, stop, step, init_values=init_values)


@contextmanager
def at(level: Any = None, name_hint: str = "", *, deps: Sequence[Any] | None = None,
       optimizations: Sequence[Any] | None = None, allow_early_resolve: bool = False,
       no_dep_args: Sequence[Any] | None = None, optimization: Any = None, split: Any = None,
       **_hints) -> Iterator[Any]:
    """A single-task scope: the body runs once; ``as tid`` gives its task id.

    ``optimizations=`` (``pl.split``, ``pl.auto_chunk``, ``pl.cross_core_slot``) and
    ``deps=`` are scheduling and placement hints: they do not change what the body computes.
    ``optimization=pl.chunked_loop_optimizer`` and ``split=`` are the same hints in the form
    pypto accepted until 2026-06-20 (see `equiv.tile.legacy`).
    """
    from equiv.tile.blocks import TaskId

    with _in_kernel():
        yield TaskId(name_hint or "at", deps)


@contextmanager
def _in_kernel() -> Iterator[None]:
    """Code that runs as one kernel task (a ``pl.at`` body, an incore function)."""
    token = context.KERNEL_TASK_DEPTH.set(context.KERNEL_TASK_DEPTH.get() + 1)
    try:
        yield
    finally:
        context.KERNEL_TASK_DEPTH.reset(token)


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
    """``pl.yield_(a, b)``: the values carried out of a loop or branch (one value or a
    tuple); inside a loop with ``init_values`` they are also the next iteration's values."""
    stack = getattr(current(), "_equiv_carried", None)
    if stack:
        if len(values) != len(stack[-1].values):
            raise KernelError(f"pl.yield_ of {len(values)} values in a loop carrying {len(stack[-1].values)}")
        stack[-1].values = tuple(values)
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


def split(mode: Any, *, slot_num: int | None = None) -> Optimization:
    """``pl.split(mode, slot_num=)``: split a core-group scope's vector work across lanes."""
    return Optimization("split", mode, slot_num=slot_num)


def cross_core_slot(*, slot_num: int = 1) -> Optimization:
    """``pl.cross_core_slot(slot_num=)``: buffering depth of cube<->vector crossings."""
    return Optimization("cross_core_slot", slot_num=slot_num)


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


def function(fn: Any = None, *, type: str = FunctionType.Opaque, level: Any = None,  # noqa: A002
             role: Any = None, **_kw) -> Any:
    """``@pl.function`` / ``@pl.function(type=...)``: the function itself. ``level=`` and
    ``role=`` (``pl.Level.HOST``, ``pl.Role.Orchestrator``) place a host-level function;
    they change nothing it computes."""
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


