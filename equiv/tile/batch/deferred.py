"""Deferred stores of a batched stage: the events each block's stores make, and how they
are applied when the stage ends: all at once where that provably writes the same
(`_bulk_plan`), else replayed block by block through `Tensor.store`.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import torch

from equiv.tile import context, sites
from equiv.tile.memory import Tensor
from equiv.tile.values import Tile
from equiv.tile.context import current
from equiv.tile.errors import fallback
from equiv.tile.batch.grids import lane_grid, grid_view


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

    # -- hooks called by equiv.tile.memory -----------------------------------------------------
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
        plan = None if ctx.observed else _bulk_plan(self.events, ctx, stage, order, name)
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
        # A store client (the race detector) must see a racing earlier writer block by block.
        if ctx.fan.store and Tensor.writer.made(tensor):  # type: ignore[attr-defined]
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
        return grid_view(x, *self.grid)

    def earlier_writers(self) -> list[int]:
        prev = self.view(self.tensor.writer)
        return _distinct(prev if self.mask is None else prev[self.mask])

    def count_into(self, counts: torch.Tensor, origin: list[int]) -> None:
        """Add 1 at every element of every window (masked ones too) in `counts`, a map whose
        element 0 is the tensor's element `origin`."""
        first, steps, grid, extent = self.grid
        grid_view(counts, [a - o for a, o in zip(first, origin)], steps, grid, extent).add_(1)

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
    found = lane_grid(starts, extent)
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


def _tiles_in(values: Any) -> Iterator[Any]:
    for v in values:
        if isinstance(v, Tile):
            yield v
        elif type(v) is tuple:
            yield from _tiles_in(v)
