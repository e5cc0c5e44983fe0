"""Row reductions. Max/min are exact; sums follow the order model `Options.row_sum_order`."""

from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import torch

from equiv import rounding
from equiv.dtypes import BF16, FP16, FP32, INDEX, INT8, INT16, INT32, INT64, UINT8, DType  # noqa: F401
from equiv.memory import KernelError, Tensor, current

import numpy as np

from equiv.tile.values import Tile

_range = range

# ----------------------------------------------------------------------------------------
# Reductions
# ----------------------------------------------------------------------------------------
def _reduce_input(x: Tile) -> torch.Tensor:
    if len(x.shape) != 2:
        raise KernelError(f"row reduction of a {x.shape} tile; expected 2-d")
    return x.data[:, : x.valid[1]]


def row_max(x: Tile) -> Tile:
    return Tile(torch.amax(_reduce_input(x), dim=1, keepdim=True), x.dtype, [x.valid[0], 1])


def row_min(x: Tile) -> Tile:
    return Tile(torch.amin(_reduce_input(x), dim=1, keepdim=True), x.dtype, [x.valid[0], 1])


def _fadd(dtype: DType):
    return lambda p, q: rounding.to_float(p + q, dtype, "rint")


def _tree(cols: list[torch.Tensor], add) -> torch.Tensor:
    """Adjacent-pair tree: (0,1),(2,3),... level by level; an odd last element moves up."""
    while len(cols) > 1:
        nxt = [add(cols[i], cols[i + 1]) for i in _range(0, len(cols) - 1, 2)]
        if len(cols) % 2:
            nxt.append(cols[-1])
        cols = nxt
    return cols[0]


def _lane_tree(v: torch.Tensor, add) -> torch.Tensor:
    """Adjacent-pair tree over the columns of ``v`` [rows, n], vectorised over rows."""
    while v.shape[1] > 1:
        n = v.shape[1]
        even = add(v[:, 0 : n - 1 : 2], v[:, 1:n:2])
        v = torch.cat([even, v[:, n - 1 :]], dim=1) if n % 2 else even
    return v[:, 0]


_SUBNORMAL_PROBE = torch.tensor([2.0**-149], dtype=torch.float32)


def _native_fp32_exact() -> bool:
    """True while the CPU's fp32 adds keep subnormals (no flush-to-zero / denormals-are-zero)."""
    return bool((_SUBNORMAL_PROBE + _SUBNORMAL_PROBE != 0).all())


def reduce_sum(v: torch.Tensor, dtype: DType, order: str) -> torch.Tensor:
    """Sum the columns of container ``v`` [rows, n] in ``dtype`` under an order model."""
    if dtype is FP32 and v.device.type == "cpu" and _native_fp32_exact():
        # Native fp32 adds are IEEE RNE, the same bits as _fadd's float64 add rounded once to
        # fp32 (binary64 has >= 2*24+2 bits, so that double rounding is innocuous); much faster.
        return _reduce_sum(v.to(torch.float32), torch.add, order).to(torch.float64)
    return _reduce_sum(v, _fadd(dtype), order)


def _reduce_sum(v: torch.Tensor, add, order: str) -> torch.Tensor:
    n = v.shape[1]
    if n == 0:
        return torch.zeros(v.shape[0], dtype=v.dtype, device=v.device)
    if order == "sequential":
        if add is torch.add and v.dtype == torch.float32 and v.device.type == "cpu":
            # numpy's accumulate is the left-to-right fold, one native fp32 add per step.
            with np.errstate(all="ignore"):  # inf / NaN sums are results, not errors
                return torch.from_numpy(np.add.accumulate(v.numpy(), axis=1)[:, -1].copy())
        acc = v[:, 0]
        for j in _range(1, n):
            acc = add(acc, v[:, j])
        return acc
    if order == "pairwise":
        return _lane_tree(v, add)
    if order == "a2a3":
        lanes = 64
        k = -(-n // lanes)
        pad = k * lanes - n
        if pad:
            v = torch.cat([v, torch.zeros(v.shape[0], pad, dtype=v.dtype, device=v.device)], dim=1)
        repeats = [v[:, i * lanes : (i + 1) * lanes] for i in _range(k)]
        if k > 1:
            # Repeats are added lane-wise in pairs (0,1),(2,3),...; an odd last repeat is added
            # into the first pair; the pair sums are then folded left to right.
            # (For 7 repeats: (((Q0+Q1)+Q6)+(Q2+Q3))+(Q4+Q5), read from the a2a3 lowering.)
            pairs = [add(repeats[i], repeats[i + 1]) for i in _range(0, k - 1, 2)]
            if k % 2:
                pairs[0] = add(pairs[0], repeats[-1])
            acc = pairs[0]
            for p in pairs[1:]:
                acc = add(acc, p)
        else:
            acc = repeats[0]
        return _lane_tree(acc, add)
    raise ValueError(f"unknown row_sum order {order!r}")


def row_sum(x: Tile) -> Tile:
    """Row sums in the element type, in the order ``Options.row_sum_order`` models."""
    if not x.dtype.is_float:
        return Tile(_reduce_input(x).sum(dim=1, keepdim=True), x.dtype, [x.valid[0], 1])
    out = reduce_sum(_reduce_input(x), x.dtype, current().options.row_sum_order)
    return Tile(out.unsqueeze(1), x.dtype, [x.valid[0], 1])


