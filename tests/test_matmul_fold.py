"""The fp32 matmul fold (all outputs at once, one numpy reduce over each chunk of K) gives the
bits of the sequential fold it stands for: the first product, then acc + product for each later
K in order, every product and every add rounded once to fp32. Checked against two independent
per-step computations (numpy float32 ops one K at a time; float64 arithmetic rounded per step)
on random operands with wide exponents, specials, -0.0, a carried acc, transposed operands,
lane axes and K that is not a multiple of the chunk. The operands are checked to tell orders
and roundings apart: a fold in another order or rounded once gives other bits on them."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from equiv import numerics

matmul = importlib.import_module("equiv.tile.matmul")  # (equiv.tile.matmul is also pl.matmul)


def _sequential(acc, x, y):
    """numpy float32: one multiply and one add per K, in order."""
    xs, ys = x.numpy().astype(np.float32), y.numpy().astype(np.float32)
    out = None if acc is None else np.broadcast_to(acc.numpy().astype(np.float32), np.broadcast_shapes(
        xs.shape[:-1] + (1,), ys.shape[:-2] + (1, ys.shape[-1]))).copy()
    with np.errstate(all="ignore"):
        for k in range(xs.shape[-1]):
            prod = np.multiply(xs[..., :, k:k + 1], ys[..., k:k + 1, :], dtype=np.float32)
            out = prod.copy() if out is None else np.add(out, prod, dtype=np.float32)
    return out


def _per_step_f64(acc, x, y):
    """float64 arithmetic (exact products and sums of fp32 values) rounded to fp32 per step."""
    x64, y64 = x.to(torch.float64), y.to(torch.float64)
    out = None if acc is None else acc.to(torch.float64)
    for k in range(x64.shape[-1]):
        p = numerics.round_to(x64[..., :, k:k + 1] * y64[..., k:k + 1, :], numerics.FP32)
        out = p if out is None else numerics.round_to(out + p, numerics.FP32)
    return out.to(torch.float32).numpy()


def _bits(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32).view(np.int32)


def _operands(g, m, k, n, batch=(), y_batch=(), dtype=torch.float32, b_trans=False):
    # exponents over ±20 binades: adds round at every step and the order matters
    x = torch.randn(*batch, m, k, generator=g) * torch.exp2(torch.randint(-20, 20, (*batch, m, k), generator=g).float())
    y = torch.randn(*y_batch, k, n, generator=g) * torch.exp2(torch.randint(-4, 4, (*y_batch, k, n), generator=g).float())
    x, y = x.to(dtype).to(torch.float32), y.to(dtype).to(torch.float32)  # values of the operand type
    if b_trans:  # as pl.matmul(a, b, b_trans=True) hands it: a transposed view of b[N, K]
        y = y.transpose(-1, -2).contiguous().transpose(-1, -2)
    return x, y


def _check(acc, x, y):
    got = matmul._mm_fp32_native(acc, x, y).numpy()
    assert np.array_equal(_bits(got), _bits(_sequential(acc, x, y)))
    assert np.array_equal(_bits(got), _bits(_per_step_f64(acc, x, y)))


@pytest.mark.parametrize("m,k,n", [(1, 512, 64), (2, 300, 8), (1, 2000, 1), (4, 64, 32), (16, 40, 16),
                                   (16, 512, 32), (16, 32, 512), (3, 7, 5), (1, 1, 1), (2, 3, 1), (64, 130, 40)])
@pytest.mark.parametrize("carried", [False, True])
def test_fold_is_the_sequential_fold(m, k, n, carried):
    g = torch.Generator().manual_seed(m * 1000 + k + n)
    x, y = _operands(g, m, k, n, dtype=torch.bfloat16 if k % 2 else torch.float32)
    x[0, 0] = -0.0
    if k > 1:
        y[1, 0] = float("inf")
    if k > 3:
        x[0, 3] = float("nan")
    acc = torch.randn(m, n, generator=g) if carried else None
    _check(acc, x, y)


@pytest.mark.parametrize("chunk", [1, 5, 37, 1000])
@pytest.mark.parametrize("m,k,n", [(16, 130, 32), (3, 97, 1), (1, 77, 2)])
def test_fold_over_k_chunks_is_the_sequential_fold(monkeypatch, chunk, m, k, n):
    """Chunks of K (bounded by _MM_CHUNK_ELEMENTS) carry the sum from one to the next, K not a
    multiple of the chunk; a chunk smaller than the outputs folds one K at a time."""
    monkeypatch.setattr(matmul, "_MM_CHUNK_ELEMENTS", chunk)
    g = torch.Generator().manual_seed(chunk + k)
    x, y = _operands(g, m, k, n, b_trans=True)
    for acc in (None, torch.randn(m, n, generator=g)):
        _check(acc, x, y)


@pytest.mark.parametrize("batch,y_batch", [((3,), (3,)), ((4,), ()), ((2, 1), (3,)), ((), (5,))])
def test_fold_with_lane_axes_is_the_sequential_fold(batch, y_batch):
    g = torch.Generator().manual_seed(len(batch) * 10 + len(y_batch))
    x, y = _operands(g, 6, 45, 7, batch, y_batch, dtype=torch.bfloat16)
    out_batch = torch.broadcast_shapes(batch, y_batch)
    for acc in (None, torch.randn(*out_batch, 6, 7, generator=g)):
        _check(acc, x, y)


def test_fold_of_negative_zero_products_is_negative_zero():
    """-0.0 + -0.0 is -0.0 and the fold starts at the first product: outputs whose products are
    all -0.0 stay -0.0 (a reduce started at +0.0 would make them +0.0)."""
    x = torch.tensor([[-0.0, 0.0, -1.0], [1.0, 2.0, 0.0]])
    y = torch.tensor([[1.0, -0.0], [-2.0, 0.0], [0.0, 0.0]])  # row 0: -0, -0, -0 then -0, 0, -0
    got = matmul._mm_fp32_native(None, x, y).numpy()
    assert np.signbit(got[0, 0]) and got[0, 0] == 0
    _check(None, x, y)
    _check(torch.full((2, 2), -0.0), x, y)


def test_the_operands_tell_orders_and_roundings_apart():
    """What the checks above rely on: on these operands a fold rounded once, in reversed order
    or pairwise gives other bits than the sequential fold."""
    g = torch.Generator().manual_seed(7)
    x, y = _operands(g, 16, 512, 32)
    want = _bits(_sequential(None, x, y))
    prods = (x.to(torch.float64).unsqueeze(-1) * y.to(torch.float64).unsqueeze(-3)).to(torch.float32).numpy()
    once = (x.to(torch.float64) @ y.to(torch.float64)).to(torch.float32).numpy()
    reversed_fold = _sequential(None, x.flip(-1), y.flip(-2))
    pairwise = np.ascontiguousarray(np.moveaxis(prods, 1, -1)).sum(axis=-1, dtype=np.float32)
    for other in (once, reversed_fold, pairwise):
        assert (_bits(other) != want).mean() > 0.5


def test_matmul_op_with_transposed_operand_and_many_outputs():
    """pl.matmul with b_trans, more outputs than one chunk of K holds, through the op."""
    from equiv.dtypes import BF16
    from equiv.tile.values import Tile

    g = torch.Generator().manual_seed(11)
    x, y = _operands(g, 64, 96, 4200, dtype=torch.bfloat16)  # 268800 outputs > 2**18: one K per chunk
    got = matmul.matmul(Tile(x, BF16), Tile(y.t().contiguous(), BF16), b_trans=True).data.numpy()
    assert np.array_equal(_bits(got), _bits(_sequential(None, x, y)))
