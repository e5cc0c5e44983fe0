"""Row and column reductions. Max/min are exact; row sums follow the order model
`Options.row_sum_order`; column sums are sequential over rows (a binary tree when a scratch
tile is passed); argmax picks the first maximum. Reductions read the valid region only and
index from the end, so tiles may carry leading batch dimensions."""

from __future__ import annotations

import numpy as np
import torch

from equiv import rounding
from equiv.dtypes import FP32, INT32, DType
from equiv.tile.errors import KernelError
from equiv.tile.context import current

from equiv.tile.values import Tile
from equiv.tile.elementwise import tensor_operands

_range = range

# ----------------------------------------------------------------------------------------
# Reductions
# ----------------------------------------------------------------------------------------
def _reduce_input(x: Tile) -> torch.Tensor:
    if x.data.dim() < 2:
        raise KernelError(f"row reduction of a {x.shape} tile; expected 2-d")
    return x.data[..., : x.valid[-1]]


def _row_result(values: torch.Tensor, dtype: DType, x: Tile) -> Tile:
    return Tile(values.unsqueeze(-1), dtype, [*x.valid[:-1], 1])


@tensor_operands
def row_max(x: Tile, tmp: Tile | None = None) -> Tile:
    return _row_result(torch.amax(_reduce_input(x), dim=-1), x.dtype, x)


@tensor_operands
def row_min(x: Tile, tmp: Tile | None = None) -> Tile:
    return _row_result(torch.amin(_reduce_input(x), dim=-1), x.dtype, x)


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
    """Adjacent-pair tree over the columns of ``v`` [rows, n], vectorised over rows (a torch
    tensor, or a NumPy array with ``add=np.add``)."""
    cat = np.concatenate if isinstance(v, np.ndarray) else torch.cat
    while v.shape[1] > 1:
        n = v.shape[1]
        even = add(v[:, 0 : n - 1 : 2], v[:, 1:n:2])
        v = cat([even, v[:, n - 1 :]], 1) if n % 2 else even
    return v[:, 0]


_SUBNORMAL_PROBE = torch.tensor([2.0**-149], dtype=torch.float32)


def _native_fp32_exact() -> bool:
    """True while the CPU's fp32 adds keep subnormals (no flush-to-zero / denormals-are-zero)."""
    return bool((_SUBNORMAL_PROBE + _SUBNORMAL_PROBE != 0).all())


def reduce_sum(v: torch.Tensor, dtype: DType, order: str) -> torch.Tensor:
    """Sum the columns of container ``v`` [rows, n] in ``dtype`` under an order model."""
    if dtype is FP32 and v.device.type == "cpu" and rounding.native_conversions_exact(v.device):
        # (the flush-mode probe is taken once per kernel run: `rounding.refresh_native_probe`)
        # Native fp32 adds are IEEE RNE, the same bits as _fadd's float64 add rounded once to
        # fp32 (binary64 has >= 2*24+2 bits, so that double rounding is innocuous); much faster.
        return _reduce_sum(v.to(torch.float32), torch.add, order).to(FP32.container)
    return _reduce_sum(v, _fadd(dtype), order)


def _reduce_sum(v: torch.Tensor, add, order: str) -> torch.Tensor:
    n = v.shape[1]
    if n == 0:
        return torch.zeros(v.shape[0], dtype=v.dtype, device=v.device)
    if add is torch.add and v.dtype == torch.float32 and v.device.type == "cpu":
        # The same native fp32 adds in NumPy, which dispatches small arrays several times
        # faster; numpy's accumulate is the left-to-right fold, one add per step.
        with np.errstate(all="ignore"):  # inf / NaN sums are results, not errors
            if order == "sequential":
                return torch.from_numpy(np.add.accumulate(v.numpy(), axis=1)[:, -1].copy())
            return torch.from_numpy(np.ascontiguousarray(_ordered_sum(v.numpy(), np.add, order)))
    return _ordered_sum(v, add, order)


def _ordered_sum(v, add, order: str):
    """`v` [rows, n] (n >= 1) summed along its columns in `order`, each add by `add`: torch
    tensors, or NumPy arrays with ``add=np.add``."""
    n = v.shape[1]
    cat = np.concatenate if isinstance(v, np.ndarray) else torch.cat
    if order == "sequential":
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
            zeros = np.zeros((v.shape[0], pad), dtype=v.dtype) if isinstance(v, np.ndarray) else \
                torch.zeros(v.shape[0], pad, dtype=v.dtype, device=v.device)
            v = cat([v, zeros], 1)
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


@tensor_operands
def row_sum(x: Tile, tmp: Tile | None = None) -> Tile:
    """Row sums in the element type, in the order ``Options.row_sum_order`` models."""
    v = _reduce_input(x)
    if not x.dtype.is_float:
        return _row_result(rounding.wrap_int(v.sum(dim=-1), x.dtype), x.dtype, x)
    lead = v.shape[:-1]
    out = reduce_sum(v.reshape(-1, v.shape[-1]), x.dtype, current().options.row_sum_order)
    return _row_result(out.reshape(lead), x.dtype, x)


# ----------------------------------------------------------------------------------------
# Column reductions and argmax
# ----------------------------------------------------------------------------------------
def _col_input(x: Tile) -> torch.Tensor:
    if x.data.dim() < 2:
        raise KernelError(f"column reduction of a {x.shape} tile; expected 2-d")
    return x.data[..., : x.valid[-2], :]


def _col_result(values: torch.Tensor, dtype: DType, x: Tile) -> Tile:
    return Tile(values.unsqueeze(-2), dtype, [*x.valid[:-2], 1, x.valid[-1]])


@tensor_operands
def col_sum(x: Tile, tmp: Tile | None = None) -> Tile:
    """Column sums in the element type. Without ``tmp``: rows added in order,
    ``((r0 + r1) + r2) + ...``; with a scratch ``tmp`` (the binary-tree path): adjacent rows
    paired level by level, an odd last row moving up a level."""
    v = _col_input(x)
    if not x.dtype.is_float:
        return _col_result(rounding.wrap_int(v.sum(dim=-2), x.dtype), x.dtype, x)
    order = "sequential" if tmp is None else "pairwise"
    rows = v.transpose(-1, -2)  # [..., c, r]: one reduction lane per column
    lead = rows.shape[:-1]
    out = reduce_sum(rows.reshape(-1, rows.shape[-1]), x.dtype, order)
    return _col_result(out.reshape(lead), x.dtype, x)


@tensor_operands
def col_max(x: Tile) -> Tile:
    """Column maxima, exact; NaN propagates."""
    return _col_result(torch.amax(_col_input(x), dim=-2), x.dtype, x)


@tensor_operands
def col_min(x: Tile) -> Tile:
    return _col_result(torch.amin(_col_input(x), dim=-2), x.dtype, x)


@tensor_operands
def row_argmax(x: Tile, tmp: Tile | None = None) -> Tile:
    """INT32 column index of each row's maximum: a left-to-right scan that replaces the best
    only on a strictly greater value, so the first of equal maxima wins (-0 equals +0) and a
    NaN never wins unless it is in column 0, which then stays the answer."""
    v = _reduce_input(x)
    if v.shape[-1] == 0:
        raise KernelError("row_argmax of a row with no valid columns")
    nan = torch.isnan(v) if x.dtype.is_float else torch.zeros_like(v, dtype=torch.bool)
    low = float("-inf") if x.dtype.is_float else x.dtype.int_range[0]
    cand = torch.where(nan, torch.full_like(v, low), v)
    best = torch.amax(cand, dim=-1, keepdim=True)
    hits = (cand == best) & ~nan
    current().decision("row_argmax", {"tie": hits.sum(dim=-1) > 1})
    first = torch.argmax(hits.to(torch.int8), dim=-1)  # argmax returns the first maximal index
    first = torch.where(nan[..., 0], torch.zeros_like(first), first)
    return _row_result(first.to(torch.int64), INT32, x)


@tensor_operands
def row_argmin(x: Tile, tmp: Tile | None = None) -> Tile:
    """First index of each row's minimum (the scan of `row_argmax` with ``<``)."""
    neg = Tile(-x.data if x.dtype.is_float else -x.data, x.dtype, x.valid)
    if not x.dtype.is_float:
        # -x overflows at the type's minimum; order by the complement instead.
        neg = Tile(-1 - x.data, x.dtype, x.valid)
    return row_argmax(neg)
