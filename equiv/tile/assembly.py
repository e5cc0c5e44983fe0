"""Writes into global tensors: ``pl.store`` (with its atomic-add form), ``pl.assemble``, and
the valid shapes and padding they honour (``pl.set_validshape``, ``pl.fillpad``, tile slices)."""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from equiv.dtypes import DType
from equiv.tile.errors import KernelError
from equiv.tile.memory import Tensor
from equiv.tile.context import current
from equiv.tile.batch import deferred as _deferred
from equiv.tile.values import Tile, _result, _slice_type, read_whole
from equiv.tile.access import _drop_leading_units, _tensor_setitem, slice


def _store_region(tile: Tile, offsets: list[int], shapes: Sequence[int] | None) -> tuple[torch.Tensor, list[int]]:
    """The tile values a store writes (its valid region, indexed from the last dims) and
    their extent, in the rank of `offsets`."""
    if shapes is None:
        tile = _drop_leading_units(tile, len(offsets))
    data, valid = tile.data, list(tile.valid)
    if shapes is not None:
        shapes = [int(s) for s in shapes]
        if math.prod(shapes) == math.prod(tile.shape) and len(shapes) != len(tile.shape):
            # ND partition of a 2-D tile: the same elements in the tensor's rank.
            if valid != tile.shape:
                raise KernelError(f"store of a partly valid tile {tile.shape} (valid {valid}) "
                                  f"as an ND partition {shapes}")
            data, valid = data.reshape(shapes), shapes
        elif len(shapes) == len(valid):
            valid = [min(v, s) for v, s in zip(valid, shapes)]
        else:
            raise KernelError(f"store: shapes {shapes} do not fit a {tile.shape} tile")
    if len(offsets) > len(valid):
        extra = len(offsets) - len(valid)
        data, valid = data.reshape([1] * extra + list(data.shape)), [1] * extra + valid
    if len(offsets) != len(valid):
        raise KernelError(f"store: {len(offsets)} offsets for a {len(valid)}-d tile")
    region = data[(Ellipsis,) + tuple(_slice_type(0, v) for v in valid)]
    return region, valid


def store(tile: Tile, offsets: Sequence[int], output_tensor: Tensor, shapes: Sequence[int] | None = None,
          *, atomic: str | None = None) -> Tensor:
    """``pl.store``: write the valid region of `tile` into `output_tensor` at `offsets` and
    return the tensor. Only valid elements are written (and checked for range and races).
    ``atomic=pl.AtomicType.Add`` adds instead (see `assemble`)."""
    if not isinstance(output_tensor, Tensor):
        raise KernelError(f"pl.store into a {type(output_tensor).__name__}, not a global tensor")
    if not isinstance(tile, Tile):
        raise KernelError(f"pl.store of a {type(tile).__name__}, not a tile")
    if tile.dtype != output_tensor.dtype:
        raise KernelError(f"store of a {tile.dtype!r} tile into {output_tensor.name} of "
                          f"{output_tensor.dtype!r}; cast it first")
    offsets = [int(o) for o in offsets]
    region, valid = _store_region(tile, offsets, shapes)
    if any(v == 0 for v in valid):
        return output_tensor
    if atomic not in (None, AtomicType.NONE):
        return assemble(output_tensor, Tile(region, tile.dtype), offsets, atomic)
    output_tensor.store(tuple((o, o + v) for o, v in zip(offsets, valid)), region)
    return output_tensor


def tensor_set_validshape(src: Tensor | Tile, valid_rows: int, valid_cols: int) -> Tile:
    """``pl.tensor.set_validshape(t, rows, cols)``: `t` with a valid region of rows × cols
    (the last two dims). A global tensor is read whole into a tile first."""
    src = read_whole(src)
    if not isinstance(src, Tile):
        raise KernelError(f"set_validshape of a {type(src).__name__}")
    valid = list(src.shape[:-2]) + [int(valid_rows), int(valid_cols)]
    return set_validshape(src, *valid)


def tile_slice(tile: Tile, shape: Sequence[int], offset: Sequence[int], valid_shape: Sequence[int] | None = None,
               drop_dims: Sequence[int] | None = None, pad_value: Any = None) -> Tile:
    """``pl.tile.slice``: a window of an on-chip tile (must lie inside it). ``pad_value``
    fills what lies outside the result's valid region; ``drop_dims`` removes unit axes
    (the result stays at least 2-D, as tiles are)."""
    if not isinstance(tile, Tile):
        raise KernelError(f"pl.tile.slice of a {type(tile).__name__}, not a tile")
    out = slice(tile, shape, offset, valid_shape)
    if pad_value is not None:
        out = Tile(fillpad(out, pad_value).data, out.dtype, out.valid)
    if drop_dims:
        drop = sorted({int(d) % len(out.shape) for d in drop_dims})
        if any(out.shape[d] != 1 for d in drop):
            raise KernelError(f"pl.tile.slice: drop_dims {list(drop_dims)} of a {out.shape} slice are not unit axes")
        keep = [d for d in range(len(out.shape)) if d not in drop]
        while len(keep) < 2 and len(keep) < len(out.shape):
            keep = sorted(set(keep) | {max(set(range(len(out.shape))) - set(keep))})
        out = Tile(out.data.reshape([out.shape[d] for d in keep]), out.dtype, [out.valid[d] for d in keep])
    return out


def tile_assemble(target: Tile | Tensor, source: Tile, offset: Sequence[int], atomic: str | None = None) -> Any:
    """``pl.tile.assemble``: `source`'s valid region written into a copy of tile `target` at
    `offset` (the last dims); the result keeps `target`'s valid shape. A tensor target is
    ``pl.assemble``."""
    if isinstance(target, Tensor):
        return assemble(target, source, offset, atomic)
    if not isinstance(target, Tile) or not isinstance(source, Tile):
        raise KernelError("pl.tile.assemble needs a target tile and a source tile")
    if source.dtype != target.dtype:
        raise KernelError(f"assemble of a {source.dtype!r} tile into a {target.dtype!r} tile")
    off = [int(o) for o in offset]
    k = len(off)
    if k > len(target.shape) or len(source.valid) < k:
        raise KernelError(f"pl.tile.assemble: offset {off} for tiles {target.shape} and {source.shape}")
    valid = list(source.valid[-k:])
    if any(o < 0 or o + v > n for o, v, n in zip(off, valid, target.shape[-k:])):
        raise KernelError(f"pl.tile.assemble: {valid} at {off} outside a target tile {target.shape}")
    data = target.data.clone()
    dst = (Ellipsis,) + tuple(_slice_type(o, o + v) for o, v in zip(off, valid))
    src = (Ellipsis,) + tuple(_slice_type(0, v) for v in valid)
    if atomic in (None, AtomicType.NONE):
        data[dst] = source.data[src]
    elif atomic == AtomicType.Add:
        data[dst] = _result(data[dst] + source.data[src], target.dtype, valid).data
    else:
        raise KernelError(f"pl.tile.assemble: atomic mode {atomic!r}")
    return Tile(data, target.dtype, target.valid)

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


def _pad_scalar(pad_value: Any, dtype: DType) -> float | int:
    # pypto maps the literals 0 / 0.0 / inf / -inf onto the three pad modes; other numbers
    # (and bools) are errors there too.
    if isinstance(pad_value, (int, float)) and not isinstance(pad_value, bool):
        if pad_value == 0:
            pad_value = PadValue.zero
        elif math.isinf(pad_value):
            pad_value = PadValue.max if pad_value > 0 else PadValue.min
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
    if isinstance(tile, Tensor) and atomic in (None, AtomicType.NONE):
        # pypto's tensor form: a tensor-to-tensor copy of the whole source (its values as
        # stored, poison included where it was never written).
        tile = read_whole(tile)
    if not isinstance(tile, Tile):
        raise KernelError("assemble needs a tile to store")
    tile = _drop_leading_units(tile, len(offset))
    if len(offset) != len(tile.shape):
        raise KernelError(f"assemble: offset {list(offset)} for a {len(tile.shape)}-d tile")
    key = tuple(_slice_type(int(o), int(o) + int(n)) for o, n in zip(offset, tile.shape))
    if atomic in (None, AtomicType.NONE):
        _tensor_setitem(target, key, tile)
        return target
    if atomic != AtomicType.Add:
        raise KernelError(f"assemble: atomic mode {atomic!r} is not covered (only pl.AtomicType.Add)")
    _deferred.forbid("an atomic add (its order is the blocks' order)")
    if tile.dtype != target.dtype:
        raise KernelError(f"atomic add of a {tile.dtype!r} tile into {target.name} of {target.dtype!r}")
    win = target.window(key)
    mask = tile.valid_mask()
    inside, clipped = target._clip(win, "oob-write", mask)
    if not all(b > a for a, b in inside):
        return target
    sl = Tensor._slices(inside)
    src = tile.data[Tensor._slices(inside, win)] if clipped else tile.data
    if mask is not None and clipped:
        mask = mask[Tensor._slices(inside, win)]
    target.check_initialised(inside, mask)  # an add reads what it adds to
    summed = _result(target.data[sl] + src, target.dtype, src.shape).data
    current().note_order_dependent("atomic add", target.name, target.dtype, shape=target.shape, sl=sl, mask=mask)
    current().atomic(target, inside, mask)
    token = current().current.token
    current().before_write(target.data)
    if mask is None:
        target.data[sl] = summed
        target.written[sl] = True
        target.writer[sl] = token
    else:
        target.data[sl] = torch.where(mask, summed, target.data[sl])
        target.written[sl] |= mask
        target.writer[sl] = torch.where(mask, torch.full_like(target.writer[sl], token), target.writer[sl])
    return target
