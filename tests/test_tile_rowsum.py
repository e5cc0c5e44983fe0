"""pl.row_sum order models, and the fast fp32 paths of the emulator (same bits as the exact ones)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from equiv import numerics, rounding
from equiv import tile as pl
from equiv.dtypes import BF16, FP32
from equiv.options import ROW_SUM_ORDERS


def _fp32_values(rows: int, n: int, seed: int, spread: int = 40) -> torch.Tensor:
    """fp32 values (float64 container) over many binades, with signs, zeros and subnormals."""
    g = torch.Generator().manual_seed(seed)
    mant = 1 + torch.rand(rows, n, generator=g, dtype=torch.float64)
    exps = torch.randint(-spread, spread + 1, (rows, n), generator=g).to(torch.float64)
    sign = torch.randint(0, 2, (rows, n), generator=g).to(torch.float64) * 2 - 1
    x = sign * mant * torch.exp2(exps)
    special = torch.rand(rows, n, generator=g)
    x = torch.where(special < 0.03, torch.zeros_like(x), x)
    x = torch.where((special >= 0.03) & (special < 0.06), sign * torch.exp2(-140 + 10 * torch.rand(rows, n, generator=g,
                    dtype=torch.float64)), x)
    return numerics.round_to(x, numerics.FP32)


def _np_add(a, b):
    return (np.asarray(a, dtype=np.float32) + np.asarray(b, dtype=np.float32)).astype(np.float32)


def _np_lane_tree(v: np.ndarray) -> np.ndarray:
    while v.shape[1] > 1:
        n = v.shape[1]
        even = _np_add(v[:, 0 : n - 1 : 2], v[:, 1:n:2])
        v = np.concatenate([even, v[:, n - 1 :]], axis=1) if n % 2 else even
    return v[:, 0]


def _bits(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float32).view(torch.int32)


# -- the a2a3 model of RS_448 and RS_64 (spec qkv_q_head_rope §6.1) ------------------------
@pytest.mark.parametrize("seed", range(4))
def test_a2a3_rs448_is_spec_order(seed):
    """RS_448 = vcadd((((Q0⊕Q1)⊕Q6)⊕(Q2⊕Q3))⊕(Q4⊕Q5)), vcadd = adjacent-pair tree over 64 lanes."""
    v = _fp32_values(64, 448, seed, spread=12)
    q = [v[:, 64 * k : 64 * k + 64].numpy().astype(np.float32) for k in range(7)]
    lanes = _np_add(_np_add(_np_add(_np_add(q[0], q[1]), q[6]), _np_add(q[2], q[3])), _np_add(q[4], q[5]))
    want = torch.from_numpy(_np_lane_tree(lanes))
    got = pl.reduce_sum(v, FP32, "a2a3")
    assert torch.equal(_bits(got), want.view(torch.int32))
    # The test can tell the spec order from the plain left-to-right fold of the repeats.
    fold = q[0]
    for k in range(1, 7):
        fold = _np_add(fold, q[k])
    assert not np.array_equal(_np_lane_tree(fold), want.numpy())


def test_a2a3_rs64_is_one_lane_tree():
    v = _fp32_values(64, 64, 7, spread=12)
    want = torch.from_numpy(_np_lane_tree(v.numpy().astype(np.float32)))
    assert torch.equal(_bits(pl.reduce_sum(v, FP32, "a2a3")), want.view(torch.int32))
    assert torch.equal(_bits(pl.reduce_sum(v, FP32, "pairwise")), want.view(torch.int32))


def test_sequential_is_left_to_right():
    v = _fp32_values(16, 448, 3, spread=12)
    acc = v[:, 0].numpy().astype(np.float32)
    for j in range(1, 448):
        acc = _np_add(acc, v[:, j].numpy())
    assert torch.equal(_bits(pl.reduce_sum(v, FP32, "sequential")), torch.from_numpy(acc).view(torch.int32))


# -- the native fp32 path of reduce_sum gives the bits of the exact float64 path -----------
@pytest.mark.parametrize("order", ROW_SUM_ORDERS)
@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 130, 448, 512])
def test_reduce_sum_native_matches_exact(order, n):
    for seed in range(3):
        v = _fp32_values(32, n, 100 * n + seed, spread=40 if seed < 2 else 126)
        if seed == 2:
            v[0, 0] = float("nan")
            v[1, :] = numerics.FP32.max_finite  # overflows to inf
            v[2, 0] = float("inf")
            v[2, -1] = -float("inf")
        exact = pl._reduce_sum(v, pl._fadd(FP32), order)
        fast = pl.reduce_sum(v, FP32, order)
        assert pl._native_fp32_exact()
        same = (_bits(exact) == _bits(fast)) | (exact.isnan() & fast.isnan())
        assert bool(same.all()), (order, n, seed)


def test_reduce_sum_bf16_unchanged():
    v = numerics.round_to(_fp32_values(8, 130, 5, spread=6), numerics.BF16)
    assert torch.equal(pl.reduce_sum(v, BF16, "sequential"), pl._reduce_sum(v, pl._fadd(BF16), "sequential"))


# -- the fast fp32 path of rounding.to_float ----------------------------------------------
def test_to_float_fp32_fast_path_matches_exact_rounding():
    g = torch.Generator().manual_seed(11)
    n = 200_000
    mant = 1 + torch.rand(n, generator=g, dtype=torch.float64)
    exps = torch.randint(-160, 130, (n,), generator=g).to(torch.float64)
    sign = torch.randint(0, 2, (n,), generator=g).to(torch.float64) * 2 - 1
    x = sign * mant * torch.exp2(exps)
    # exact ties between fp32 neighbours, values at the overflow threshold, specials
    f = numerics.round_to(x[:1000], numerics.FP32)
    ties = f + torch.copysign(torch.ldexp(torch.ones_like(f), torch.frexp(f)[1] - 25), f)
    top = numerics.FP32.max_finite
    extra = torch.tensor([top, top + 2.0**103, top + 2.0**103 - 2.0**60, -top - 2.0**104, 0.0, -0.0,
                          float("inf"), -float("inf"), 2.0**-126, -(2.0**-126), 2.0**-127, 2.0**-150,
                          5e-324, 1.0 + 2.0**-24, 1.0 + 3 * 2.0**-24], dtype=torch.float64)
    x = torch.cat([x, ties, extra])
    for chunk in (x, x[x.abs() >= 2.0**-126], extra[:8]):  # mixed (exact path) and all-normal (fast path)
        got = rounding.to_float(chunk, FP32, "rint")
        want = numerics.round_to(chunk, numerics.FP32)
        assert torch.equal(got.to(torch.float64).view(torch.int64), want.view(torch.int64))
    nan = rounding.to_float(torch.tensor([float("nan"), 1.0], dtype=torch.float64), FP32, "rint")
    assert nan[0].isnan() and nan[1] == 1.0
    normal = x[(x.abs() >= 2.0**-126) & (x.abs() <= numerics.FP32.max_finite)]
    assert rounding._nearest_even_fast(normal, FP32) is not None
    # fp32 subnormals take the native path too while the CPU keeps them (no flush mode)
    sub = torch.tensor([1.0, 2.0**-130], dtype=torch.float64)
    assert torch.equal(rounding._nearest_even_fast(sub, FP32), numerics.round_to(sub, numerics.FP32))


def test_cast_fp32_to_bf16_fast_path_matches_exact_rounding():
    n = 100_000
    x = numerics.round_to(_fp32_values(1, n, 13, spread=126).flatten(), numerics.FP32)
    f = x[:2000]
    # exact ties between bf16 neighbours, and one fp32 ulp either side of them
    e = torch.frexp(f)[1].to(torch.float64)
    half = torch.copysign(torch.ldexp(torch.ones_like(f), (e - 9).to(torch.int64)), f)
    ties = numerics.round_to(numerics.round_to(f, numerics.BF16) + half, numerics.FP32)
    ulp32 = torch.ldexp(torch.ones_like(f), (e - 24).to(torch.int64))
    top = numerics.FP32.max_finite
    extra = torch.tensor([top, -top, 3.3895313892515355e38, 3.3961775292304957e38, 0.0, -0.0,
                          float("inf"), -float("inf"), 2.0**-126, 1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8],
                         dtype=torch.float64)
    x = numerics.round_to(torch.cat([x, ties, ties + ulp32, ties - ulp32, extra]), numerics.FP32)
    normal = x[(x.abs() >= 2.0**-126) | (x == 0) | x.isinf()]
    for vals in (x, normal):
        tile = pl.Tile(vals.view(1, -1).clone(), FP32)
        got = pl.cast(tile, BF16, mode="rint").data.flatten()
        want = numerics.round_to(vals, numerics.BF16)
        assert torch.equal(got.to(torch.float64).view(torch.int64), want.view(torch.int64))
    assert rounding._nearest_even_fast(normal, BF16) is not None  # the native path is taken
    nan = pl.cast(pl.Tile(torch.tensor([[float("nan"), 1.0]], dtype=torch.float64), FP32), BF16, mode="rint").data
    assert nan[0, 0].isnan() and nan[0, 1] == 1.0
