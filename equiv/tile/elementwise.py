"""Elementwise arithmetic, comparisons and row/column broadcasts: one rounding per op, no
fused multiply-add. Ops index from the end (``[..., r, c]``) so tiles may carry leading
batch dimensions."""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import os
import sys

import torch

from equiv.dtypes import DType
from equiv.tile.sites import _EQUIV_DIR
from equiv.tile.errors import KernelError
from equiv.tile.memory import Tensor
from equiv.tile.context import current

from equiv.tile.values import Tile, _op_result, _operand, _result, read_whole

F = TypeVar("F", bound=Callable[..., Any])



def tensor_operands(fn: F) -> F:
    """Let a compute op take global tensors as operands: each is loaded whole first."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not kwargs:
            for a in args:
                if isinstance(a, Tensor):
                    break
            else:  # the common case: tiles and scalars only
                return fn(*args)
        return fn(*[read_whole(a) for a in args], **{k: read_whole(v) for k, v in kwargs.items()})
    return wrapper  # type: ignore[return-value]


def _lower(p: int, q: int) -> int:
    return p if p <= q else q  # (this module's `min` is the DSL's pl.min)


def _binary(a: Tile | int | float, b: Tile | int | float, fn) -> Tile:
    like = a if isinstance(a, Tile) else b
    if not isinstance(like, Tile):
        raise KernelError("elementwise op on two scalars; use Python arithmetic")
    x, y = _operand(a, like), _operand(b, like)
    valid = like.valid
    if isinstance(a, Tile) and isinstance(b, Tile):
        valid = a.valid if a.valid == b.valid else tuple(_lower(p, q) for p, q in zip(a.valid, b.valid))
    return _op_result(fn(x, y), like.dtype, valid)


@tensor_operands
def add(a, b) -> Tile:
    return _binary(a, b, torch.add)


@tensor_operands
def sub(a, b) -> Tile:
    return _binary(a, b, torch.sub)


@tensor_operands
def mul(a, b) -> Tile:
    return _binary(a, b, torch.mul)


@tensor_operands
def div(a, b, **_hints: Any) -> Tile:
    like = a if isinstance(a, Tile) else b
    if not like.dtype.is_float:
        return _binary(a, b, lambda x, y: torch.div(x, y, rounding_mode="trunc"))
    return _binary(a, b, torch.div)


def _decided_max(op: str, pick):
    # The vector unit's max/min propagate NaN, like torch.maximum/minimum. Which operand won
    # is a value decision: reported for decision coverage (ties are neither).
    def fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        current().decision(op, {"first won": x > y, "second won": y > x})
        return pick(x, y)
    return fn


@tensor_operands
def maximum(a, b) -> Tile:
    return _binary(a, b, _decided_max("maximum", torch.maximum))


@tensor_operands
def minimum(a, b) -> Tile:
    return _binary(a, b, _decided_max("minimum", torch.minimum))


# cmp_type codes of pypto (0=eq, 1=ne, 2=lt, 3=le, 4=gt, 5=ge) and their names.
_CMP = {0: torch.eq, 1: torch.ne, 2: torch.lt, 3: torch.le, 4: torch.gt, 5: torch.ge}
_CMP_NAMES = {"eq": 0, "ne": 1, "lt": 2, "le": 3, "gt": 4, "ge": 5}


@tensor_operands
def cmp(lhs: Tile, rhs: Tile | int | float, cmp_type: int | str = 0) -> Tile:
    """Elementwise comparison: 1 where it holds, else 0, in ``lhs``'s type and shape.

    IEEE semantics: any comparison with NaN is false except ``ne``; -0 equals +0. A scalar
    ``rhs`` is first rounded to ``lhs``'s type (the ``cmps`` form)."""
    code = _CMP_NAMES.get(cmp_type, cmp_type) if isinstance(cmp_type, str) else int(cmp_type)
    if code not in _CMP:
        raise KernelError(f"cmp_type {cmp_type!r}; expected 0..5 or one of {sorted(_CMP_NAMES)}")
    if not isinstance(lhs, Tile):
        raise KernelError("cmp needs a tile as its first operand")
    x, y = _operand(lhs, lhs), _operand(rhs, lhs)
    holds = _CMP[code](x, y)
    current().decision("cmp", {"true": holds, "false": ~holds})
    valid = lhs.valid if not isinstance(rhs, Tile) else tuple(_lower(p, q) for p, q in zip(lhs.valid, rhs.valid))
    return Tile(holds.to(lhs.dtype.container), lhs.dtype, valid)


def _unary(x: Tile, fn, name: str) -> Tile:
    if not x.dtype.is_float and fn not in (torch.neg, torch.abs):
        raise KernelError(f"{name} of an integer tile")
    # exp, log, sqrt, reciprocals: evaluated in float64 (a native float32 result is not
    # the exact value rounded once), then rounded to the element type.
    return _op_result(fn(x.data if fn in (torch.neg, torch.abs) else _wide(x.data)), x.dtype, x.valid)


def _wide(data: torch.Tensor) -> torch.Tensor:
    return data.to(torch.float64) if data.dtype is torch.float32 else data


@tensor_operands
def neg(x: Tile) -> Tile:
    return _unary(x, torch.neg, "neg")


@tensor_operands
def abs(x: Tile) -> Tile:  # noqa: A001
    return _unary(x, torch.abs, "abs")


@tensor_operands
def exp(x: Tile) -> Tile:
    return _unary(x, torch.exp, "exp")


@tensor_operands
def log(x: Tile, high_precision: bool = False) -> Tile:
    """Natural log: float64 log rounded once (log(±0) = -inf, log(x<0) = NaN). Both
    precision modes are modelled by the same correctly rounded result."""
    return _unary(x, torch.log, "log")


@tensor_operands
def sqrt(x: Tile) -> Tile:
    return _unary(x, torch.sqrt, "sqrt")


@tensor_operands
def recip(x: Tile, *_tmp: Tile, **_hints: Any) -> Tile:
    return _unary(x, torch.reciprocal, "recip")


@tensor_operands
def rsqrt(x: Tile, tmp: Tile | None = None, high_precision: bool = False) -> Tile:
    """1/sqrt(x). Default path: two rounded ops (sqrt, then reciprocal), the vector unit's
    composition. High-precision path (``high_precision=True``, or a scratch ``tmp`` tile at
    tile level): 1/sqrt evaluated in float64 and rounded once to the element type."""
    if high_precision or tmp is not None:
        return _unary(x, torch.rsqrt, "rsqrt")
    return recip(sqrt(x))


@tensor_operands
def fmods(x: Tile, divisor: int | float) -> Tile:
    """Remainder with the sign of the dividend (C fmod), ``divisor`` rounded to ``x``'s type
    first. Exact for floats (fmod of two representable values is representable)."""
    if not isinstance(x, Tile):
        raise KernelError("fmods needs a tile as its first operand")
    d = _operand(divisor, x)
    if not x.dtype.is_float and bool((d == 0).any()):
        raise KernelError("fmods of an integer tile by 0")
    return _result(torch.fmod(x.data, d), x.dtype, x.valid)


def min(a, b):  # noqa: A001
    """Scalar minimum (``pl.min`` on index/scalar values). Which operand won is an index
    guard's decision (decision coverage; equal operands are a tie, neither outcome)."""
    if _kernel_caller():
        current().decision("pl.min", {"first won": a < b, "second won": b < a})
    return a if a <= b else b


def max(a, b):  # noqa: A001
    if _kernel_caller():
        current().decision("pl.max", {"first won": a > b, "second won": b > a})
    return a if a >= b else b


def _kernel_caller() -> bool:
    # pl.min/pl.max are also the emulator's own helpers (the table exports them): only a call
    # from kernel code is an index guard of the kernel.
    if not current().observed:
        return False
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename == _BATCH_FILE:
        frame = frame.f_back  # the table's batch-aware wrapper is not a caller
    return frame is not None and not os.path.abspath(frame.f_code.co_filename).startswith(_EQUIV_DIR + os.sep)


_BATCH_FILE = os.path.join(_EQUIV_DIR, "tile", "batch", "wrapping.py")


# ----------------------------------------------------------------------------------------
# Broadcasts: a [.., r, 1] column (row_*) or a [.., 1, c] row (col_*) against a [.., r, c] tile
# ----------------------------------------------------------------------------------------
def _check_expand(tile: Tile, vec: Tile, axis: str, name: str) -> None:
    if not isinstance(tile, Tile) or not isinstance(vec, Tile):
        raise KernelError(f"{name} needs two tiles")
    if len(tile.valid) < 2 or len(vec.valid) != len(tile.valid):
        raise KernelError(f"{name} of a {tile.shape} tile by a {vec.shape} operand")
    rows, cols = tile.data.shape[-2:]
    want = (rows, 1) if axis == "row" else (1, cols)
    if tuple(vec.data.shape[-2:]) != want:
        raise KernelError(f"{name} of a [{rows}, {cols}] tile needs a {list(want)} operand, got {vec.shape}")


def _expand(tile: Tile, vec: Tile, fn, axis: str, name: str) -> Tile:
    _check_expand(tile, vec, axis, name)
    if vec.dtype != tile.dtype:
        raise KernelError(f"{name} operands of types {tile.dtype!r} and {vec.dtype!r}")
    return _op_result(fn(tile.data, vec.data), tile.dtype, tile.valid)


def _broadcast(target: Tile, vec: Tile, axis: str, name: str) -> Tile:
    """``vec`` repeated to ``target``'s shape; floats of two widths give the wider type
    (exact: every value of the narrower type is one of the wider)."""
    _check_expand(target, vec, axis, name)
    dtype = target.dtype
    if vec.dtype != target.dtype:
        if not (vec.dtype.is_float and target.dtype.is_float) or vec.dtype.bits == target.dtype.bits:
            raise KernelError(f"{name} operands of types {target.dtype!r} and {vec.dtype!r}")
        dtype = vec.dtype if vec.dtype.bits > target.dtype.bits else target.dtype
    # (either may carry a batched stage's lane axis)
    shape = torch.broadcast_shapes(vec.data.shape, target.data.shape)
    return Tile(vec.data.expand(shape).clone(), dtype, target.valid)


def _expdif(x: torch.Tensor, v: torch.Tensor, dtype: DType) -> torch.Tensor:
    # exp(x - v): the difference is rounded to the element type, then exp is rounded (two ops).
    return _result(torch.exp(_wide(_result(x - v, dtype, None).data)), dtype, None).data


@tensor_operands
def row_expand(target: Tile, col: Tile) -> Tile:
    """``col[r, 0]`` repeated across row r of ``target``'s shape."""
    return _broadcast(target, col, "row", "row_expand")


@tensor_operands
def col_expand(target: Tile, row: Tile) -> Tile:
    """``row[0, c]`` repeated down column c of ``target``'s shape."""
    return _broadcast(target, row, "col", "col_expand")


@tensor_operands
def row_expand_mul(tile: Tile, col: Tile) -> Tile:
    """Multiply row r by ``col[r, 0]``."""
    return _expand(tile, col, torch.mul, "row", "row_expand_mul")


@tensor_operands
def row_expand_add(tile: Tile, col: Tile, tmp: Tile | None = None) -> Tile:
    return _expand(tile, col, torch.add, "row", "row_expand_add")


@tensor_operands
def row_expand_sub(tile: Tile, col: Tile) -> Tile:
    return _expand(tile, col, torch.sub, "row", "row_expand_sub")


@tensor_operands
def row_expand_div(tile: Tile, col: Tile) -> Tile:
    return _expand(tile, col, torch.div, "row", "row_expand_div")


@tensor_operands
def row_expand_max(tile: Tile, col: Tile) -> Tile:
    return _expand(tile, col, _decided_max("row_expand_max", torch.maximum), "row", "row_expand_max")


@tensor_operands
def row_expand_min(tile: Tile, col: Tile) -> Tile:
    return _expand(tile, col, _decided_max("row_expand_min", torch.minimum), "row", "row_expand_min")


@tensor_operands
def row_expand_expdif(tile: Tile, col: Tile) -> Tile:
    """``exp(tile[r, c] - col[r, 0])``: subtraction and exp each rounded once."""
    return _expand(tile, col, lambda x, v: _expdif(x, v, tile.dtype), "row", "row_expand_expdif")


@tensor_operands
def col_expand_mul(tile: Tile, row: Tile) -> Tile:
    """Multiply column c by ``row[0, c]``."""
    return _expand(tile, row, torch.mul, "col", "col_expand_mul")


@tensor_operands
def col_expand_add(tile: Tile, row: Tile) -> Tile:
    return _expand(tile, row, torch.add, "col", "col_expand_add")


@tensor_operands
def col_expand_sub(tile: Tile, row: Tile) -> Tile:
    return _expand(tile, row, torch.sub, "col", "col_expand_sub")


@tensor_operands
def col_expand_div(tile: Tile, row: Tile) -> Tile:
    return _expand(tile, row, torch.div, "col", "col_expand_div")


@tensor_operands
def col_expand_max(tile: Tile, row: Tile) -> Tile:
    return _expand(tile, row, _decided_max("col_expand_max", torch.maximum), "col", "col_expand_max")


@tensor_operands
def col_expand_min(tile: Tile, row: Tile) -> Tile:
    return _expand(tile, row, _decided_max("col_expand_min", torch.minimum), "col", "col_expand_min")


@tensor_operands
def col_expand_expdif(tile: Tile, row: Tile) -> Tile:
    """``exp(tile[r, c] - row[0, c])``: subtraction and exp each rounded once."""
    return _expand(tile, row, lambda x, v: _expdif(x, v, tile.dtype), "col", "col_expand_expdif")
