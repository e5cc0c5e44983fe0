"""Matrix multiply: integer exact, floating accumulation in the output type, sequential over K.
Operands index from the end, so tiles may carry leading batch dimensions."""

from __future__ import annotations

import torch

from equiv import rounding
from equiv.dtypes import FP32, INT32, DType
from equiv.memory import KernelError

from equiv.tile.reductions import _fadd
from equiv.tile.values import Tile
from equiv.tile.elementwise import tensor_operands

_range = range

# ----------------------------------------------------------------------------------------
# Matmul
# ----------------------------------------------------------------------------------------
def _mm_operands(a: Tile, b: Tile, a_trans: bool, b_trans: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x = a.data.transpose(-1, -2) if a_trans else a.data
    y = b.data.transpose(-1, -2) if b_trans else b.data
    if x.shape[-1] != y.shape[-2]:
        raise KernelError(f"matmul of {list(x.shape)} by {list(y.shape)} (after transposes)")
    return x, y


def _mm_float(acc: torch.Tensor | None, x: torch.Tensor, y: torch.Tensor, out: DType) -> torch.Tensor:
    # fp32 accumulation, sequential over K: acc = (((acc + x0*y0) + x1*y1) + ...), products exact.
    add = _fadd(out)
    for k in _range(x.shape[-1]):
        prod = rounding.to_float(x[..., :, k : k + 1] * y[..., k : k + 1, :], out, "rint")
        acc = prod if acc is None else add(acc, prod)
    return acc


@tensor_operands
def matmul(a: Tile, b: Tile, a_trans: bool = False, b_trans: bool = False, out_dtype: DType | None = None,
           **_hints) -> Tile:
    """``a @ b`` (optionally transposed). int8 x int8 -> exact int32; floats accumulate in fp32."""
    x, y = _mm_operands(a, b, a_trans, b_trans)
    if not a.dtype.is_float:
        out = out_dtype or INT32
        # Integer products summed in float64 are exact while |sum| < 2**53 (int8: K < 5.5e11).
        exact = (x.to(torch.float64) @ y.to(torch.float64)).to(torch.int64)
        return Tile(rounding.wrap_int(exact, out), out, [*a.valid[:-2], a.valid[-1] if a_trans else a.valid[-2],
                                                          b.valid[-2] if b_trans else b.valid[-1]])
    out = out_dtype or FP32
    return Tile(_mm_float(None, x, y, out), out)


@tensor_operands
def matmul_acc(acc: Tile, a: Tile, b: Tile, a_trans: bool = False, b_trans: bool = False, **_hints) -> Tile:
    """``acc + a @ b`` accumulated in ``acc``'s type."""
    x, y = _mm_operands(a, b, a_trans, b_trans)
    if not acc.dtype.is_float:
        exact = (x.to(torch.float64) @ y.to(torch.float64)).to(torch.int64)
        return Tile(rounding.wrap_int(acc.data + exact, acc.dtype), acc.dtype, acc.valid)
    return Tile(_mm_float(acc.data, x, y, acc.dtype), acc.dtype, acc.valid)


