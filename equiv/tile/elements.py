"""One element at a time: ``pl.read`` and ``pl.write`` of tensors and tiles (the scalar
loops' hot path), traced for decision coverage when a run is observed."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from equiv.tile.errors import KernelError
from equiv.tile.memory import Tensor
from equiv.tile.context import current
from equiv.tile import lanes as _lanes
from equiv.tile.batch import deferred as _deferred, wrapping as _wrapping
from equiv.tile.values import Tile, _scalar_to
from equiv.tile.access import _in_place
from equiv.tile.scalars import traced


def read(src: Tensor | Tile, indices: Sequence[int]) -> Any:
    """One element as a Python scalar (in a batched stage, with per-block indices, every
    block's element: `equiv.tile.lanes.Lanes`)."""
    batch = _deferred.active()
    if batch is not None and batch.lane is None and (_wrapping._is_batched(indices) or _wrapping._is_batched(src)):
        return _read_lanes(src, indices, batch)
    return _read(src, indices)


def _read_lanes(src: Tensor | Tile, indices: Any, batch: Any) -> Any:
    """Every lane's element of a global tensor in one indexed read."""
    per_dim = [indices] if not isinstance(indices, (list, tuple)) else list(indices)
    if isinstance(src, Tile) or type(src) is not Tensor or len(per_dim) != len(src.shape):
        return _wrapping.per_lane(_read, (src, indices), {}, batch)
    cols = [list(i.values) if isinstance(i, _lanes.Lanes) else [int(i)] * batch.n for i in per_dim]
    if any(not 0 <= int(v) < n for col, n in zip(cols, src.shape) for v in col):
        return _wrapping.per_lane(_read, (src, indices), {}, batch)  # the per-block reads find it
    batch.on_load(src, False)
    data, written, _ = src.scalar_views()
    if isinstance(data, torch.Tensor):
        index = tuple(torch.tensor([int(v) for v in col], dtype=torch.int64, device=data.device) for col in cols)
        values = data[index].to(src.dtype.container).tolist()
    else:  # NumPy on the CPU: one fancy-indexed read
        index = tuple([int(v) for v in col] for col in cols)
        values = data[index].tolist()
    if src.unset_reads():
        # A lane reading an element never written reads uninitialised memory.
        unset = ~written[index]
        if bool(unset.any()):
            lane = int(unset.nonzero()[0][0])
            src.note_unset([int(col[lane]) for col in cols])
    convert = float if src.dtype.is_float else int
    if current().observed:
        return _lanes.Lanes([traced(convert(v)) for v in values])
    return _lanes.Lanes([convert(v) for v in values], exact_in=src.dtype)


def _read(src: Tensor | Tile, indices: Sequence[int]) -> int | float:
    idx = _indices(indices)
    if isinstance(src, Tile):
        value = src.data[tuple(idx)]
    else:
        value = None if len(idx) != len(src.shape) else src.read_element(tuple(idx))
        if value is None:
            value = src.load(tuple((i, i + 1) for i in idx)).reshape(())
    if current().observed:
        # A value that records the outcome of the kernel's `if` tests on it (decision coverage).
        return traced(float(value) if src.dtype.is_float else int(value))
    return float(value) if src.dtype.is_float else int(value)


def _indices(indices: Any) -> list[int]:
    # A bare index is a flat 1-D index (pypto accepts both).
    if isinstance(indices, (list, tuple)):
        return [int(i) for i in indices]
    return [int(indices)]


def scalar_store(dst: Tensor, indices: Sequence[int], value: int | float) -> None:
    """Every scalar write into a global tensor (``pl.write``, ``pl.tensor.write``,
    ``pl.tile.write`` of a tensor) goes through here: one element, rounded to `dst`'s type,
    with the tensor's bounds, written-mask and race checks."""
    idx = _indices(indices)
    if len(idx) != len(dst.shape):
        raise KernelError(f"write: {len(idx)} indices for a {len(dst.shape)}-d tensor {dst.name}")
    if dst.store_element(tuple(idx), _scalar_to(value, dst.dtype)):
        return
    data = torch.zeros([1] * len(idx), dtype=dst.dtype.container, device=dst.data.device)
    data[...] = _scalar_to(value, dst.dtype)
    ctx = current()
    # Observers see this store as a scalar write (it goes through the core's data cache).
    ctx._scalar_store = True
    try:
        dst.store(tuple((i, i + 1) for i in idx), data)
    finally:
        ctx._scalar_store = False


def tile_write(tile: Tile, indices: Sequence[int], value: int | float) -> Tile:
    """One element of a tile, indexed over its last dims. The tile object gets a fresh
    container (tiles may share one with the tile they were cast or moved from)."""
    idx = _indices(indices)
    shape = tile.shape[len(tile.shape) - len(idx):] if len(idx) <= len(tile.shape) else None
    if shape is None or any(not 0 <= i < n for i, n in zip(idx, shape)):
        raise KernelError(f"tile write at {idx} outside a tile of shape {tile.shape}")
    _in_place(tile)
    data = tile.data.clone()
    data[(Ellipsis,) + tuple(idx)] = _scalar_to(value, tile.dtype)
    tile.data = data
    return tile


def write(dst: Tensor | Tile, indices: Sequence[int], value: int | float) -> Any:
    """Store one scalar element into a tensor (`scalar_store`) or a tile (`tile_write`)."""
    if isinstance(dst, Tile):
        return tile_write(dst, indices, value)
    if not isinstance(dst, Tensor):
        raise KernelError(f"write into a {type(dst).__name__}")
    scalar_store(dst, indices, value)
    return dst
