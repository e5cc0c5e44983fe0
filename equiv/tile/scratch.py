"""Declarations: scratch tensors and tiles a kernel creates (``pl.create_tensor``,
``pl.create_tile``), memory spaces, and dynamic dimensions of tensor annotations."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from equiv.dtypes import BF16, FP16, DType
from equiv.tile.errors import KernelError
from equiv.tile.memory import Tensor
from equiv.tile.context import current
from equiv.tile.values import Tile, _scalar_to


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
    shape = [int(s) for s in shape]
    return Tile(current().poison(shape, dtype, into=f"an uninitialised {shape} tile (pl.create_tile)"), dtype)

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
