"""Ops handed lane values: each DSL op runs natively on the lane axis where it is written
for it, else once per lane with the results stacked (`call`); `wrap_table` wraps the DSL
table accordingly.
"""

from __future__ import annotations

import functools
import operator
import types
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
import torch

from equiv.tile import context, errors, sites
from equiv.tile.memory import Tensor
from equiv.tile.batch.deferred import active
from equiv.tile.errors import PerBlockPoison, fallback
from equiv.tile.batch.grids import READ_GRID_LANES, lane_grid, grid_view, read_grid
from equiv.tile.lanes import Lanes
from equiv.tile.values import Tile

if TYPE_CHECKING:
    from equiv.tile.batch.deferred import Batch


# ----------------------------------------------------------------------------------------
# Ops on lane values and batched tiles
# ----------------------------------------------------------------------------------------
def _is_batched(x: Any) -> bool:
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
        windows = _lane_windows(tensor, key, batch.n)
        if windows is None:
            return per_lane(plain, (tensor, key), {}, batch)
        batch.on_load(tensor, False)
        starts, extent = windows
        found = lane_grid(starts, extent, distinct=False) if all(extent) else None
        if found is None and all(extent) and batch.n >= READ_GRID_LANES:
            found = read_grid(starts, extent)

        def windows_of(x: torch.Tensor) -> torch.Tensor:  # every lane's window of x: [lanes, *extent]
            if found is None:
                return _gather_windows(x, starts, extent)
            first, steps, counts, ranks = found
            got = grid_view(x, first, steps, counts, extent).reshape(-1, *extent)  # [*counts, *extent]
            if ranks != list(range(len(ranks))):  # lanes in grid order read the view as it is
                got = got.index_select(0, torch.tensor(ranks, device=got.device))
            return got

        data = windows_of(tensor.data)
        if tensor.unset_reads() and all(extent):
            # The same windows of the written-mask: a lane reading an element never written
            # reads uninitialised memory, as its block would one by one.
            unset = ~windows_of(tensor.written)
            if bool(unset.any()):
                lane, *at = unset.nonzero()[0].tolist()
                tensor.note_unset([starts[d][lane] + i for d, i in enumerate(at)])
        return Tile(data.to(tensor.dtype.container), tensor.dtype, list(extent))
    return getitem


def tensor_setitem(plain: Callable) -> Callable:
    """``tensor[key] = tile`` in a batched stage: one deferred store per lane, made here."""

    @functools.wraps(plain)
    def setitem(tensor: Tensor, key: Any, value: Any) -> None:
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
    if isinstance(x, Tile) and x.data.dim() == len(x.valid):
        return Tile(x.data.expand(n, *x.data.shape), x.dtype, x.valid)
    return x


def _lane_result(result: Any, n: int) -> Any:
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
