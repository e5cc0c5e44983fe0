"""Matrix multiply: integer exact, floating accumulation in the output type, sequential over K.
Operands index from the end, so tiles may carry leading batch dimensions."""

from __future__ import annotations

import numpy as np
import torch

from equiv import rounding
from equiv.dtypes import FP32, INT32, DType
from equiv.tile.errors import KernelError

from equiv.tile.reductions import _fadd
from equiv.tile.values import Tile
from equiv.tile.elementwise import tensor_operands

_range = range

# ----------------------------------------------------------------------------------------
# Matmul
# ----------------------------------------------------------------------------------------
def _lane_rank_aligned(tiles: tuple[Tile, ...]) -> list[torch.Tensor]:
    """The tiles' containers, those with a batched stage's lane axis (one axis more than their
    rank) given singleton axes after it up to the largest rank of the tiles.

    Operands broadcast from the end, so a lane axis would otherwise meet the other operand's
    batch axis: x [lanes, M, K] by w [lanes, 1, K, N] is per block [M, K] by [1, K, N], but
    broadcast as it is it makes lanes × lanes products (a `lanes`-times larger fold, then a
    tile of the wrong shape per block)."""
    datas = [t.data for t in tiles]
    lanes = [d.dim() - len(t.valid) for d, t in zip(datas, tiles)]
    if not any(lanes):
        return datas
    rank = max(len(t.valid) for t in tiles)
    return [d.reshape(d.shape[0], *[1] * (rank - d.dim() + 1), *d.shape[1:]) if lane else d
            for d, lane in zip(datas, lanes)]


def _mm_operands(a: Tile, b: Tile, a_trans: bool, b_trans: bool,
                 acc: Tile | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    datas = _lane_rank_aligned((a, b) if acc is None else (a, b, acc))
    x = datas[0].transpose(-1, -2) if a_trans else datas[0]
    y = datas[1].transpose(-1, -2) if b_trans else datas[1]
    if x.shape[-1] != y.shape[-2]:
        raise KernelError(f"matmul of {list(x.shape)} by {list(y.shape)} (after transposes)")
    return x, y, (datas[2] if acc is not None else None)


def _mm_float(acc: torch.Tensor | None, x: torch.Tensor, y: torch.Tensor, out: DType) -> torch.Tensor:
    # fp32 accumulation, sequential over K: acc = (((acc + x0*y0) + x1*y1) + ...), each product
    # rounded once to the output type (operands of <= 24 bits: exact in float64 first).
    if out is FP32 and x.device.type == "cpu" and rounding.native_conversions_exact(x.device):
        return _mm_fp32_native(acc, x, y)
    add = _fadd(out)
    x, y = x.to(torch.float64), y.to(torch.float64)  # each product exact before its rounding
    for k in _range(x.shape[-1]):
        prod = rounding.to_float(x[..., :, k : k + 1] * y[..., k : k + 1, :], out, "rint")
        acc = prod if acc is None else add(acc, prod)
    return acc


_MM_CHUNK_ELEMENTS = 1 << 18  # bound on the [k, M*N] product block held at once (1 MiB of fp32)


def _mm_fp32_native(acc: torch.Tensor | None, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The same fold with native fp32 arithmetic, vectorised over all outputs at once.

    A native fp32 multiply of two fp32 values is their exact product rounded once to nearest
    even, as `rounding.to_float` rounds it; a native fp32 add is the float64 sum rounded once
    (binary64 has >= 2*24+2 bits). The products of a chunk of K are laid out K-major as one
    C-contiguous [k, outputs] block, and one `numpy.add.reduce` over axis 0 folds them. Along an
    axis that is not the fast one in memory numpy does no pairwise summation: its loop adds row
    after row into the float32 result, each add rounded, in order of K (numpy.sum's notes; bits
    pinned by tests/test_matmul_fold.py). One output makes K the fast axis, so that case uses
    `numpy.add.accumulate`, sequential by definition. The reduce starts from -0.0, the exact
    identity of IEEE addition, so a fold of -0.0 products stays -0.0 as the device's does.
    No limit on the number of outputs: the block is bounded by `_MM_CHUNK_ELEMENTS` rows of K
    whatever the outputs are, down to one K step per chunk.
    """
    k_total = x.shape[-1]
    batch = torch.broadcast_shapes(x.shape[:-2], y.shape[:-2])
    if acc is not None and torch.broadcast_shapes(batch, acc.shape[:-2]) != batch:
        # a sum with axes the product lacks (a lane axis): every one gets the product
        batch = torch.broadcast_shapes(batch, acc.shape[:-2])
        x = x.expand(*batch, *x.shape[-2:])
    out_shape = [*batch, x.shape[-2], y.shape[-1]]
    outputs = int(np.prod(out_shape))
    if outputs == 0 or (acc is None and k_total == 0):
        return torch.zeros(out_shape, dtype=FP32.container) if acc is None else \
            acc.to(torch.float32).expand(out_shape).to(FP32.container)
    rank = max(x.dim(), y.dim())  # one batch rank for both, so K leads both after the move
    x, y = x.reshape([1] * (rank - x.dim()) + list(x.shape)), y.reshape([1] * (rank - y.dim()) + list(y.shape))
    # Contiguous operands make torch lay the product out C-contiguous ([k, .., M, N]), so the
    # block below is a view; from a transposed tile torch would put K innermost and numpy copy.
    xk = x.to(torch.float32).movedim(-1, 0).unsqueeze(-1).contiguous()  # [K, .., M, 1]
    yk = y.to(torch.float32).movedim(-2, 0).unsqueeze(-2).contiguous()  # [K, .., 1, N]
    step = max(1, _MM_CHUNK_ELEMENTS // outputs)
    cur = None if acc is None else np.array(acc.to(torch.float32).expand(out_shape).numpy()).reshape(outputs)
    with np.errstate(all="ignore"):  # inf / NaN sums are results, not errors
        for k0 in _range(0, k_total, step):
            block = torch.mul(xk[k0:k0 + step], yk[k0:k0 + step]).numpy().reshape(-1, outputs)  # [k, outputs]
            if cur is not None:
                np.add(cur, block[0], out=block[0])  # the carried sum's step comes first
                if block.shape[0] == 1:  # many outputs, one K per chunk: that add was the step
                    cur = block[0]
                    continue
            if outputs > 1:
                cur = np.add.reduce(block, axis=0, initial=-0.0)
            else:
                cur = np.add.accumulate(block, axis=0)[-1].copy()
    return torch.from_numpy(cur.reshape(out_shape)).to(FP32.container)


def _int_product(x: torch.Tensor, y: torch.Tensor, x_type: DType, y_type: DType) -> torch.Tensor:
    """``x @ y`` of integer operands, exactly, as int64. Every partial sum of a K-long dot
    product is at most K·max|x|·max|y| in magnitude (bounds from the types): where that is
    ≤ 2^24 (int8 × int8 up to K = 1024) float32 holds every partial sum exactly in any
    summation order, so the float32 product is exact; otherwise float64 (exact below 2^53).
    float32 only on a CPU at full float32 matmul precision (no TF32 or bf16 passes)."""
    bound = x.shape[-1] * max(-x_type.int_range[0], x_type.int_range[1]) * max(-y_type.int_range[0], y_type.int_range[1])
    narrow = bound <= 2**24 and x.device.type == "cpu" and torch.get_float32_matmul_precision() == "highest"
    ftype = torch.float32 if narrow else torch.float64
    return (_int_to_float(x, x_type, ftype) @ _int_to_float(y, y_type, ftype)).to(torch.int64)


_INT32_RANGE = (-(2**31), 2**31 - 1)


def _int_to_float(x: torch.Tensor, dtype: DType, ftype: torch.dtype) -> torch.Tensor:
    # Through int32 where the type's values fit it (exact): int64 -> float is not vectorised
    # on CPUs (int8 weights: 19 us against 12 us for a [512, 64] tile).
    lo, hi = dtype.int_range
    if x.dtype is torch.int64 and _INT32_RANGE[0] <= lo and hi <= _INT32_RANGE[1]:
        x = x.to(torch.int32)
    return x.to(ftype)


@tensor_operands
def matmul(a: Tile, b: Tile, a_trans: bool = False, b_trans: bool = False, out_dtype: DType | None = None,
           **_hints) -> Tile:
    """``a @ b`` (optionally transposed). int8 x int8 -> exact int32; floats accumulate in fp32."""
    x, y, _ = _mm_operands(a, b, a_trans, b_trans)
    if not a.dtype.is_float:
        out = out_dtype or INT32
        exact = _int_product(x, y, a.dtype, b.dtype)
        batch = exact.shape[:-2]  # the broadcast batch axes, less a lane axis (a's or b's)
        if a.data.dim() > len(a.valid) or b.data.dim() > len(b.valid):
            batch = batch[1:]
        return Tile(rounding.wrap_int(exact, out), out, [*batch, a.valid[-1] if a_trans else a.valid[-2],
                                                          b.valid[-2] if b_trans else b.valid[-1]])
    out = out_dtype or FP32
    return Tile(_mm_float(None, x, y, out), out)


@tensor_operands
def matmul_acc(acc: Tile, a: Tile, b: Tile, a_trans: bool = False, b_trans: bool = False, **_hints) -> Tile:
    """``acc + a @ b`` accumulated in ``acc``'s type."""
    x, y, start = _mm_operands(a, b, a_trans, b_trans, acc)
    if not acc.dtype.is_float:
        exact = _int_product(x, y, a.dtype, b.dtype)
        return Tile(rounding.wrap_int(start + exact, acc.dtype), acc.dtype, acc.valid)
    return Tile(_mm_float(start, x, y, acc.dtype), acc.dtype, acc.valid)


