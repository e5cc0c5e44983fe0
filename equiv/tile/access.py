"""Global memory as kernels see it: windows of tensors, loads, stores, scratch tensors,
shapes, scalar reads and writes, padding, and atomic assembly. Bounds, poison, written-masks
and races are kept by `equiv.memory.Tensor`; this file only shapes the accesses."""

from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import torch

from equiv import rounding
from equiv.dtypes import BF16, FP16, FP32, INDEX, INT8, INT16, INT32, INT64, UINT8, DType  # noqa: F401
from equiv.memory import KernelError, Tensor, current

from equiv.tile.values import Tile, _result, _scalar_to, _slice_type


def _load(tensor: Tensor, key) -> Tile:
    return Tile(tensor.load(tensor.window(key)), tensor.dtype)


def _tensor_getitem(self: Tensor, key) -> Tile:
    return _load(self, key)


def _tensor_setitem(self: Tensor, key, value) -> None:
    win = self.window(key)
    shape = [b - a for a, b in win]
    if isinstance(value, Tile):
        tile = value
        if tile.dtype != self.dtype:
            raise KernelError(f"store of a {tile.dtype!r} tile into {self.name} of {self.dtype!r}; "
                              f"cast it first")
        if list(tile.shape) == shape:
            self.store(win, tile.data, tile.valid_mask())
            return
        if [int(v) for v in tile.valid] == shape:
            self.store(win, tile[tuple(_slice_type(0, v) for v in tile.valid)].data)
            return
        raise KernelError(f"store of a {tile.shape} tile (valid {list(tile.valid)}) into window "
                          f"{shape} of {self.name}")
    data = torch.full(shape, 0, dtype=self.dtype.container, device=self.data.device)
    data[...] = _scalar_to(value, self.dtype)
    self.store(win, data)


Tensor.__getitem__ = _tensor_getitem  # type: ignore[assignment]
Tensor.__setitem__ = _tensor_setitem  # type: ignore[assignment]

def create_tensor(shape: Sequence[int], dtype: DType, name: str | None = None) -> Tensor:
    """Uninitialised global scratch: poison-filled, nothing marked written."""
    return Tensor(name or f"scratch{list(shape)}", shape, dtype)


def full(shape: Sequence[int], dtype: DType, value: float | int) -> Tile:
    data = torch.zeros([int(s) for s in shape], dtype=dtype.container, device=current().device)
    data[...] = _scalar_to(value, dtype)
    return Tile(data, dtype)


def arange(start: int, shape: Sequence[int], dtype: DType = INT32, step: int = 1) -> Tile:
    """Consecutive values along the last axis, repeated over the leading ones."""
    shape = [int(s) for s in shape]
    ramp = start + step * torch.arange(shape[-1], dtype=torch.int64, device=current().device)
    data = ramp.expand(*shape).clone()
    return Tile(rounding.convert(data, dtype, "rint") if dtype.is_float else data, dtype)


def slice(src: Tensor | Tile, shape: Sequence[int], offset: Sequence[int],  # noqa: A001
          valid_shape: Sequence[int] | None = None) -> Tile:
    """A ``shape`` window at ``offset``; only ``valid_shape`` of it is loaded, the rest is poison."""
    shape = [int(s) for s in shape]
    valid = [int(v) for v in (valid_shape or shape)]
    if len(shape) != len(offset) or len(valid) != len(shape):
        raise KernelError(f"slice: shape {shape}, offset {list(offset)}, valid {valid} differ in rank")
    if isinstance(src, Tile):
        key = tuple(_slice_type(int(o), int(o) + s) for o, s in zip(offset, shape))
        t = src[key]
        return Tile(t.data, t.dtype, [min(v, tv) for v, tv in zip(valid, t.valid)])
    ctx = current()
    data = ctx.poison(shape, src.dtype)
    win = tuple((int(o), int(o) + v) for o, v in zip(offset, valid))
    if all(v > 0 for v in valid):
        data[tuple(_slice_type(0, v) for v in valid)] = src.load(win)
    return Tile(data, src.dtype, valid)


def reshape(tile: Tile | Tensor, shape: Sequence[int]) -> Tile | Tensor:
    shape = [int(s) for s in shape]
    if isinstance(tile, Tensor):
        return _tensor_view(tile, shape)
    if math.prod(shape) != math.prod(tile.shape):
        raise KernelError(f"reshape of a {tile.shape} tile to {shape}")
    valid = shape if tile.valid == tuple(tile.shape) else None
    if valid is None:
        # Valid region survives a reshape only when it is a whole prefix of rows.
        nvalid = math.prod(tile.valid)
        valid = [nvalid // math.prod(shape[1:])] + shape[1:] if len(shape) > 1 else [nvalid]
    return Tile(tile.data.reshape(shape), tile.dtype, valid)


def _tensor_view(src: Tensor, shape: list[int]) -> Tensor:
    """``pl.reshape`` of a global tensor: a view of the same memory under another shape.

    Data, written-mask and last-writer map are shared with `src` (same name in findings),
    so stores through the view count as writes of `src` and bounds are checked against
    the view's shape.
    """
    if math.prod(shape) != math.prod(src.shape):
        raise KernelError(f"reshape of tensor {src.name} {list(src.shape)} to {shape}")
    try:
        data, written, writer = (t.view(shape) for t in (src.data, src.written, src.writer))
    except RuntimeError as exc:
        raise KernelError(f"reshape of tensor {src.name}: its memory is not contiguous ({exc})") from None
    view = Tensor.__new__(Tensor)
    view.__dict__.update(src.__dict__)
    view.shape, view.data, view.written, view.writer = tuple(shape), data, written, writer
    return view


def read(src: Tensor | Tile, indices: Sequence[int]) -> int | float:
    """One element as a Python scalar."""
    idx = [int(i) for i in indices]
    if isinstance(src, Tile):
        value = src.data[tuple(idx)]
    else:
        value = src.load(tuple((i, i + 1) for i in idx)).reshape(())
    return float(value) if src.dtype.is_float else int(value)


def write(dst: Tensor, indices: Sequence[int], value: int | float) -> None:
    """Store one scalar element."""
    idx = [int(i) for i in indices]
    data = torch.zeros([1] * len(idx), dtype=dst.dtype.container, device=dst.data.device)
    data[...] = _scalar_to(value, dst.dtype)
    dst.store(tuple((i, i + 1) for i in idx), data)

# docs/source-mode.md). Kept in one section so the core subset above stays readable.
# ========================================================================================
class DynDim:
    """``pl.dynamic("T_DYN")``: a symbolic dimension of a tensor annotation.

    It has no value of its own: a kernel reads the actual size with ``pl.tensor.dim``.
    equiv.source binds it from the tensors a kernel receives and checks it is consistent.
    """

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = str(name)

    def __repr__(self) -> str:
        return f"pl.dynamic({self.name!r})"


def dynamic(name: str) -> DynDim:
    return DynDim(name)


class _TensorNamespace:
    """``pl.tensor.*``: queries on global tensors."""

    @staticmethod
    def dim(t: Tensor | Tile, axis: int) -> int:
        """Size of axis `axis` (negative counts from the end) as a Python int."""
        shape = list(t.shape)
        if not -len(shape) <= int(axis) < len(shape):
            raise KernelError(f"pl.tensor.dim: axis {axis} of a {len(shape)}-d tensor {shape}")
        return int(shape[int(axis)])


tensor = _TensorNamespace()


def _tensor_bind_dynamic(self: Tensor, axis: int, dim: DynDim | int) -> None:
    """``t.bind_dynamic(axis, T_DYN)``: declares axis `axis` dynamic; nothing to do eagerly."""
    if not -len(self.shape) <= int(axis) < len(self.shape):
        raise KernelError(f"bind_dynamic: axis {axis} of {self.name} with shape {list(self.shape)}")
    if isinstance(dim, int) and dim != self.shape[int(axis)]:
        raise KernelError(f"bind_dynamic: {self.name} axis {axis} has size {self.shape[int(axis)]}, not {dim}")


Tensor.bind_dynamic = _tensor_bind_dynamic  # type: ignore[attr-defined]

class AtomicType:
    """Store modes of ``pl.assemble``."""

    NONE = "none"
    Add = "add"


class PadValue:
    """Fill values of ``pl.fillpad``: ``zero``, ``min`` (-inf / the integer minimum), ``max``."""

    zero = "zero"
    min = "min"
    max = "max"


def set_validshape(tile: Tile, *valid: int) -> Tile:
    """The same tile with valid region `valid` (one size per dimension, each ≤ the tile's)."""
    if not isinstance(tile, Tile):
        raise KernelError("set_validshape needs a tile")
    vals = [int(v) for v in valid]
    if len(vals) != len(tile.shape):
        raise KernelError(f"set_validshape: {len(vals)} sizes for a {len(tile.shape)}-d tile {tile.shape}")
    if any(v < 0 or v > n for v, n in zip(vals, tile.shape)):
        raise KernelError(f"set_validshape: valid shape {vals} outside tile shape {tile.shape}")
    return Tile(tile.data, tile.dtype, vals)


def _pad_scalar(pad_value: str, dtype: DType) -> float | int:
    if pad_value in (PadValue.zero, None):
        return 0.0 if dtype.is_float else 0
    if pad_value not in (PadValue.min, PadValue.max):
        raise KernelError(f"fillpad: unknown pad value {pad_value!r}")
    if dtype.is_float:
        return float("-inf") if pad_value == PadValue.min else float("inf")
    lo, hi = dtype.int_range
    return lo if pad_value == PadValue.min else hi


def fillpad(tile: Tile, pad_value: str = PadValue.zero) -> Tile:
    """Fill the part of `tile` beyond its valid shape with `pad_value`; the result is all valid."""
    if not isinstance(tile, Tile):
        raise KernelError("fillpad needs a tile")
    data = tile.data.clone()
    mask = tile.valid_mask()
    if mask is not None:
        data[~mask] = _pad_scalar(pad_value, tile.dtype)
    return Tile(data, tile.dtype)


def assemble(target: Tensor, tile: Tile, offset: Sequence[int], atomic: str | None = None) -> Tensor:
    """Store `tile` into global tensor `target` at `offset` and return `target`.

    ``atomic=pl.AtomicType.Add`` adds the tile to what `target` holds (one rounding to
    `target`'s type per add). Atomic adds from different blocks are not races; their order
    is the blocks' (shuffled) order, so a sum whose bits depend on it shows up as an
    output that differs between the two runs of a case.
    """
    if not isinstance(target, Tensor):
        raise KernelError("assemble into a tile is not covered; assemble targets a global tensor")
    if not isinstance(tile, Tile):
        raise KernelError("assemble needs a tile to store")
    if len(offset) != len(tile.shape):
        raise KernelError(f"assemble: offset {list(offset)} for a {len(tile.shape)}-d tile")
    key = tuple(_slice_type(int(o), int(o) + int(n)) for o, n in zip(offset, tile.shape))
    if atomic in (None, AtomicType.NONE):
        _tensor_setitem(target, key, tile)
        return target
    if atomic != AtomicType.Add:
        raise KernelError(f"assemble: atomic mode {atomic!r} is not covered (only pl.AtomicType.Add)")
    if tile.dtype != target.dtype:
        raise KernelError(f"atomic add of a {tile.dtype!r} tile into {target.name} of {target.dtype!r}")
    win = target.window(key)
    inside, clipped = target._clip(win, "oob-write")
    if not all(b > a for a, b in inside):
        return target
    sl = Tensor._slices(inside)
    src = tile.data[Tensor._slices(inside, win)] if clipped else tile.data
    mask = tile.valid_mask()
    if mask is not None and clipped:
        mask = mask[Tensor._slices(inside, win)]
    summed = _result(target.data[sl] + src, target.dtype, src.shape).data
    token = current().current.token
    if mask is None:
        target.data[sl] = summed
        target.written[sl] = True
        target.writer[sl] = token
    else:
        target.data[sl] = torch.where(mask, summed, target.data[sl])
        target.written[sl] |= mask
        target.writer[sl] = torch.where(mask, torch.full_like(target.writer[sl], token), target.writer[sl])
    return target

