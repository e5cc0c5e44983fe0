"""Batched blocks: the blocks of a ``pl.spmd`` / ``pl.parallel`` stage run as one computation
along a leading axis, with results bit-for-bit those of running them one after another.

Why: most of an emulated kernel's time is Python and torch dispatch on small tiles, paid once
per block. Run together, a stage of `n` blocks pays it once.

How a stage runs (``Options.batch_blocks``, default on):

1. The loop ``for i in pl.spmd(n): BODY`` is rewritten when the kernel is loaded
   (`equiv.tile.rewrite`) into ``for i in attempts(pl.spmd(n)): with guard(): BODY``.
2. `attempts` first yields one `Lanes` value: the block indices of all `n` blocks, in the
   run's seeded block order. BODY runs once. Tiles computed from lanes carry a leading
   axis of length `n` (lane `k` is the `k`-th block of the order); ops that are not
   written for that axis run once per lane and their results are stacked (`call`).
3. Side effects are deferred: a store records an event (tensor, window, values, kernel
   line, lane) instead of writing. Loads read memory as it was when the stage began.
4. When BODY ends, the events are replayed block by block in the block order, through the
   same `Tensor.store` a one-by-one run calls, inside the same block nodes: written-masks,
   last-writer maps, race findings, writer attribution and observers see exactly the
   sequence of a one-by-one run.
5. Anything that would make the batched run differ raises `BatchFallback` (caught by
   `guard`): control flow on block data (``if``, ``range``, ``int()`` of a lane value), a
   load of a tensor the stage writes, an access outside a tensor, poison drawn from the
   run's generator, a nested parallel stage, block-identity queries, barriers, ranks,
   in-place writes of block data into a tile without the lane axis, atomic adds. Nothing has been written
   by then, so the stage simply runs again one block at a time in the same order: a kernel
   that cannot be batched is slower, never different.

`equiv.tile.rewrite` only rewrites loops whose body cannot leak state between blocks
through Python names (no name bound in the body is used elsewhere in the function, no
``break``/``return``), which is what makes running BODY once equal to running it per block.
"""

from __future__ import annotations

import functools
import operator
import os
import types
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import torch

from equiv import memory
from equiv.memory import Tensor, current


class BatchFallback(Exception):
    """The stage cannot run batched here; it runs again one block at a time."""

    def __init__(self, why: str):
        self.site = memory.kernel_site()  # the kernel line that made the batch give up
        super().__init__(why)


def fallback(why: str) -> None:
    raise BatchFallback(why)


def _kernel_line(exc: BaseException) -> str:
    """The kernel line an exception came from: the innermost traceback frame outside equiv."""
    if isinstance(exc, BatchFallback):
        return exc.site
    site, tb = "<unknown>", exc.__traceback__
    while tb is not None:
        path = os.path.abspath(tb.tb_frame.f_code.co_filename)
        if not path.startswith(memory._EQUIV_DIR + os.sep):
            site = f"{memory.short_path(path)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return site


# ----------------------------------------------------------------------------------------
# Lane values: one Python scalar per block of the stage
# ----------------------------------------------------------------------------------------
def _lane_binary(op: Callable[[Any, Any], Any], reflected: bool = False):
    def method(self: "Lanes", other: Any) -> "Lanes":
        if isinstance(other, Lanes):
            pairs = zip(self.values, other.values)
        elif isinstance(other, (int, float)) and not isinstance(other, bool):
            pairs = ((v, other) for v in self.values)
        else:
            return NotImplemented
        if reflected:
            return Lanes([op(b, a) for a, b in pairs])
        return Lanes([op(a, b) for a, b in pairs])
    return method


class LaneSplit(BatchFallback):
    """The blocks of a batched attempt take different paths at a kernel line (a comparison,
    ``if``, a loop bound): the attempt is abandoned and each group of blocks that agree
    (`keys`, one per lane) runs batched on its own."""

    def __init__(self, why: str, keys: list):
        super().__init__(why)
        self.keys = keys


def _traced(values: list) -> bool:
    from equiv.observe.scalars import TracedFloat, TracedInt

    return any(isinstance(v, (TracedFloat, TracedInt)) for v in values)


def _agreed(what: str, keys: list, symbol: str | None = None, values: list | None = None) -> Any:
    """The one answer every lane gives, or a `LaneSplit` by answer. A comparison of scalars
    read from tensors is a decision of the kernel (decision coverage), recorded here once
    with every lane's outcome, as the blocks run one by one would record it."""
    if symbol is not None and values is not None and _traced(values):
        current().decision(f"scalar {symbol}", {"true": any(keys), "false": not all(keys)},
                           site=memory.kernel_site())
    first = keys[0]
    if all(k == first for k in keys):
        return first
    raise LaneSplit(f"{what} of a block-dependent value", keys)


def _compare(op: Callable[[Any, Any], bool], symbol: str):
    def method(self: "Lanes", other: Any) -> Any:
        if isinstance(other, Lanes):
            pairs = list(zip(self.values, other.values))
        elif isinstance(other, (int, float)):
            pairs = [(v, other) for v in self.values]
        else:
            return NotImplemented
        keys = [bool(op(_plain(a), _plain(b))) for a, b in pairs]
        return _agreed("a comparison", keys, symbol, [a for a, _ in pairs] + [b for _, b in pairs])
    return method


def _plain(v: Any) -> Any:
    # a traced scalar's comparisons here are not the kernel's own (recorded by `_agreed`)
    return float(v) if isinstance(v, float) else int(v) if isinstance(v, int) else v


def _single(what: str, convert: Callable[[Any], Any], symbol: str | None = None):
    def method(self: "Lanes") -> Any:
        keys = [convert(v) for v in self.values]
        return _agreed(what, keys, symbol, self.values)
    return method


class Lanes:
    """A Python scalar that differs per block (a block index and what is computed from it).

    Arithmetic stays per lane. Anything that needs one value (a comparison, ``if``,
    ``int()``, a ``range`` bound) gets it when every lane agrees; where lanes disagree the
    stage splits into groups of blocks that agree (`LaneSplit`), each run batched.
    """

    __slots__ = ("values",)

    def __init__(self, values: list):
        self.values = values

    def __neg__(self) -> "Lanes":
        return Lanes([-v for v in self.values])

    __bool__ = _single("a truth test", lambda v: bool(_plain(v)), "if")
    __index__ = _single("an index", operator.index)
    __int__ = _single("int()", int)
    __float__ = _single("float()", float)
    __lt__ = _compare(operator.lt, "<")
    __le__ = _compare(operator.le, "<=")
    __gt__ = _compare(operator.gt, ">")
    __ge__ = _compare(operator.ge, ">=")
    __eq__ = _compare(operator.eq, "==")  # type: ignore[assignment]
    __ne__ = _compare(operator.ne, "!=")  # type: ignore[assignment]
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Lanes({self.values!r})"


for _name in ("add", "sub", "mul", "floordiv", "truediv", "mod"):  # a + b, b + a, ... per lane
    setattr(Lanes, f"__{_name}__", _lane_binary(getattr(operator, _name)))
    setattr(Lanes, f"__r{_name}__", _lane_binary(getattr(operator, _name), reflected=True))


# ----------------------------------------------------------------------------------------
# The state of one batched stage
# ----------------------------------------------------------------------------------------
class StoreEvent:
    """A deferred store: of one block (`block`), or of every block of `group`."""

    __slots__ = ("tensor", "win", "values", "mask", "site", "scalar", "block", "group")

    def __init__(self, tensor: Tensor, win, values, mask, site: str, scalar: bool, block: int | None,
                 group: frozenset | None = None):
        self.tensor, self.win, self.values, self.mask = tensor, win, values, mask
        self.site, self.scalar, self.block, self.group = site, scalar, block, group


def _storage(tensor: Tensor) -> int:
    if type(tensor) is not Tensor:
        # Tensors with their own access rules (a rank's window: reads and writes order
        # against other ranks) are not deferred.
        fallback(f"an access to {tensor.name}, a {type(tensor).__name__}")
    return tensor.data.untyped_storage().data_ptr()


class Batch:
    """A batched stage: the blocks of the running attempt (`order`, lane `k` is block
    `order[k]`), and the deferred stores of every attempt that completed."""

    def __init__(self, stage: int, order: list[int]):
        self.stage = stage
        self.lane: int | None = None  # set while an op runs once per lane (`call`)
        self.events: list[StoreEvent] = []
        self.loaded: set[int] = set()
        self.stored: set[int] = set()
        self.attempt(order)

    def attempt(self, order: list[int]) -> None:
        """Start running the blocks `order` (a group of the stage's blocks, in stage order)."""
        self.order = order
        self.n = len(order)
        self.group = frozenset(order)
        self._mark = (len(self.events), set(self.loaded), set(self.stored))

    def abandon(self) -> None:
        """Forget what the running attempt deferred (its group splits and runs again)."""
        n_events, loaded, stored = self._mark
        del self.events[n_events:]
        self.loaded, self.stored = loaded, stored

    def stop(self, why: str) -> None:
        fallback(why)

    # -- hooks called by equiv.memory -----------------------------------------------------
    def on_load(self, tensor: Tensor, clipped: bool) -> None:
        if clipped:
            fallback(f"a read outside {tensor.name}")
        key = _storage(tensor)
        if key in self.stored:
            fallback(f"a read of {tensor.name}, which the stage writes")
        self.loaded.add(key)

    def _writes(self, tensor: Tensor) -> None:
        key = _storage(tensor)
        if key in self.loaded:
            fallback(f"a write of {tensor.name}, which the stage reads")
        self.stored.add(key)

    def on_store(self, tensor: Tensor, win, values: torch.Tensor, mask) -> None:
        self._writes(tensor)
        block = None if self.lane is None else self.order[self.lane]
        ctx = current()
        self.events.append(StoreEvent(tensor, win, values, mask, memory.kernel_site(),
                                      bool(getattr(ctx, "_scalar_store", False)), block, self.group))

    def defer(self, tensor: Tensor, wins: list, values: list, mask, site: str) -> None:
        """Stores of one kernel line, one per lane (`wins[k]`, `values[k]` for lane `k`)."""
        self._writes(tensor)
        for k, (win, vals) in enumerate(zip(wins, values)):
            self.events.append(StoreEvent(tensor, win, vals, mask, site, False, self.order[k]))

    def replay(self, block: int) -> None:
        """Apply block `block`'s stores, in program order, as a one-by-one run makes them."""
        ctx = current()
        for ev in self.events:
            if (ev.block != block) if ev.block is not None else (block not in ev.group):
                continue
            ctx._scalar_store = ev.scalar
            try:
                with memory.site_override(ev.site):
                    ev.tensor.store(ev.win, ev.values, ev.mask)
            finally:
                ctx._scalar_store = False


def active() -> Batch | None:
    ctx = memory._CURRENT.get()
    return None if ctx is None else ctx.batch


def forbid(what: str) -> None:
    """Fall back if a batched stage is running (for ops whose effects cannot be deferred)."""
    if active() is not None:
        fallback(what)


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
    for b in order:
        with ctx.block(stage_id, b, name):
            batch.replay(b)


# A stage splits into groups while they average at least this many blocks; beyond that the
# blocks run one by one (cheaper than many small batches).
_MIN_GROUP = 4


class guard:  # noqa: N801 - used as a statement in rewritten kernels
    """Around the body of a rewritten parallel loop: a batched attempt that raises (for any
    reason: the one-by-one run reproduces a genuine error at its block) is abandoned."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        ctx = memory._CURRENT.get()
        if ctx is None or ctx.batch is None:
            return False
        ctx.batch_error = exc  # `attempts` splits the stage or runs it one block at a time
        return True


# ----------------------------------------------------------------------------------------
# Ops on lane values and batched tiles
# ----------------------------------------------------------------------------------------
def _is_batched(x: Any) -> bool:
    from equiv.tile.values import Tile

    if isinstance(x, Lanes):
        return True
    if isinstance(x, Tile):
        return x.data.dim() > len(x.valid)
    if isinstance(x, (list, tuple)):
        return any(_is_batched(v) for v in x)
    if isinstance(x, slice):
        return isinstance(x.start, Lanes) or isinstance(x.stop, Lanes)
    return False


def _lane_of(x: Any, k: int) -> Any:
    from equiv.tile.values import Tile

    if isinstance(x, Lanes):
        return x.values[k]
    if isinstance(x, Tile):
        if x.data.dim() > len(x.valid):
            return Tile(x.data[k], x.dtype, x.valid)
        return x
    if isinstance(x, list):
        return [_lane_of(v, k) for v in x]
    if isinstance(x, tuple):
        return tuple(_lane_of(v, k) for v in x)
    if isinstance(x, slice):
        return slice(_lane_of(x.start, k), _lane_of(x.stop, k), x.step)
    return x


def _stack(results: list) -> Any:
    from equiv.tile.values import Tile

    first = results[0]
    if isinstance(first, Tile):
        if any(not isinstance(r, Tile) or r.dtype != first.dtype or r.valid != first.valid
               or r.data.shape != first.data.shape for r in results):
            fallback("per-block results of different shapes")
        return Tile(torch.stack([r.data for r in results]), first.dtype, first.valid)
    if first is None or isinstance(first, (Tensor, str)) or callable(first):
        if any(r is not first for r in results):
            fallback("per-block results that differ")
        return first
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        if all(r == first for r in results) and all(type(r) is type(first) for r in results):
            return first
        return Lanes(list(results))
    if isinstance(first, tuple) and all(isinstance(r, tuple) and len(r) == len(first) for r in results):
        return tuple(_stack([r[i] for r in results]) for i in range(len(first)))
    fallback(f"per-block results of type {type(first).__name__}")


def per_lane(fn: Callable, args: tuple, kwargs: dict, batch: Batch) -> Any:
    """Run `fn` once per lane on that lane's arguments and stack the results."""
    results = []
    outer = batch.lane
    try:
        for k in range(batch.n):
            batch.lane = k
            results.append(fn(*(_lane_of(a, k) for a in args), **{n: _lane_of(v, k) for n, v in kwargs.items()}))
    finally:
        batch.lane = outer
    return _stack(results)


def _batch_for(args: tuple, kwargs: dict) -> Batch | None:
    """The running batched stage, when this call hands an op lane values (not from inside a
    per-lane call); else None: the op is called as it is."""
    ctx = memory._CURRENT.get()
    batch = None if ctx is None else ctx.batch
    if batch is None or batch.lane is not None:
        return None
    if any(_is_batched(a) for a in args) or any(_is_batched(v) for v in kwargs.values()):
        return batch
    return None


def call(fn: Callable, args: tuple, kwargs: dict) -> Any:
    """Call DSL op `fn`: directly, or per lane when a batched stage hands it lane values."""
    batch = _batch_for(args, kwargs)
    return fn(*args, **kwargs) if batch is None else per_lane(fn, args, kwargs, batch)


def _lane_windows(tensor: Tensor, key: Any, n: int) -> list | None:
    """Per-lane windows of `tensor[key]` when every lane's window has one shape and lies
    inside the tensor; None otherwise (the per-lane path then reports what is wrong)."""
    try:
        bounds = tensor.bounds(key)
    except memory.KernelError:
        return None
    per_dim = []  # per dimension, every lane's (start, stop)
    for a, b in bounds:
        starts = a.values if isinstance(a, Lanes) else [int(a)] * n
        stops = b.values if isinstance(b, Lanes) else [int(b)] * n
        per_dim.append([(int(x), int(y)) for x, y in zip(starts, stops)])
    wins = list(zip(*per_dim))
    extent = [b - a for a, b in wins[0]]
    for win in wins:
        if [b - a for a, b in win] != extent:
            return None
        for (a, b), size in zip(win, tensor.shape):
            if a < 0 or b > size or b < a:
                return None
    return wins


def tensor_getitem(plain: Callable) -> Callable:
    """``tensor[key]`` with block-dependent offsets: one stacked read of every lane's window."""

    @functools.wraps(plain)
    def getitem(tensor: Tensor, key: Any) -> Any:
        ctx = memory._CURRENT.get()
        batch = None if ctx is None else ctx.batch
        if batch is None or batch.lane is not None or not _is_batched(key):
            return plain(tensor, key)
        from equiv.tile.values import Tile

        wins = _lane_windows(tensor, key, batch.n)
        if wins is None:
            return per_lane(plain, (tensor, key), {}, batch)
        batch.on_load(tensor, False)
        data = torch.stack([tensor.data[Tensor._slices(w)] for w in wins]).to(tensor.dtype.container)
        return Tile(data, tensor.dtype, [b - a for a, b in wins[0]])
    return getitem


def tensor_setitem(plain: Callable) -> Callable:
    """``tensor[key] = tile`` in a batched stage: one deferred store per lane, made here."""

    @functools.wraps(plain)
    def setitem(tensor: Tensor, key: Any, value: Any) -> None:
        from equiv.tile.values import Tile

        ctx = memory._CURRENT.get()
        batch = None if ctx is None else ctx.batch
        if batch is None or batch.lane is not None or not (_is_batched(key) or _is_batched(value)):
            return plain(tensor, key, value)
        wins = _lane_windows(tensor, key, batch.n) if isinstance(value, Tile) else None
        if wins is None or value.dtype != tensor.dtype or list(value.shape) != [b - a for a, b in wins[0]]:
            per_lane(plain, (tensor, key, value), {}, batch)
            return None
        lanes = value.data.dim() > len(value.valid)
        batch.defer(tensor, wins, [value.data[k] if lanes else value.data for k in range(batch.n)],
                    value.valid_mask(), memory.kernel_site())
        return None
    return setitem


def lanewise(fn: Callable) -> Callable:
    """`fn` as a DSL op: run per lane on batched arguments (the default for every op)."""

    @functools.wraps(fn)
    def op(*args: Any, **kwargs: Any) -> Any:
        ctx = memory._CURRENT.get()
        if ctx is None or ctx.batch is None:
            return fn(*args, **kwargs)
        return call(fn, args, kwargs)
    op.__equiv_lanewise__ = True  # type: ignore[attr-defined]
    return op


def _has_lanes(x: Any) -> bool:
    if isinstance(x, Lanes):
        return True
    if isinstance(x, (list, tuple)):
        return any(_has_lanes(v) for v in x)
    return False


def _with_lane_axis(x: Any, n: int) -> Any:
    from equiv.tile.values import Tile

    if isinstance(x, Tile) and x.data.dim() == len(x.valid):
        return Tile(x.data.expand(n, *x.data.shape), x.dtype, x.valid)
    return x


def _lane_result(result: Any, n: int) -> Any:
    from equiv.tile.values import Tile

    if isinstance(result, Tile):
        shape, valid = tuple(result.data.shape), result.valid
        if len(shape) == len(valid) + 1 and shape[0] == n:
            return result
        if shape == valid and shape and shape[0] == n:
            # The op took its valid shape from the container (whole tile valid): per block
            # that is the whole tile too.
            return Tile(result.data, result.dtype, valid[1:])
        fallback("a batched op returned a tile without its lane axis")
    if isinstance(result, tuple):
        return tuple(_lane_result(r, n) for r in result)
    return result


def native(fn: Callable, expand: bool = False, lane_scalars: bool = False) -> Callable:
    """`fn` as a DSL op written for batched tiles: called once on the lane-axis tiles.

    Such an op indexes its operands from the last axis and takes tile shapes from
    ``shape``/``valid`` (never the container's leading axes), so lane `k` of its result is
    its result on lane `k`. ``expand``: operands without the lane axis get it first (ops
    that need operands of one rank, e.g. ``gather``'s index). Lane *scalars* (`Lanes`) run
    per lane unless ``lane_scalars`` (the op takes them as operands along the lane axis).
    Every native op is tested against its per-lane run (tests/tile/test_batch.py)."""

    @functools.wraps(fn)
    def op(*args: Any, **kwargs: Any) -> Any:
        batch = _batch_for(args, kwargs)
        if batch is None:
            return fn(*args, **kwargs)
        if not lane_scalars and (any(_has_lanes(a) for a in args) or any(_has_lanes(v) for v in kwargs.values())):
            return per_lane(fn, args, kwargs, batch)
        if expand:
            args = tuple(_with_lane_axis(a, batch.n) for a in args)
            kwargs = {k: _with_lane_axis(v, batch.n) for k, v in kwargs.items()}
        return _lane_result(fn(*args, **kwargs), batch.n)
    op.__equiv_batch_native__ = True  # type: ignore[attr-defined]
    return op


def unbatchable(fn: Callable, why: str) -> Callable:
    """`fn` as a DSL op that a batched stage cannot run (block identity, ranks, barriers)."""

    @functools.wraps(fn)
    def op(*args: Any, **kwargs: Any) -> Any:
        ctx = memory._CURRENT.get()
        if ctx is not None and ctx.batch is not None:
            fallback(f"{fn.__name__}: {why}")
        return fn(*args, **kwargs)
    return op


def wrap_table(names: dict[str, Any], natives: Iterable[str], expanded: Iterable[str],
               unbatchable_modules: dict[str, str], aware: Iterable[str] = (),
               lane_scalars: Iterable[str] = ()) -> dict[str, Any]:
    """The DSL table with each function made batch-aware: `native` for the names in
    `natives` (`expanded`: with ``expand``; `lane_scalars`: taking `Lanes` operands), as they
    are for the names in `aware` (they
    answer for a batched stage themselves), `unbatchable` for functions of the modules in
    `unbatchable_modules`, `lanewise` for every other function."""
    natives, expanded, aware, lane_scalars = set(natives), set(expanded), set(aware), set(lane_scalars)
    unknown = (natives | expanded | aware) - set(names)
    if unknown:
        raise KeyError(f"batch-native names not in the DSL table: {sorted(unknown)}")
    wrapped: dict[int, Any] = {}  # one wrapper per function, whatever names it has
    out: dict[str, Any] = {}
    for key, value in names.items():
        if not isinstance(value, types.FunctionType) or key in aware:
            out[key] = value
            continue
        if key in natives or key in expanded:
            out[key] = native(value, expand=key in expanded, lane_scalars=key in lane_scalars)
            continue
        if id(value) not in wrapped:
            why = unbatchable_modules.get(value.__module__)
            wrapped[id(value)] = unbatchable(value, why) if why else lanewise(value)
        out[key] = wrapped[id(value)]
    return out
