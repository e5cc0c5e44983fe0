"""Tiles and element types: the values every DSL op takes and returns, and the one rounding
of a result to its type."""

from __future__ import annotations

import functools
import math
import struct
from typing import Any, Callable, Sequence

import torch

from equiv import rounding
from equiv.dtypes import BF16, FP16, FP32, FP8E4M3FN, INDEX, DType
from equiv.tile.errors import KernelError
from equiv.tile.memory import Tensor
from equiv.tile.context import current
from equiv.tile.lanes import Lanes


# While a cause is traced (`equiv.observe.cause`), every tile an operation makes is shown to it.
on_tile: Callable[["Tile"], None] | None = None


class Tile:
    """An on-chip value: a container tensor, an element type and a valid shape.

    Inside a batched stage (`equiv.tile.batch`) the container may carry one leading lane
    axis more than the tile's rank (``len(valid)``): lane `k` is the tile of the stage's
    `k`-th block. `shape` and indexing are always the tile's own (per block)."""

    __slots__ = ("data", "dtype", "valid")

    def __init__(self, data: torch.Tensor, dtype: DType, valid: Sequence[int] | None = None):
        if dtype.is_float and data.dtype is not dtype.container:
            data = data.to(dtype.container)  # exact: the values are values of `dtype`
        self.data = data
        self.dtype = dtype
        if type(valid) is not tuple or not all(type(v) is int for v in valid):
            valid = tuple(int(v) for v in (valid if valid is not None else data.shape))
        self.valid = valid
        if on_tile is not None:
            on_tile(self)

    @classmethod
    def made(cls, data: torch.Tensor, dtype: DType, valid: tuple[int, ...]) -> "Tile":
        """A tile from parts already in form: `data` in `dtype`'s container, `valid` a tuple
        of ints (an operand's ``valid``). Skips `__init__`'s checks: an op's result is made
        on every emulated op."""
        t = object.__new__(cls)
        t.data, t.dtype, t.valid = data, dtype, valid
        if on_tile is not None:
            on_tile(t)
        return t

    @property
    def shape(self) -> list[int]:
        shape = self.data.shape
        return list(shape[len(shape) - len(self.valid):])

    def valid_mask(self) -> torch.Tensor | None:
        """Where the valid region is, over the tile's own axes (None: all of it)."""
        shape = self.shape
        if self.valid == tuple(shape):
            return None
        mask = torch.zeros(shape, dtype=torch.bool, device=self.data.device)
        mask[tuple(_slice_type(0, v) for v in self.valid)] = True
        return mask

    def __getitem__(self, key) -> "Tile":
        if not isinstance(key, tuple):
            key = (key,)
        sl, valid = [Ellipsis], []
        for dim, n in enumerate(self.shape):
            k = key[dim] if dim < len(key) else slice(None)
            if not isinstance(k, _slice_type):
                k = _slice_type(int(k), int(k) + 1)
            a = 0 if k.start is None else int(k.start)
            b = n if k.stop is None else int(k.stop)
            if a < 0 or b > n or b < a:
                raise KernelError(f"tile slice [{a}:{b}] outside a tile dimension of {n}")
            sl.append(_slice_type(a, b))
            valid.append(max(0, min(b, self.valid[dim]) - a))
        return Tile(self.data[tuple(sl)], self.dtype, valid)

    def __repr__(self) -> str:
        return f"Tile({self.shape}, {self.dtype!r}, valid={list(self.valid)})"


def read_whole(x: Any) -> Any:
    """A global tensor where a tile is expected (tensor-level code computing on a Tensor
    parameter, a window of a tensor in orchestration code) read whole through the memory
    model: its values as stored, poison where never written. Anything else as it is."""
    if isinstance(x, Tensor):
        return Tile(x.load(x.window(())), x.dtype)
    return x


_slice_type = __builtins__["slice"] if isinstance(__builtins__, dict) else __builtins__.slice


def _scalar_to(value: Any, dtype: DType, mode: str = "rint") -> int | float:
    if isinstance(value, Tile):
        raise KernelError("expected a scalar, got a tile")
    if dtype.is_float:
        v = float(value)
        # keyed by the bits: -0.0 and 0.0 compare equal but round to different values
        return _float_scalar(struct.unpack("<q", struct.pack("<d", v))[0], dtype, mode)
    if isinstance(value, float):
        return _int_scalar_from_float(struct.unpack("<q", struct.pack("<d", value))[0], dtype, mode)
    v = int(value)
    lo, hi = dtype.int_range
    if hi - lo + 1 < 2**64 and -(2**63) <= v < 2**63:
        return (v - lo) % (hi - lo + 1) + lo  # two's-complement wrap, as rounding.wrap_int; no torch call
    return int(rounding.wrap_int(torch.tensor(v), dtype))


# Scalar operands repeat (the same constants every loop iteration): each rounding is done once.
@functools.lru_cache(maxsize=4096)
def _float_scalar(bits: int, dtype: DType, mode: str) -> float:
    x = torch.tensor(struct.unpack("<d", struct.pack("<q", bits))[0], dtype=torch.float64)
    return float(rounding.to_float(x, dtype, mode))


@functools.lru_cache(maxsize=4096)
def _int_scalar_from_float(bits: int, dtype: DType, mode: str) -> int:
    x = torch.tensor(struct.unpack("<d", struct.pack("<q", bits))[0], dtype=torch.float64)
    return int(rounding.to_int(x, dtype, mode))


# Float conversions where every value of the source type (±0, ±inf and NaN included) is a
# value of the target type: exact under every cast mode, so the container is reused as is.
_EXACT_FLOAT_CASTS = frozenset({(BF16, FP32), (FP16, FP32), (BF16, BF16), (FP16, FP16), (FP32, FP32),
                                (FP8E4M3FN, FP32), (FP8E4M3FN, BF16), (FP8E4M3FN, FP16),
                                (FP8E4M3FN, FP8E4M3FN)})


def cast(x: Tile | int | float, target_type: DType, mode: str = "round") -> Tile | int | float:
    """Convert to ``target_type`` under cast ``mode`` (default ``round``: ties away from zero)."""
    x = read_whole(x)  # a tensor in orchestration code (a view): its values
    if not isinstance(x, Tile):
        if target_type is INDEX:
            return int(x)
        return _scalar_to(x, target_type, mode)
    if (x.dtype, target_type) in _EXACT_FLOAT_CASTS and mode in rounding.CAST_MODES:
        return Tile(x.data, target_type, x.valid)
    if not x.dtype.is_float and target_type.is_float and (
            _exact_in(x.dtype, target_type) or _values_exact_in(x.data, target_type)):
        # Every value of the integer type (or of this tile) is a value of the float type:
        # exact in every mode.
        return Tile(x.data.to(target_type.container), target_type, x.valid)
    if not target_type.is_float and current().observed:
        _saturation_decision(x.data, target_type, mode)
    return Tile(rounding.convert(x.data, target_type, mode), target_type, x.valid)


def _exact_in(int_type: DType, float_type: DType) -> bool:
    lo, hi = int_type.int_range
    return max(-lo, hi) <= 2 ** float_type.fmt.precision


def _values_exact_in(data: torch.Tensor, float_type: DType) -> bool:
    """Whether every integer in `data` is a value of `float_type` (|v| <= 2^precision). CPU
    only: the answer is read back, which on CUDA would wait for the device."""
    if data.device.type != "cpu" or data.numel() == 0:
        return False
    lo, hi = torch.aminmax(data)
    limit = 2 ** float_type.fmt.precision
    return -limit <= int(lo) and int(hi) <= limit


def _saturation_decision(data: torch.Tensor, target_type: DType, mode: str) -> None:
    """Whether the integer conversion's clamp to the target range was taken, per element."""
    lo, hi = target_type.int_range
    if data.dtype.is_floating_point:
        y = rounding.round_integer(torch.nan_to_num(data.to(torch.float64), nan=0.0), mode)
        outside = (y < lo) | (y > hi)
    else:
        outside = (data < lo) | (data > hi)
    current().decision(f"cast to {target_type.name}", {"saturated": outside, "in range": ~outside})


# ----------------------------------------------------------------------------------------
# Elementwise arithmetic
# ----------------------------------------------------------------------------------------
def _rounded(values: torch.Tensor, dtype: DType) -> torch.Tensor:
    """An op's values rounded (floats) or wrapped (integers) into `dtype`'s container."""
    return rounding.to_float(values, dtype, "rint") if dtype.is_float else rounding.wrap_int(values, dtype)


def _result(values: torch.Tensor, dtype: DType, valid) -> Tile:
    return Tile(_rounded(values, dtype), dtype, valid)


def _op_result(values: torch.Tensor, dtype: DType, valid: tuple[int, ...]) -> Tile:
    """`_result` for an elementwise op whose `valid` is its operands' (a tuple of ints): the
    rounded values are already in the type's container, so the tile is made as it is."""
    return Tile.made(_rounded(values, dtype), dtype, valid)


def _operand(x: Tile | int | float, like: Tile) -> torch.Tensor:
    if isinstance(x, Tile):
        if x.dtype is not like.dtype and x.dtype != like.dtype:
            raise KernelError(f"operands of types {like.dtype!r} and {x.dtype!r}; cast one first")
        if (x.data.shape != like.data.shape or len(x.valid) != len(like.valid)) and x.shape != like.shape:
            raise KernelError(f"operands of shapes {like.shape} and {x.shape}")
        return x.data
    if isinstance(x, Lanes):
        # A scalar per block of a batched stage: each rounded as the scalar itself would be,
        # laid along the lane axis.
        lanes = x.values if x.exact_in is like.dtype else [_scalar_to(v, like.dtype) for v in x.values]
        return torch.tensor(lanes, dtype=like.dtype.container, device=like.data.device).reshape(
            [len(lanes)] + [1] * len(like.valid))
    return _scalar_tensor(x, like.dtype, like.data.device)


_SCALAR_TENSORS: dict[tuple, torch.Tensor] = {}


def _scalar_tensor(value: Any, dtype: DType, device: torch.device) -> torch.Tensor:
    """A 0-d tensor of scalar operand `value` rounded to `dtype`, made once per value (ops
    never write their operands). The key carries the sign, so -0.0 and 0.0 (equal as keys)
    stay apart; equal keys otherwise round alike."""
    key = (value, math.copysign(1.0, value) if isinstance(value, float) else 0.0, dtype, device)
    t = _SCALAR_TENSORS.get(key)
    if t is None:
        if len(_SCALAR_TENSORS) > 4096:
            _SCALAR_TENSORS.clear()
        t = _SCALAR_TENSORS[key] = torch.tensor(_scalar_to(value, dtype), dtype=dtype.container, device=device)
    return t



def const(value: int | float, dtype: DType = INDEX) -> int | float:
    """A scalar constant of `dtype` (a Python number, rounded to the type)."""
    if dtype is INDEX:
        return int(value)
    return _scalar_to(value, dtype)

