"""Global memory as kernels see it: windows of tensors (``x[a:b]``), loads, moves, views and
reshapes. Bounds, poison, written-masks and races are kept by `equiv.tile.memory.Tensor`;
this file only shapes the accesses; stores are `equiv.tile.assembly`'s."""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from equiv import rounding
from equiv.tile import context, memory
from equiv.dtypes import INT32, DType
from equiv.tile.errors import KernelError
from equiv.tile.memory import Tensor
from equiv.tile.context import current
from equiv.tile.batch import deferred as _deferred, wrapping as _wrapping
from equiv.tile import errors as _errors
from equiv.tile.values import Tile, _scalar_to, _slice_type, read_whole
from equiv.tile.blocks import _stage_kinds
from equiv.tile.scratch import MemorySpace


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
    # The tile's part past its valid shape holds whatever the buffer held: poison a kernel
    # may compute with (counted as a read of uninitialised memory).
    data = ctx.poison(shape, src.dtype, into=f"the unread part of a {shape} tile of {src.name} (valid {valid})")
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
