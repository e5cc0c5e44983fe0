"""Global memory as kernels see it: windows of tensors, loads, stores, scratch tensors,
shapes, scalar reads and writes, padding, and atomic assembly. Bounds, poison, written-masks
and races are kept by `equiv.memory.Tensor`; this file only shapes the accesses."""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from equiv import rounding
from equiv.tile import context, memory
from equiv.dtypes import BF16, FP16, INT32, DType
from equiv.tile.errors import KernelError
from equiv.tile.memory import Tensor
from equiv.tile.context import current

from equiv.tile.batch import deferred as _deferred, lanes as _lanes, wrapping as _wrapping
from equiv.tile import errors as _errors
from equiv.tile.values import Tile, _result, _scalar_to, _slice_type, read_whole


def _load(tensor: Tensor, key) -> Tile:
    return Tile(tensor.load(tensor.window(key)), tensor.dtype)


def _tensor_getitem(self: Tensor, key) -> Tile | Tensor:
    """``x[a:b, ...]``: a tile read from `x` in kernel code; in orchestration code a view of
    `x` (`_orchestration`) where the window lies inside it."""
    if type(self) is Tensor and _orchestration():
        win = self.window(key)
        view = _window_view(self, [b - a for a, b in win], [a for a, _ in win])
        if view is not None:
            return view
    return _load(self, key)


def _tensor_setitem(self: Tensor, key, value) -> None:
    # ``dst[a:b, :] = src_tensor``: a tensor-to-tensor copy of the whole source (its values as
    # stored, poison included where it was never written), as assemble's tensor form.
    value = read_whole(value)
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


# Windows at block-dependent offsets (a batched stage's lane values) are taken per block.
Tensor.__getitem__ = _wrapping.tensor_getitem(_tensor_getitem)  # type: ignore[assignment]
Tensor.__setitem__ = _wrapping.tensor_setitem(_tensor_setitem)  # type: ignore[assignment]


def _in_place(tile: Tile) -> None:
    # Writing into a tile without a lane axis inside a batched stage would happen once instead
    # of once per block (the tile may predate the stage): run that stage block by block.
    if len(tile.data.shape) == len(tile.valid):
        _deferred.forbid("an in-place write into a tile shared by the blocks")
    batch = _deferred.active()
    if batch is not None and id(tile) in batch.frozen:
        # A tile from outside a loop whose iterations run as lanes: each has its own copy.
        _errors.fallback("an in-place write into a tile made before the loop")
    if batch is not None and _stage_kind(batch.stage) != "spmd":
        # In a pl.parallel stage (orchestration code) the tile may stand for a window of a
        # tensor, which one block at a time is a view that the write must reach.
        _errors.fallback("an in-place write into a tile in orchestration code")


def _tile_setitem(self: Tile, key, value) -> None:
    """``tile[a:b, c:d] = v``: `v` (a tile: its valid region; or a scalar: the whole window)
    written into that window of the tile. The window must lie inside the tile; the tile's
    valid shape is unchanged. The tile object gets a fresh container (see `tile_write`)."""
    if not isinstance(key, tuple):
        key = (key,)
    # The tile's own axes are the last len(valid) axes of its container (leading batch axes
    # of the container, if any, are all written alike).
    logical = list(self.data.shape[len(self.data.shape) - len(self.valid):])
    if len(key) > len(logical):
        raise KernelError(f"{len(key)} indices for a {len(logical)}-d tile")
    win = []
    for dim, n in enumerate(logical):
        k = key[dim] if dim < len(key) else _slice_type(None)
        if isinstance(k, _slice_type):
            if k.step not in (None, 1):
                raise KernelError("strided tile windows are not supported")
            a = 0 if k.start is None else int(k.start)
            b = n if k.stop is None else int(k.stop)
        else:
            a, b = int(k), int(k) + 1
        if a < 0 or b > n or b < a:
            raise KernelError(f"tile window [{a}:{b}] outside a tile dimension of {n}")
        win.append((a, b))
    _in_place(self)
    data = self.data.clone()
    if isinstance(value, Tile):
        if value.dtype != self.dtype:
            raise KernelError(f"write of a {value.dtype!r} tile into a {self.dtype!r} tile; cast it first")
        extent = [b - a for a, b in win]
        valid = list(value.valid)
        if len(valid) != len(extent) or any(v > e for v, e in zip(valid, extent)):
            raise KernelError(f"a tile of valid shape {valid} does not fit the window {extent}")
        dst = (Ellipsis,) + tuple(_slice_type(a, a + v) for (a, _), v in zip(win, valid))
        data[dst] = value.data[(Ellipsis,) + tuple(_slice_type(0, v) for v in valid)]
    else:
        data[(Ellipsis,) + tuple(_slice_type(a, b) for a, b in win)] = _scalar_to(value, self.dtype)
    self.data = data


Tile.__setitem__ = _tile_setitem  # type: ignore[assignment]

def create_tensor(shape: Sequence[int], dtype: DType, name: str | None = None, *, layout: Any = None,
                  manual_dep: bool = False, init_value: int | float | None = None) -> Tensor:
    """Global scratch. Without `init_value` it is uninitialised: poison-filled, nothing marked
    written. ``init_value=v`` is the runtime's fill before any kernel runs: every element
    holds v (rounded to `dtype`) and counts as written. pypto's codegen rejects non-zero
    fills of FP16/BF16, so they are a kernel error here too. ``manual_dep`` (no automatic
    dependency tracking) and ``layout`` do not change values and are ignored."""
    shape = [int(s) for s in shape]
    label = name or f"scratch{shape}"
    if init_value is None:
        return Tensor(label, shape, dtype)
    if dtype in (FP16, BF16) and float(init_value) != 0.0:
        raise KernelError(f"create_tensor: init_value={init_value} for {dtype!r} (pypto fills "
                          f"16-bit floats with 0 only)")
    data = torch.empty(shape, dtype=dtype.container)
    data[...] = _scalar_to(init_value, dtype)
    return Tensor(label, shape, dtype, data, written=True)


def create_l1(shape: Sequence[int], dtype: DType, transpose: bool = False) -> Tensor:
    """``pl.create_l1``: an on-chip (L1) accumulator with tensor semantics (filled by
    ``pl.gather_row``); uninitialised like ``create_tensor``. `transpose` is its layout."""
    return Tensor(f"l1{[int(s) for s in shape]}", shape, dtype)


class MemorySpace:
    """``pl.MemorySpace``: where a tile lives. Placement changes no value in the emulator."""

    DDR = "DDR"
    Vec = "Vec"
    Mat = "Mat"
    Left = "Left"
    Right = "Right"
    Acc = "Acc"
    Bias = "Bias"
    LeftScale = "LeftScale"
    RightScale = "RightScale"
    ScalarLocal = "ScalarLocal"


def create_tile(shape: Sequence[int], dtype: DType, target_memory: str = MemorySpace.Vec,
                transpose: bool | None = None, *, flat_layout: bool | None = None) -> Tile:
    """``pl.create_tile`` / ``pl.tile.create``: an uninitialised tile (poison), all valid."""
    return Tile(current().poison([int(s) for s in shape], dtype), dtype)


def move(tile: Tile, target_memory: str = MemorySpace.Vec, blayout: Any = None, slayout: Any = None) -> Tile:
    """``pl.move``: the same values in another memory space (layouts are placement only)."""
    if not isinstance(tile, Tile):
        raise KernelError(f"pl.move of a {type(tile).__name__}, not a tile")
    return Tile(tile.data, tile.dtype, tile.valid)


def load(tensor: Tensor, offsets: Sequence[int], shapes: Sequence[int],
         valid_shape: Sequence[int] | None = None, target_memory: str = MemorySpace.Vec,
         clamp: bool = False, valid_shapes: Sequence[int] | None = None, transpose: bool = False) -> Tile:
    """``pl.load``: a ``shapes`` tile of `tensor` at `offsets`; only ``valid_shape`` (default
    all) is read, the rest of the tile is poison. Reads past the tensor are out-of-range
    findings unless ``clamp=True``, which cuts the valid region back to the tensor's edge.
    ``valid_shapes=`` is the keyword's name until pypto #2233 (2026-08-03): the same operand.
    ``transpose=True`` (a load into L1 that pypto accepted in June 2026): `shapes` and the valid
    shape are in the tensor's coordinates and the tile holds the window's transpose."""
    if valid_shapes is not None:
        if valid_shape is not None:
            raise KernelError("pl.load: both valid_shape= and valid_shapes= (the older name of the same "
                              "operand); pass one")
        valid_shape = valid_shapes
        if isinstance(tensor, Tile) and not transpose and not clamp:
            # A call in the form of files before 2026-08-03, when ops on tensors inside ``pl.at``
            # scopes gave tensors and files loaded windows of them (DeepSeek-V4 hc_pre.py): the
            # emulator holds such values as tiles, so the value becomes the global tensor it was
            # and the load reads it as any load does (valid region, bounds). In today's form a
            # load from a tile stays an error.
            if list(tensor.valid) != list(tensor.shape):
                raise KernelError(f"pl.load of a partly valid value {tensor.shape} (valid {tensor.valid})")
            tensor = Tensor("tensor-level value", tensor.shape, tensor.dtype, tensor.data, written=True)
    if not isinstance(tensor, Tensor):
        raise KernelError(f"pl.load from a {type(tensor).__name__}; it loads global tensors "
                          f"(use pl.tile.slice for tiles)")
    shapes = [int(s) for s in shapes]
    offsets = [int(o) for o in offsets]
    valid = [int(v) for v in (valid_shape if valid_shape is not None else shapes)]
    if not (len(offsets) == len(shapes) == len(valid) == len(tensor.shape)):
        raise KernelError(f"pl.load: offsets {offsets}, shapes {shapes}, valid {valid} for a "
                          f"{len(tensor.shape)}-d tensor {tensor.name}")
    valid = [min(v, s) for v, s in zip(valid, shapes)]
    if clamp:
        valid = [max(0, min(v, n - o)) for v, n, o in zip(valid, tensor.shape, offsets)]
    tile = load_window(tensor, shapes, offsets, valid)
    if transpose:
        if len(shapes) < 2:
            raise KernelError(f"pl.load(transpose=True) of a {len(shapes)}-d window of {tensor.name}")
        tile = Tile(tile.data.transpose(-1, -2).contiguous(), tile.dtype,
                    list(tile.valid[:-2]) + [tile.valid[-1], tile.valid[-2]])
    return tile


def _drop_leading_units(tile: Tile, rank: int) -> Tile:
    """`tile` without leading unit axes beyond `rank` (a [1, M, N] matmul of a 3-d weight
    window stored with two offsets); unchanged when those axes are not all 1."""
    extra = len(tile.shape) - rank
    if extra <= 0 or any(n != 1 for n in tile.shape[:extra]):
        return tile
    return Tile(tile.data.reshape(tile.shape[extra:]), tile.dtype, tile.valid[extra:])


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


def full(shape: Sequence[int], dtype: DType, value: float | int) -> Tile:
    data = torch.zeros([int(s) for s in shape], dtype=dtype.container, device=current().device)
    data[...] = _scalar_to(value, dtype)
    return Tile(data, dtype)


def arange(start: int, shape: Sequence[int], dtype: DType = INT32, step: int = 1,
           descending: bool = False) -> Tile:
    """Consecutive values along the last axis, repeated over the leading ones
    (``descending=True``: start, start-1, ...)."""
    shape = [int(s) for s in shape]
    step = -step if descending else step
    ramp = int(start) + step * torch.arange(shape[-1], dtype=torch.int64, device=current().device)
    data = ramp.expand(*shape).clone()
    return Tile(rounding.convert(data, dtype, "rint") if dtype.is_float else data, dtype)


def slice(src: Tensor | Tile, shape: Sequence[int], offset: Sequence[int],  # noqa: A001
          valid_shape: Sequence[int] | None = None) -> Tile | Tensor:
    """A ``shape`` window at ``offset``; only ``valid_shape`` of it is loaded, the rest is poison.
    In orchestration code (`_orchestration`) a whole window of a tensor is a view of it
    instead, as pypto's ``tensor.slice``: kernels called with it read and write that memory."""
    shape = [int(s) for s in shape]
    valid = [int(v) for v in (valid_shape or shape)]
    if len(shape) != len(offset) or len(valid) != len(shape):
        raise KernelError(f"slice: shape {shape}, offset {list(offset)}, valid {valid} differ in rank")
    if isinstance(src, Tile):
        key = tuple(_slice_type(int(o), int(o) + s) for o, s in zip(offset, shape))
        t = src[key]
        return Tile(t.data, t.dtype, [min(v, tv) for v, tv in zip(valid, t.valid)])
    if valid == shape and type(src) is Tensor and _orchestration():
        view = _window_view(src, shape, [int(o) for o in offset])
        if view is not None:
            return view
    return load_window(src, shape, offset, valid)


def load_window(src: Tensor, shape: list[int], offset: Sequence[int], valid: list[int]) -> Tile:
    """The ``shape`` tile at `offset` of `src`: its ``valid`` part read, the rest poison."""
    win = tuple((int(o), int(o) + v) for o, v in zip(offset, valid))
    if valid == shape:
        return Tile(src.load(win), src.dtype)  # nothing of the tile is left uninitialised
    ctx = current()
    data = ctx.poison(shape, src.dtype)
    if all(v > 0 for v in valid):
        data[tuple(_slice_type(0, v) for v in valid)] = src.load(win)
    return Tile(data, src.dtype, valid)


def reshape(tile: Tile | Tensor, shape: Sequence[int]) -> Tile | Tensor:
    shape = [int(s) for s in shape]
    if isinstance(tile, Tensor) and not tile.data.is_contiguous() and math.prod(shape) == math.prod(tile.shape):
        # A window of a tensor (`slice` in orchestration code) across its rows has no flat
        # view: read it whole, as a slice gave before it was a view.
        tile = read_whole(tile)
    if isinstance(tile, Tensor):
        return _tensor_view(tile, shape)
    if math.prod(shape) != math.prod(tile.shape):
        raise KernelError(f"reshape of a {tile.shape} tile to {shape}")
    valid = shape if tile.valid == tuple(tile.shape) else None
    if valid is None:
        # Valid region survives a reshape only when it is a whole prefix of rows.
        nvalid = math.prod(tile.valid)
        valid = [nvalid // math.prod(shape[1:])] + shape[1:] if len(shape) > 1 else [nvalid]
    lead = list(tile.data.shape[:tile.data.dim() - len(tile.valid)])  # a batched stage's lane axis
    return Tile(tile.data.reshape(lead + shape), tile.dtype, valid)


def _orchestration() -> bool:
    """Whether the running code is orchestration code, not kernel code: outside every block
    of a ``pl.spmd`` launch, every ``pl.at`` task and every ``@pl.jit.incore`` kernel
    (``pl.parallel`` loops and the ranks of a multi-rank program are orchestration). There a
    window of a tensor (``x[a:b]``, ``pl.slice``) is a tensor sharing its memory, as pypto's
    ``tensor.slice``: writes through it land in `x`. In kernel code it is a tile."""
    ctx = current()
    if context.KERNEL_TASK_DEPTH.get() or ctx.batch is not None:
        # (A batched pl.parallel stage reads windows as tiles; one that writes into a tile in
        # place runs block by block, with views: `_in_place`.)
        return False
    node = ctx.current
    while node is not None and node.parent is not None:
        if _stage_kind(node.stage) == "spmd":
            return False
        node = node.parent
    return True


def _stage_kind(stage: int) -> str:
    from equiv.tile.blocks import _stage_kinds

    return _stage_kinds(current()).get(stage, ("parallel",))[0]


def _window_view(src: Tensor, shape: list[int], offset: list[int]) -> Tensor | None:
    """The ``shape`` window of `src` at `offset` as a tensor sharing its memory (data,
    written-mask, last writers), or None where the window leaves `src` (the tile path
    reports it)."""
    if len(shape) != len(src.shape) or any(o < 0 or o + n > size for o, n, size in zip(offset, shape, src.shape)):
        return None
    key = tuple(_slice_type(o, o + n) for o, n in zip(offset, shape))
    view = memory.view_tensor(src, src.data[key], lambda m: m[key], cls=Tensor)
    view.shape = tuple(shape)
    return view


def _tensor_view(src: Tensor, shape: list[int]) -> Tensor:
    """``pl.reshape`` of a global tensor: a view of the same memory under another shape.

    Data, written-mask and last-writer map are shared with `src` (same name in findings),
    so stores through the view count as writes of `src` and bounds are checked against
    the view's shape.
    """
    if math.prod(shape) != math.prod(src.shape):
        raise KernelError(f"reshape of tensor {src.name} {list(src.shape)} to {shape}")
    try:
        data = src.data.view(shape)
    except RuntimeError as exc:
        raise KernelError(f"reshape of tensor {src.name}: its memory is not contiguous ({exc})") from None
    view = memory.view_tensor(src, data, lambda m: m.view(shape), cls=Tensor)
    view.shape = tuple(shape)
    return view


def read(src: Tensor | Tile, indices: Sequence[int]) -> Any:
    """One element as a Python scalar (in a batched stage, with per-block indices, every
    block's element: `equiv.tile.batch.Lanes`)."""
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
    data = src.scalar_views()[0]
    if isinstance(data, torch.Tensor):
        index = tuple(torch.tensor([int(v) for v in col], dtype=torch.int64, device=data.device) for col in cols)
        values = data[index].to(src.dtype.container).tolist()
    else:  # NumPy on the CPU: one fancy-indexed read
        values = data[tuple([int(v) for v in col] for col in cols)].tolist()
    convert = float if src.dtype.is_float else int
    if current().observers:
        from equiv.tile.scalars import traced

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
    if current().observers:
        # A value that records the outcome of the kernel's `if` tests on it (decision coverage).
        from equiv.tile.scalars import traced

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
    summed = _result(target.data[sl] + src, target.dtype, src.shape).data
    current().note_order_dependent("atomic add", target.name, target.dtype, shape=target.shape, sl=sl, mask=mask)
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

