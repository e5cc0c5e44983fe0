"""The runtime of rewritten loops: `attempts` and `guard` around a parallel loop's body, and
`iterations` for a sequential loop inside a batched stage (its iterations as lanes).
"""

from __future__ import annotations

import functools
import os
import types
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import torch

from equiv.tile import context, sites
from equiv.tile.memory import Tensor
from equiv.tile.context import current
from equiv.tile.batch.deferred import Batch
from equiv.tile.errors import BatchFallback, LaneSplit, fallback
from equiv.tile.lanes import Lanes
from equiv.tile.values import Tile


def _kernel_line(exc: BaseException) -> str:
    """The kernel line an exception came from: the innermost traceback frame outside equiv."""
    if isinstance(exc, BatchFallback):
        return exc.site
    site, tb = "<unknown>", exc.__traceback__
    while tb is not None:
        path = os.path.abspath(tb.tb_frame.f_code.co_filename)
        if not path.startswith(sites._EQUIV_DIR + os.sep):
            site = f"{sites.short_path(path)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return site


# ----------------------------------------------------------------------------------------
# The rewritten loop: attempts() and guard()
# ----------------------------------------------------------------------------------------
class Stage(NamedTuple):
    """What a parallel loop's ``batch_stage()`` gives a batched run."""

    stage: int  # the stage id (a race domain)
    order: list[int]  # its blocks in the run's seeded order
    name: str
    value_of: Callable[[int], Any]  # block -> the loop variable's value
    shared: Any = None  # one loop value for every block instead (a ``with`` form's task id)


def attempts(loop: Iterable) -> Iterator[Any]:
    """Iterate a parallel loop: batched first where it can be, else one block at a time."""
    stage_of = getattr(loop, "batch_stage", None)
    ctx = current()
    if ctx.batch is not None:
        fallback("a parallel stage nested in a batched one")
    if stage_of is None or not ctx.options.batch_blocks:
        yield from loop
        return
    stage = stage_of()
    if stage is None:  # disabled dispatch, one block, chunked loop: nothing to batch
        yield from loop
        return
    stage_id, order, name, value_of, shared = stage
    batch = Batch(stage_id, order)
    stats = ctx.batch_stats
    position = {b: i for i, b in enumerate(order)}
    pending = [list(order)]
    groups = 0
    why = None
    while pending:
        group = pending.pop(0)
        batch.attempt(group)
        ctx.batch, ctx.batch_error = batch, None
        try:
            yield shared if shared is not None else Lanes([value_of(b) for b in group])
        finally:
            ctx.batch = None
        error = ctx.batch_error
        if error is None:
            groups += 1
            continue
        if isinstance(error, LaneSplit) and groups + len(pending) + 2 <= max(2, len(order) // _MIN_GROUP):
            # Blocks that agree run on together, each group in the stage's block order.
            batch.abandon()
            parts: dict = {}
            for b, key in zip(group, error.keys):
                parts.setdefault(key, []).append(b)
            pending[:0] = sorted(parts.values(), key=lambda g: position[g[0]])
            stats["split"] = stats.get("split", 0) + 1
            continue
        what = str(error) if isinstance(error, BatchFallback) else f"{type(error).__name__}: {error}"
        why = f"{_kernel_line(error)}: {what}"
        break
    if why is not None:
        stats[why] = stats.get(why, 0) + 1
        for b in order:
            with ctx.block(stage_id, b, name):
                yield value_of(b)
        return
    stats["batched"] = stats.get("batched", 0) + 1
    batch.finish(ctx, stage_id, order, name)


# A stage splits into groups while they average at least this many blocks; beyond that the
# blocks run one by one (cheaper than many small batches).
_MIN_GROUP = 4


# ----------------------------------------------------------------------------------------
# Loop iterations as lanes: a sequential loop inside a batched stage
# ----------------------------------------------------------------------------------------
class _Unwidenable(Exception):
    """An outside value the iterations could share state through (a list, an array, ...)."""


_PLAIN_TYPES = (int, float, bool, str, bytes, type(None), range, torch.dtype, torch.device, types.FunctionType,
                types.BuiltinFunctionType, types.ModuleType, type, functools.partial)


def _widen(value: Any, m: int) -> Any:
    """`value` for `m` iterations of every lane: lane `k` of the stage becomes lanes
    ``k*m .. k*m + m-1``. Raises `_Unwidenable` for mutable containers and unknown objects
    (state the iterations could carry from one to the next, which lanes would not see)."""
    if isinstance(value, Lanes):
        return Lanes([v for v in value.values for _ in range(m)], value.exact_in)
    if isinstance(value, Tile):
        if value.data.dim() > len(value.valid):
            return Tile(value.data.repeat_interleave(m, dim=0), value.dtype, value.valid)
        return value
    if isinstance(value, tuple) and type(value) is tuple:
        return tuple(_widen(v, m) for v in value)
    if isinstance(value, (Tensor, *_PLAIN_TYPES)) or value.__class__.__module__ == "equiv.dtypes":
        return value
    raise _Unwidenable(type(value).__name__)


class iterations:  # noqa: N801 - used as a loop iterable in rewritten kernels
    """Iterate a sequential loop (``pl.range`` / ``pl.pipeline`` / ``pl.unroll``) inside a
    batched stage: its `m` iterations first run as lanes of their own, then, where that
    cannot be shown equal, one after another as written.

    The rewrite (`equiv.tile.rewrite`) only uses this for loops whose iterations share no
    Python names (nothing bound in the body is read before it is bound there or after the
    loop). It passes `outer`, a function returning the outside values the body reads. For a
    batched run each is widened (`_widen`: lane `k` of the stage -> lanes ``k*m + j``, one
    per iteration `j`) and the loop yields ``(widened, every iteration's loop value)`` once;
    the kernel binds the widened values, and after the loop binds `outer`'s values back.
    Memory needs no more than the stage already checks: a load of anything the stage stores
    falls back, so no iteration can read another's stores, and the deferred stores are put
    back into program order (iteration by iteration) when the body ends. Poison patterns
    (drawn per block in order), writes into tiles from outside the loop, observers, mutable
    outside objects and any fallback run the iterations one after another instead; nothing
    the batched attempt did is kept then."""

    def __init__(self, loop: Iterable, outer: Callable[[], tuple]):
        self.loop, self.outer_fn = loop, outer
        self.outer: tuple | None = None  # bound back after the loop when not None

    def as_lanes(self) -> bool:
        """Whether to try: inside a batched stage (not in an op's per-lane run), unobserved.
        Else the kernel runs the loop as written over `self.loop`."""
        ctx = context._CURRENT.get()
        batch = None if ctx is None else ctx.batch
        return batch is not None and batch.lane is None and not ctx.observed

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        ctx = context._CURRENT.get()
        batch = ctx.batch
        values = list(self.loop)
        widened = self._widened(ctx, values)
        if widened is None:
            yield from self._one_by_one(ctx, values, None)
            return
        outer, inner, loop_values = widened
        m, saved = len(values), batch.enter_iterations(len(values), inner)
        try:
            yield inner, loop_values
        finally:
            batch.leave_iterations(saved)
        stats, error = ctx.loop_stats, ctx.batch_error
        if error is None:
            batch.order_iteration_events(saved, m)
            self.outer = outer
            stats["as lanes"] = stats.get("as lanes", 0) + 1
            return
        batch.forget_iterations(saved)
        what = str(error) if isinstance(error, BatchFallback) else f"{type(error).__name__}: {error}"
        why = f"{_kernel_line(error)}: {what}"
        stats[why] = stats.get(why, 0) + 1
        ctx.batch_error = None
        yield from self._one_by_one(ctx, values, outer)

    def _widened(self, ctx: context.RunContext, values: list) -> tuple[tuple, tuple, Lanes] | None:
        batch, m = ctx.batch, len(values)
        if m <= 1:
            return None
        try:
            outer = self.outer_fn()
            inner = tuple(_widen(v, m) for v in outer)
        except NameError:  # an unbound name: the loop reports it as written
            return None
        except _Unwidenable as exc:
            why = f"{sites.kernel_site()}: a {exc} from outside the loop"
            ctx.loop_stats[why] = ctx.loop_stats.get(why, 0) + 1
            return None
        lanes = [v.values if isinstance(v, Lanes) else [v] * batch.n for v in values]
        if any(len(col) != batch.n for col in lanes):
            return None
        return outer, inner, Lanes([lanes[j][k] for k in range(batch.n) for j in range(m)])

    @staticmethod
    def _one_by_one(ctx, values: list, outer: tuple | None) -> Iterator[tuple[Any, Any]]:
        for j, v in enumerate(values):
            yield (outer if j == 0 else None), v
            if ctx.batch_error is not None:
                # The body's guard kept an error: the stage's attempt is over; stop here.
                raise BatchFallback(str(ctx.batch_error))


class guard:  # noqa: N801 - used as a statement in rewritten kernels
    """Around the body of a rewritten parallel loop: a batched attempt that raises (for any
    reason: the one-by-one run reproduces a genuine error at its block) is abandoned."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        ctx = context._CURRENT.get()
        if ctx is None or ctx.batch is None:
            return False
        if ctx.batch_error is None:  # the first error decides (a loop's guard may have kept it)
            ctx.batch_error = exc  # `attempts` splits the stage or runs it one block at a time
        return True
