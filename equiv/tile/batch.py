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
4. When BODY ends, the blocks' nodes are made in the block order and the events applied:
   all at once where that provably writes the same (`_bulk_plan`: no element stored twice,
   nothing out of range, no racing earlier writer, no observer), else replayed block by
   block through the same `Tensor.store` a one-by-one run calls, inside the same block
   nodes. Either way written-masks, last-writer maps, race findings, writer attribution and
   observers see what a one-by-one run makes them see.
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
import itertools
import math
import operator
import os
import types
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import numpy as np
import torch

from equiv.tile import context, errors, sites
from equiv.tile.memory import Tensor
from equiv.tile.context import current


class BatchFallback(Exception):
    """The stage cannot run batched here; it runs again one block at a time."""

    def __init__(self, why: str):
        self.site = sites.kernel_site()  # the kernel line that made the batch give up
        super().__init__(why)


class PerBlockPoison(BatchFallback):
    """An op called once for every block drew patterned poison, which differs per block: the
    op runs again once per lane (`call`); outside an op the stage runs one block at a time."""


def fallback(why: str) -> None:
    raise BatchFallback(why)


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
# Lane values: one Python scalar per block of the stage
# ----------------------------------------------------------------------------------------
def _lane_binary(op: Callable[[Any, Any], Any], reflected: bool = False):
    def method(self: "Lanes", other: Any) -> "Lanes":
        if isinstance(other, Lanes):
            if len(other.values) != len(self.values):
                fallback("lane values of different lengths")
            others: Iterable = other.values
        elif isinstance(other, (int, float)) and not isinstance(other, bool):
            others = itertools.repeat(other)
        else:
            return NotImplemented
        if reflected:
            return Lanes(list(map(op, others, self.values)))
        return Lanes(list(map(op, self.values, others)))
    return method


class LaneSplit(BatchFallback):
    """The blocks of a batched attempt take different paths at a kernel line (a comparison,
    ``if``, a loop bound): the attempt is abandoned and each group of blocks that agree
    (`keys`, one per lane) runs batched on its own."""

    def __init__(self, why: str, keys: list):
        super().__init__(why)
        self.keys = keys


def _traced(values: list) -> bool:
    from equiv.tile.scalars import TracedFloat, TracedInt

    return any(isinstance(v, (TracedFloat, TracedInt)) for v in values)


def _agreed(what: str, keys: list, symbol: str | None = None, values: list | None = None) -> Any:
    """The one answer every lane gives, or a `LaneSplit` by answer. A comparison of scalars
    read from tensors is a decision of the kernel (decision coverage), recorded here once
    with every lane's outcome, as the blocks run one by one would record it."""
    if symbol is not None and values is not None and _traced(values):
        current().decision(f"scalar {symbol}", {"true": any(keys), "false": not all(keys)},
                           site=sites.kernel_site())
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

    __slots__ = ("values", "exact_in")

    def __init__(self, values: list, exact_in: Any = None):
        self.values = values
        # The element type every value is already exact in (read from a tensor of that type):
        # an op of that type takes them without rounding each again.
        self.exact_in = exact_in

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
    """Deferred stores of one kernel line: block ``blocks[k]`` writes ``values`` (row `k` of
    them when `stacked`, else the same values for every block) at the window of `extent`
    starting at ``starts[d][k]`` along each dimension `d`."""

    __slots__ = ("tensor", "starts", "extent", "values", "stacked", "mask", "site", "scalar", "blocks", "lane_of",
                 "lanes")

    def __init__(self, tensor: Tensor, starts: list[list[int]], extent: tuple, values: torch.Tensor, stacked: bool,
                 mask, site: str, scalar: bool, blocks: list[int], lane_of: dict[int, int] | None,
                 lanes: list[int] | None = None):
        self.tensor, self.starts, self.extent, self.values, self.stacked = tensor, starts, extent, values, stacked
        self.mask, self.site, self.scalar, self.blocks, self.lane_of = mask, site, scalar, blocks, lane_of
        # The batch lane of each row (None: row k is lane k), for splitting the rows of
        # loop iterations run as lanes back into their iterations (`iterations`).
        self.lanes = lanes

    def window(self, k: int) -> tuple:
        return tuple((col[k], col[k] + n) for col, n in zip(self.starts, self.extent))

    def values_of(self, k: int) -> torch.Tensor:
        return self.values[k] if self.stacked else self.values


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
        self.poison_counts: dict[tuple, int] = {}  # patterns each block drew (RunContext.poison)
        # Loop iterations run as lanes (`iterations`): how many levels deep, and the tiles
        # the running iterations were handed from outside the loop (never written in place).
        self.depth = 0
        self.frozen: frozenset[int] = frozenset()
        self.attempt(order)

    def attempt(self, order: list[int]) -> None:
        """Start running the blocks `order` (a group of the stage's blocks, in stage order)."""
        self.order = order
        self.n = len(order)
        self.lane_of = {b: k for k, b in enumerate(order)}
        self._mark = (len(self.events), set(self.loaded), set(self.stored))

    def abandon(self) -> None:
        """Forget what the running attempt deferred (its group splits and runs again)."""
        n_events, loaded, stored = self._mark
        del self.events[n_events:]
        self.loaded, self.stored = loaded, stored
        self.poison_counts.clear()  # only this attempt's blocks drew; they draw again

    def stop(self, why: str) -> None:
        fallback(why)

    # -- loop iterations as lanes (`iterations`) -----------------------------------------
    def enter_iterations(self, m: int, inner: tuple) -> tuple:
        """Run `m` iterations of every lane as lanes: lane `k` becomes ``k*m .. k*m + m-1``."""
        saved = (self.order, self.n, self.lane_of, self.frozen, len(self.events), set(self.loaded),
                 set(self.stored))
        self.order = [b for b in self.order for _ in range(m)]
        self.n *= m
        self.lane_of = None  # several lanes per block: rows are told apart by `StoreEvent.lanes`
        self.frozen = self.frozen | {id(t) for t in _tiles_in(inner)}
        self.depth += 1
        return saved

    def leave_iterations(self, saved: tuple) -> None:
        self.order, self.n, self.lane_of, self.frozen = saved[:4]
        self.depth -= 1

    def forget_iterations(self, saved: tuple) -> None:
        """Drop what the iterations deferred (they run again one after another)."""
        del self.events[saved[4]:]
        self.loaded, self.stored = saved[5], saved[6]

    def order_iteration_events(self, saved: tuple, m: int) -> None:
        """The iterations' deferred stores as the lanes of the enclosing level would have
        made them, in program order: iteration 0's stores of every kernel line, then
        iteration 1's, ... (a block replays them in that order)."""
        first = saved[4]
        made, self.events[first:] = self.events[first:], []
        for j in range(m):
            for ev in made:
                piece = self._iteration_rows(ev, j, m)
                if piece is not None:
                    self.events.append(piece)

    def _iteration_rows(self, ev: StoreEvent, j: int, m: int) -> StoreEvent | None:
        if ev.lanes is None:  # a row per lane: iteration j's rows are every m-th, one per outer lane
            values = ev.values.unflatten(0, (-1, m))[:, j] if ev.stacked else ev.values
            return StoreEvent(ev.tensor, [col[j::m] for col in ev.starts], ev.extent, values, ev.stacked, ev.mask,
                              ev.site, ev.scalar, self.order, self.lane_of, None)
        lanes = ev.lanes
        rows = [r for r, lane in enumerate(lanes) if lane % m == j]
        if not rows:
            return None
        outer = [lanes[r] // m for r in rows]
        starts = [[col[r] for r in rows] for col in ev.starts]
        values = ev.values.index_select(0, torch.tensor(rows, device=ev.values.device)) if ev.stacked else ev.values
        if outer == list(range(self.n)):
            blocks, lane_of, rows_lanes = self.order, self.lane_of, None
        else:
            blocks = [self.order[k] for k in outer]
            lane_of, rows_lanes = {b: i for i, b in enumerate(blocks)}, outer
        return StoreEvent(ev.tensor, starts, ev.extent, values, ev.stacked, ev.mask, ev.site, ev.scalar, blocks,
                          lane_of, rows_lanes)

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
        """A store made in the batched body: by lane `self.lane`, or (outside a per-lane
        call) by every block of the attempt alike."""
        self._writes(tensor)
        scalar = bool(getattr(current(), "_scalar_store", False))
        extent = tuple(b - a for a, b in win)
        if self.lane is None:
            blocks, lane_of, lanes = self.order, self.lane_of, None
        else:
            blocks, lanes = [self.order[self.lane]], [self.lane]
            lane_of = {blocks[0]: 0}
        self.events.append(StoreEvent(tensor, [[a] * len(blocks) for a, _ in win], extent, values, False, mask,
                                      sites.kernel_site(), scalar, blocks, lane_of, lanes))

    def defer(self, tensor: Tensor, starts: list[list[int]], extent: tuple, values: torch.Tensor, stacked: bool,
              mask, site: str) -> None:
        """Stores of one kernel line, one per lane: lane `k` writes ``values[k]`` (or `values`
        for every lane when not `stacked`) at the window of `extent` at ``starts[d][k]``."""
        self._writes(tensor)
        self.events.append(StoreEvent(tensor, starts, extent, values, stacked, mask, site, False, self.order,
                                      self.lane_of))

    def finish(self, ctx: context.RunContext, stage: int, order: list[int], name: str) -> None:
        """Apply the stage's deferred stores inside the blocks' nodes, in `order`: all at once
        where that provably writes what block-by-block replay writes, else block by block."""
        plan = None if ctx.observers else _bulk_plan(self.events, ctx, stage, order, name)
        first = None
        for b in order:  # the nodes (and block tokens) a one-by-one run makes
            with ctx.block(stage, b, name):
                first = ctx.current.token if first is None else first
                if plan is None:
                    self.replay(b)
        for write in plan or ():
            write(first)

    def replay(self, block: int) -> None:
        """Apply block `block`'s stores, in program order, as a one-by-one run makes them."""
        ctx = current()
        for ev in self.events:
            k = ev.lane_of.get(block)
            if k is None:
                continue
            ctx._scalar_store = ev.scalar
            try:
                with sites.site_override(ev.site):
                    ev.tensor.store(ev.window(k), ev.values_of(k), ev.mask)
            finally:
                ctx._scalar_store = False


def _bulk_plan(events: list[StoreEvent], ctx: context.RunContext, stage: int, order: list[int],
               name: str) -> list[Callable[[int], None]] | None:
    """Writers that apply every deferred store at once, given the first block token; None
    where replaying block by block could give anything else.

    At once equals block by block when no element is stored twice (then order cannot matter
    and no two blocks of the stage race), every window lies inside its tensor (nothing is
    clipped or reported) and no element's earlier writer races with the stage's blocks."""
    position = {b: i for i, b in enumerate(order)}
    per_tensor: dict[int, tuple[Tensor, dict]] = {}
    for ev in events:
        tensor = ev.tensor
        if type(tensor) is not Tensor or "site_ids" in tensor.__dict__:
            return None
        extent = ev.extent
        if any(n <= 0 for n in extent):
            continue  # an empty window writes nothing
        if not _inside(ev.starts, extent, tensor.shape):
            return None  # clipped: the store reports an access out of range
        key = tensor.data.untyped_storage().data_ptr()
        entry = per_tensor.setdefault(key, (tensor, {}))
        if entry[0] is not tensor:
            return None  # two views of one storage: elements are not comparable by index
        entry[1].setdefault(extent, []).append(ev)
    plan = []
    probe = context.BlockNode(-1, ctx.current, stage, order[0] if order else 0, name)
    for tensor, by_extent in per_tensor.values():
        writes = []
        for extent, stores in by_extent.items():
            starts = [sum((ev.starts[d] for ev in stores), []) for d in range(len(extent))]
            lanes = [position[b] for ev in stores for b in ev.blocks]
            values, mask = _stacked(stores, extent)
            writes.append(_box_write(tensor, extent, starts, lanes, values, mask)
                          or _index_write(tensor, extent, starts, lanes, values, mask))
        if any(w is None for w in writes):
            return None  # an element stored twice within one extent's windows
        if _boxes_overlap([w.box for w in writes]) and _stored_twice_by(writes):
            return None  # an element stored twice: program order or a race decides
        if ctx.options.detect_races and Tensor.writer.made(tensor):  # type: ignore[attr-defined]
            for w in writes:
                if any(ctx.races_with(t, probe) is not None for t in w.earlier_writers()):
                    return None
        plan.extend(w.apply for w in writes)
    return plan


def _boxes_overlap(boxes: list[list[tuple[int, int]]]) -> bool:
    return any(all(a < d and c < b for (a, b), (c, d) in zip(p, q))
               for i, p in enumerate(boxes) for q in boxes[i + 1:])


def _stored_twice_by(writes: list) -> bool:
    """Whether two of `writes` (each free of repeats) store one element: their bounding boxes
    overlap, but interleaved windows (qkv's 448-column and 64-column chunks of every head)
    need not. Each write counts its elements into one map over the boxes' union."""
    lo = [min(w.box[d][0] for w in writes) for d in range(len(writes[0].box))]
    hi = [max(w.box[d][1] for w in writes) for d in range(len(writes[0].box))]
    counts = torch.zeros([b - a for a, b in zip(lo, hi)], dtype=torch.int32,
                         device=writes[0].tensor.data.device)
    for w in writes:
        w.count_into(counts, lo)
    return bool((counts > 1).any())


def _stacked(stores: list[StoreEvent], extent: tuple) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Every lane's values [E, *extent] of `stores`, and their masks (None when none has one)."""
    parts = [ev.values.expand(len(ev.blocks), *extent) if not ev.stacked else ev.values for ev in stores]
    values = parts[0] if len(parts) == 1 else torch.cat(parts)
    if all(ev.mask is None for ev in stores):
        return values, None
    masks = [torch.ones(extent, dtype=torch.bool, device=values.device) if ev.mask is None else ev.mask
             for ev in stores]
    return values, torch.cat([m.expand(len(ev.blocks), *extent) for m, ev in zip(masks, stores)])


def _inside(starts: list[list[int]], extent: tuple, shape: tuple) -> bool:
    return all(min(col) >= 0 and max(col) + n <= size for col, n, size in zip(starts, extent, shape))


def _grid(starts: list[list[int]], extent: tuple, distinct: bool = True) -> tuple[list, list, list, list[int]] | None:
    """When windows of `extent` starting at ``starts[d][k]`` lie on a full, evenly spaced grid
    (every combination of the starts along each dimension is a window): the grid's first
    start, spacing and number of windows per dimension and each window's row-major position
    in it; else None.
    `distinct` (stores): no two windows may share an element.

    Per dimension, `c` distinct starts from `lo` to `hi` that are all ``lo`` modulo
    ``(hi - lo) / (c - 1)`` are exactly that evenly spaced progression (no sort needed)."""
    lanes = len(starts[0]) if starts else 1
    first, steps, counts = [], [], []
    ranks: list[int] | None = None
    for col, n in zip(starts, extent):
        lo, hi = min(col), max(col)
        if lo == hi:  # one start along this dimension: every lane's position is 0
            first.append(lo)
            steps.append(n)
            counts.append(1)
            continue
        axis = set(col)
        c = len(axis)
        step, rest = divmod(hi - lo, c - 1)
        if rest or (distinct and step < n) or any((a - lo) % step for a in axis):
            return None
        first.append(lo)
        steps.append(step)
        counts.append(c)
        ranks = ([(a - lo) // step for a in col] if ranks is None
                 else [r * c + (a - lo) // step for r, a in zip(ranks, col)])
    count = math.prod(counts)
    if ranks is None:
        ranks = [0] * lanes
    if count > lanes or (distinct and count != lanes) or len(set(ranks)) != count:
        return None
    return first, steps, counts, ranks


# From this many lanes on, a read whose windows are not a full grid reads a grid with holes
# that holds them all (`_read_grid`); fewer lanes gather their windows by index.
_READ_GRID_LANES = 64


def _read_grid(starts: list[list[int]], extent: tuple) -> tuple[list, list, list, list[int]] | None:
    """For reads by many lanes: an evenly spaced grid that holds every lane's window, with
    holes (positions no lane reads) allowed up to as many windows again as there are lanes:
    reading the whole grid and picking the lanes' windows is one strided copy and one
    single-index gather (qkv's head chunks skip every eighth)."""
    lanes = len(starts[0]) if starts else 1
    ranks = [0] * lanes
    first, steps, counts = [], [], []
    for col, n in zip(starts, extent):
        lo = min(col)
        step = math.gcd(*(a - lo for a in set(col))) or n
        count = (max(col) - lo) // step + 1
        first.append(lo)
        steps.append(step)
        counts.append(count)
        ranks = [r * count + (a - lo) // step for r, a in zip(ranks, col)]
    if math.prod(counts) > 2 * lanes:
        return None
    return first, steps, counts, ranks


def _grid_view(x: torch.Tensor, first: list, steps: list, counts: list, extent: tuple) -> torch.Tensor:
    """The grid's windows of `x` as one view [*counts, *extent] (writes through it land in `x`)."""
    x = x[tuple(slice(a, a + (g - 1) * s + n) for a, s, g, n in zip(first, steps, counts, extent))]
    for d, (n, s) in enumerate(zip(extent, steps)):
        x = x.unfold(d, n, s)
    return x


class _BoxWrite:
    """Windows of one extent on an evenly spaced grid, none overlapping: written through one
    view of the grid, each element's writer the token of its window's block."""

    def __init__(self, tensor: Tensor, first: list, steps: list, counts: list, extent: tuple,
                 values: torch.Tensor, mask, lanes: list[int]):
        # `values` / `mask`: [*counts, *extent] in grid order; `lanes[r]`: the run position of
        # the block that writes window `r` of the grid (its token less the stage's first).
        self.tensor, self.values, self.mask, self.lanes = tensor, values, mask, lanes
        self.grid = (first, steps, counts, extent)
        self.box = [(a, a + (g - 1) * s + n) for a, s, g, n in zip(first, steps, counts, extent)]

    def view(self, x: torch.Tensor) -> torch.Tensor:
        return _grid_view(x, *self.grid)

    def earlier_writers(self) -> list[int]:
        prev = self.view(self.tensor.writer)
        return _distinct(prev if self.mask is None else prev[self.mask])

    def count_into(self, counts: torch.Tensor, origin: list[int]) -> None:
        """Add 1 at every element of every window (masked ones too) in `counts`, a map whose
        element 0 is the tensor's element `origin`."""
        first, steps, grid, extent = self.grid
        _grid_view(counts, [a - o for a, o in zip(first, origin)], steps, grid, extent).add_(1)

    def apply(self, first_token: int) -> None:
        t, m = self.tensor, self.mask
        _, _, counts, extent = self.grid
        tokens = torch.tensor([first_token + k for k in self.lanes], dtype=torch.int32, device=t.data.device)
        tokens = tokens.reshape(*counts, *([1] * len(extent)))  # broadcast over each window
        current().before_write(t.data)
        data, written, writer = self.view(t.data), self.view(t.written), self.view(t.writer)
        if m is None:
            data.copy_(self.values)  # exact: the values are values of the tensor's type
            written.fill_(True)
            writer.copy_(tokens.expand(writer.shape))
        else:
            data.copy_(torch.where(m, self.values, data))
            written.copy_(written | m)
            writer.copy_(torch.where(m, tokens, writer))


def _box_write(tensor: Tensor, extent: tuple, starts: list, lanes: list, values: torch.Tensor,
               mask: torch.Tensor | None) -> "_BoxWrite | None":
    found = _grid(starts, extent)
    if found is None:
        return None
    first, steps, counts, ranks = found
    shape = [*counts, *extent]
    if ranks == list(range(len(ranks))):  # windows already in grid order: no reordering copy
        return _BoxWrite(tensor, first, steps, counts, extent, values.reshape(shape),
                         None if mask is None else mask.reshape(shape), list(lanes))
    by_rank = [0] * len(ranks)  # grid position -> window
    for window, rank in enumerate(ranks):
        by_rank[rank] = window
    order = torch.tensor(by_rank, device=values.device)
    return _BoxWrite(tensor, first, steps, counts, extent, values.index_select(0, order).reshape(shape),
                     None if mask is None else mask.index_select(0, order).reshape(shape), [lanes[w] for w in by_rank])


class _IndexWrite:
    """Windows of one extent anywhere (no element twice): written element by element."""

    def __init__(self, tensor: Tensor, idx: tuple, values: torch.Tensor, lanes: torch.Tensor, box: list):
        self.tensor, self.idx, self.values, self.lanes, self.box = tensor, idx, values, lanes, box

    def earlier_writers(self) -> list[int]:
        return _distinct(self.tensor.writer[self.idx])

    def count_into(self, counts: torch.Tensor, origin: list[int]) -> None:
        """Add 1 at every element this write stores, in `counts` (element 0: `origin`)."""
        idx = tuple(i - o for i, o in zip(self.idx, origin))
        counts.index_put_(idx, torch.ones((), dtype=counts.dtype, device=counts.device), accumulate=True)

    def apply(self, first_token: int) -> None:
        t, idx = self.tensor, self.idx
        current().before_write(t.data)
        t.data.index_put_(idx, self.values)
        t.written.index_put_(idx, torch.ones((), dtype=torch.bool, device=self.values.device))
        t.writer.index_put_(idx, (self.lanes + first_token).to(torch.int32))


def _index_write(tensor: Tensor, extent: tuple, starts: list, lanes: list, values: torch.Tensor,
                 mask: torch.Tensor | None) -> _IndexWrite | None:
    device = tensor.data.device
    dims, count = len(extent), len(starts[0])
    first = torch.tensor(starts, dtype=torch.int64, device=device).t()
    offsets = torch.stack(torch.meshgrid(*(torch.arange(n, device=device) for n in extent), indexing="ij"),
                          -1).reshape(-1, dims)  # [P, D] inside one window
    index = first[:, None, :] + offsets[None]
    values = values.reshape(count, -1)
    lane = torch.tensor(lanes, device=device)[:, None].expand(values.shape)
    if mask is None:
        index, values, lane = index.reshape(-1, dims), values.reshape(-1), lane.reshape(-1)
    else:
        keep = mask.reshape(count, -1)
        index, values, lane = index[keep], values[keep], lane[keep]
    if _stored_twice(index, tensor.shape):
        return None
    lo, hi = first.min(0).values.tolist(), first.max(0).values.tolist()
    return _IndexWrite(tensor, tuple(index.t()), values.to(tensor.data.dtype), lane,
                       [(a, b + n) for a, b, n in zip(lo, hi, extent)])


def _distinct(tokens: torch.Tensor) -> list[int]:
    if tokens.numel() == 0:
        return []
    lo, hi = (int(v) for v in torch.aminmax(tokens))
    return [lo] if lo == hi else [int(t) for t in torch.unique(tokens).tolist()]


def _stored_twice(index: torch.Tensor, shape: tuple[int, ...]) -> bool:
    """Whether two rows of `index` ([K, D]) name one element of a tensor of `shape`: each
    row writes its number into a scratch map (one survives per element), then reads it back."""
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    flat = index @ torch.tensor(strides[::-1], dtype=torch.int64, device=index.device)
    numbers = torch.arange(flat.numel(), dtype=torch.int64, device=index.device)
    claim = torch.empty(step, dtype=torch.int64, device=index.device)  # only written slots are read
    claim[flat] = numbers
    return not bool((claim[flat] == numbers).all())


def active() -> Batch | None:
    ctx = context._CURRENT.get()
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
    from equiv.tile.values import Tile

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


def _tiles_in(values: Any) -> Iterator[Any]:
    from equiv.tile.values import Tile

    for v in values:
        if isinstance(v, Tile):
            yield v
        elif type(v) is tuple:
            yield from _tiles_in(v)


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
        return batch is not None and batch.lane is None and not ctx.observers

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
    ctx = context._CURRENT.get()
    batch = None if ctx is None else ctx.batch
    if batch is None or batch.lane is not None:
        return None
    if any(_is_batched(a) for a in args) or any(_is_batched(v) for v in kwargs.values()):
        return batch
    return None


def call(fn: Callable, args: tuple, kwargs: dict) -> Any:
    """Call DSL op `fn`: directly, or per lane when a batched stage hands it lane values
    or the op needs each block's own poison pattern."""
    batch = _batch_for(args, kwargs)
    if batch is not None:
        return per_lane(fn, args, kwargs, batch)
    batch = active()
    if batch is None or batch.lane is not None:
        return fn(*args, **kwargs)
    mark = len(batch.events)
    try:
        return fn(*args, **kwargs)
    except PerBlockPoison:
        del batch.events[mark:]
        return per_lane(fn, args, kwargs, batch)


def _lane_windows(tensor: Tensor, key: Any, n: int) -> tuple[list[list[int]], tuple] | None:
    """Per-lane windows of `tensor[key]`, as every lane's start along each dimension and the
    one extent they share, when they share one and lie inside the tensor; None otherwise
    (the per-lane path then reports what is wrong)."""
    try:
        bounds = tensor.bounds(key)
    except errors.KernelError:
        return None
    starts, extent = [], []
    for (a, b), size in zip(bounds, tensor.shape):
        if isinstance(a, Lanes):
            first = list(map(int, a.values))
        else:
            first = [int(a)] * n
        if isinstance(b, Lanes) or isinstance(a, Lanes):
            last = list(map(int, b.values)) if isinstance(b, Lanes) else [int(b)] * n
            if len(first) != n or len(last) != n:
                return None
            widths = set(map(operator.sub, last, first))
            if len(widths) != 1:
                return None
            width = widths.pop()
        else:
            width = int(b) - first[0]
        if width < 0 or min(first) < 0 or max(first) + width > size:
            return None
        starts.append(first)
        extent.append(width)
    return starts, tuple(extent)


def _gather_windows(x: torch.Tensor, starts: list[list[int]], extent: tuple) -> torch.Tensor:
    """Every lane's window of `x` as [lanes, *extent]. Where the windows share their start in
    the last dimension (they differ in rows), one `index_select` of whole rows of a
    contiguous `x` and one narrow (CPU advanced indexing with several index tensors is
    ~15x slower); else one gather by index tensors."""
    last = starts[-1]
    if x.is_contiguous() and len(extent) >= 1 and all(c == last[0] for c in last):
        lead = x.shape[:-1]
        strides = [1] * len(lead)
        for d in range(len(lead) - 2, -1, -1):
            strides[d] = strides[d + 1] * lead[d + 1]
        lead_starts = np.asarray(starts[:-1], dtype=np.int64).reshape(len(lead), len(last))
        base = torch.from_numpy(lead_starts.T @ np.asarray(strides, dtype=np.int64)).to(x.device)
        offsets = torch.zeros(1, dtype=torch.int64, device=x.device)
        for n, st in zip(extent[:-1], strides):
            offsets = (offsets[:, None] + torch.arange(n, device=x.device)[None] * st).reshape(-1)
        rows = x.reshape(-1, x.shape[-1]).index_select(0, (base[:, None] + offsets[None]).reshape(-1))
        return rows[:, last[0] : last[0] + extent[-1]].reshape(len(last), *extent)
    return x[_window_index(starts, extent, x.device)]


def _window_index(starts: list[list[int]], extent: tuple, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Index tensors that read every lane's window at once: ``x[index]`` is [lanes, *extent]
    (one gather, for windows that are not on an evenly spaced grid)."""
    dims = len(extent)
    index = []
    for d, (col, n) in enumerate(zip(starts, extent)):
        shape = [len(col)] + [1] * dims
        shape[1 + d] = n
        first = torch.tensor(col, dtype=torch.int64, device=device)
        index.append((first[:, None] + torch.arange(n, device=device)[None]).reshape(shape))
    return tuple(index)


def tensor_getitem(plain: Callable) -> Callable:
    """``tensor[key]`` with block-dependent offsets: one read of every lane's window (one
    slice where the windows tile a box)."""

    @functools.wraps(plain)
    def getitem(tensor: Tensor, key: Any) -> Any:
        ctx = context._CURRENT.get()
        batch = None if ctx is None else ctx.batch
        if batch is None or batch.lane is not None or not _is_batched(key):
            return plain(tensor, key)
        from equiv.tile.values import Tile

        windows = _lane_windows(tensor, key, batch.n)
        if windows is None:
            return per_lane(plain, (tensor, key), {}, batch)
        batch.on_load(tensor, False)
        starts, extent = windows
        found = _grid(starts, extent, distinct=False) if all(extent) else None
        if found is None and all(extent) and batch.n >= _READ_GRID_LANES:
            found = _read_grid(starts, extent)
        if found is not None:
            first, steps, counts, ranks = found
            view = _grid_view(tensor.data, first, steps, counts, extent)  # [*counts, *extent]
            data = view.reshape(-1, *extent)
            if ranks != list(range(len(ranks))):  # lanes in grid order read the view as it is
                data = data.index_select(0, torch.tensor(ranks, device=data.device))
        else:
            data = _gather_windows(tensor.data, starts, extent)
        return Tile(data.to(tensor.dtype.container), tensor.dtype, list(extent))
    return getitem


def tensor_setitem(plain: Callable) -> Callable:
    """``tensor[key] = tile`` in a batched stage: one deferred store per lane, made here."""

    @functools.wraps(plain)
    def setitem(tensor: Tensor, key: Any, value: Any) -> None:
        from equiv.tile.values import Tile

        ctx = context._CURRENT.get()
        batch = None if ctx is None else ctx.batch
        if batch is None or batch.lane is not None or not (_is_batched(key) or _is_batched(value)):
            return plain(tensor, key, value)
        windows = _lane_windows(tensor, key, batch.n) if isinstance(value, Tile) else None
        if windows is None or value.dtype != tensor.dtype or tuple(value.shape) != windows[1]:
            per_lane(plain, (tensor, key, value), {}, batch)
            return None
        lanes = value.data.dim() > len(value.valid)
        batch.defer(tensor, windows[0], windows[1], value.data, lanes, value.valid_mask(), sites.kernel_site())
        return None
    return setitem


def lanewise(fn: Callable) -> Callable:
    """`fn` as a DSL op: run per lane on batched arguments (the default for every op)."""

    @functools.wraps(fn)
    def op(*args: Any, **kwargs: Any) -> Any:
        ctx = context._CURRENT.get()
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
        data, valid = result.data, result.valid
        if data.dim() == len(valid) + 1 and data.shape[0] == n:
            return result
        shape = tuple(data.shape)
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
        ctx = context._CURRENT.get()
        if ctx is None or ctx.batch is None:  # not in a batched stage: the op as it is
            return fn(*args, **kwargs)
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
        ctx = context._CURRENT.get()
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
