"""Elementwise arithmetic and row/column broadcasts: one rounding per op, no fused multiply-add."""

from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import torch

from equiv import rounding
from equiv.dtypes import BF16, FP16, FP32, INDEX, INT8, INT16, INT32, INT64, UINT8, DType  # noqa: F401
from equiv.memory import KernelError, Tensor, current

from equiv.tile.values import Tile, _operand, _result

def _binary(a: Tile | int | float, b: Tile | int | float, fn) -> Tile:
    like = a if isinstance(a, Tile) else b
    if not isinstance(like, Tile):
        raise KernelError("elementwise op on two scalars; use Python arithmetic")
    x, y = _operand(a, like), _operand(b, like)
    valid = like.valid
    if isinstance(a, Tile) and isinstance(b, Tile):
        valid = tuple(min(p, q) for p, q in zip(a.valid, b.valid))
    return _result(fn(x, y), like.dtype, valid)


def add(a, b) -> Tile:
    return _binary(a, b, torch.add)


def sub(a, b) -> Tile:
    return _binary(a, b, torch.sub)


def mul(a, b) -> Tile:
    return _binary(a, b, torch.mul)


def div(a, b) -> Tile:
    like = a if isinstance(a, Tile) else b
    if not like.dtype.is_float:
        return _binary(a, b, lambda x, y: torch.div(x, y, rounding_mode="trunc"))
    return _binary(a, b, torch.div)


def _nan_max(x, y):
    # The vector unit's max propagates NaN, like torch.maximum.
    return torch.maximum(x, y)


def maximum(a, b) -> Tile:
    return _binary(a, b, _nan_max)


def minimum(a, b) -> Tile:
    return _binary(a, b, torch.minimum)


def _unary(x: Tile, fn) -> Tile:
    if not x.dtype.is_float and fn not in (torch.neg, torch.abs):
        raise KernelError(f"{fn.__name__} of an integer tile")
    return _result(fn(x.data), x.dtype, x.valid)


def neg(x: Tile) -> Tile:
    return _unary(x, torch.neg)


def abs(x: Tile) -> Tile:  # noqa: A001
    return _unary(x, torch.abs)


def exp(x: Tile) -> Tile:
    return _unary(x, torch.exp)


def sqrt(x: Tile) -> Tile:
    return _unary(x, torch.sqrt)


def recip(x: Tile, **_hints) -> Tile:
    return _unary(x, torch.reciprocal)


def rsqrt(x: Tile) -> Tile:
    """1/sqrt as two rounded ops (sqrt, then reciprocal), the vector unit's composition."""
    return recip(sqrt(x))


def min(a, b):  # noqa: A001
    """Scalar minimum (``pl.min`` on index/scalar values)."""
    return a if a <= b else b


def max(a, b):  # noqa: A001
    return a if a >= b else b


# ----------------------------------------------------------------------------------------
# Broadcasts
# ----------------------------------------------------------------------------------------
def _expand(tile: Tile, vec: Tile, fn, axis: str) -> Tile:
    rows, cols = tile.shape
    want = [rows, 1] if axis == "row" else [1, cols]
    if vec.shape != want:
        raise KernelError(f"{axis}_expand of a {tile.shape} tile needs a {want} operand, got {vec.shape}")
    if vec.dtype != tile.dtype:
        raise KernelError(f"{axis}_expand operands of types {tile.dtype!r} and {vec.dtype!r}")
    return _result(fn(tile.data, vec.data), tile.dtype, tile.valid)


def row_expand_mul(tile: Tile, col: Tile) -> Tile:
    """Multiply row r by ``col[r, 0]``."""
    return _expand(tile, col, torch.mul, "row")


def row_expand_add(tile: Tile, col: Tile) -> Tile:
    return _expand(tile, col, torch.add, "row")


def row_expand_sub(tile: Tile, col: Tile) -> Tile:
    return _expand(tile, col, torch.sub, "row")


def row_expand_div(tile: Tile, col: Tile) -> Tile:
    return _expand(tile, col, torch.div, "row")


def col_expand_mul(tile: Tile, row: Tile) -> Tile:
    """Multiply column c by ``row[0, c]``."""
    return _expand(tile, row, torch.mul, "col")


def col_expand_add(tile: Tile, row: Tile) -> Tile:
    return _expand(tile, row, torch.add, "col")


