"""Elementwise compute ops against independent Python/numpy arithmetic: cmp on NaN, ±0, ±inf
and scalar rounding; log, rsqrt (both paths), fmods, expdif broadcasts, row/col expand with
type promotion; value decisions reported by maximum, cmp."""

import math
import struct
from fractions import Fraction

import numpy as np
import pytest
import torch

from equiv import rounding
from equiv import tile as pl
from equiv.tile.errors import KernelError
from equiv.tile.context import RunContext, running
from equiv.options import Options


def tile(values, dtype=pl.FP32):
    data = torch.tensor(values, dtype=torch.float64)
    return pl.Tile(rounding.convert(data, dtype, "rint") if dtype.is_float else data.long(), dtype)


def bits(values):
    """fp32 bit patterns, every NaN as one pattern (a NaN's sign is not a result)."""
    return [b"nan" if v != v else struct.pack("<f", v) for v in values]


EDGE = [0.0, -0.0, 1.0, -1.0, float("inf"), float("-inf"), float("nan"), 2.0 ** -149, -(2.0 ** -126)]
PY_CMP = {0: lambda a, b: a == b, 1: lambda a, b: a != b, 2: lambda a, b: a < b,
          3: lambda a, b: a <= b, 4: lambda a, b: a > b, 5: lambda a, b: a >= b}


@pytest.mark.parametrize("code", range(6))
def test_cmp_all_modes_on_edge_values(ctx, code):
    lhs = [a for a in EDGE for _ in EDGE]
    rhs = [b for _ in EDGE for b in EDGE]
    out = pl.cmp(tile([lhs]), tile([rhs]), cmp_type=code)
    assert out.dtype is pl.FP32
    assert out.data[0].tolist() == [1.0 if PY_CMP[code](a, b) else 0.0 for a, b in zip(lhs, rhs)]


def test_cmp_names_and_scalar_rounded_to_the_tile_type(ctx):
    x = tile([[1.0, 1.0078125, 2.0]], pl.BF16)
    # 1.001 rounds to 1.0 in bf16, so it equals the first element only
    assert pl.cmp(x, 1.001, cmp_type="eq").data.tolist() == [[1.0, 0.0, 0.0]]
    assert pl.cmp(x, 1.001, cmp_type=5).data.tolist() == [[1.0, 1.0, 1.0]]
    with pytest.raises(KernelError, match="cmp_type"):
        pl.cmp(x, 1.0, cmp_type=6)


def test_value_decisions_are_reported(monkeypatch):
    seen = []
    monkeypatch.setattr(RunContext, "decision", lambda self, op, outcomes, site=None: seen.append((op, outcomes)))
    with running(RunContext(Options())):
        pl.maximum(tile([[1.0, 5.0, 2.0]]), tile([[3.0, 5.0, 1.0]]))
        pl.cmp(tile([[1.0, 2.0]]), 2.0, cmp_type=0)
    ops = {op: o for op, o in seen}
    assert ops["maximum"]["first won"].tolist() == [[False, False, True]]
    assert ops["maximum"]["second won"].tolist() == [[True, False, False]]
    assert ops["cmp"]["true"].tolist() == [[False, True]]


LOG_IN = [1.0, 2.0, 10.0, 0.1, 1e-30, 2.0 ** -149, 3.4e38, 0.0, -0.0, -1.0, float("inf"), float("nan")]


def test_log_rounds_once_to_fp32_and_bf16(ctx):
    out = pl.log(tile([LOG_IN]))
    want = []
    for v in LOG_IN:
        v = float(np.float32(v))
        want.append(float(np.float32(-math.inf if v == 0 else math.nan if v < 0 or v != v else math.log(v))))
    assert bits(out.data[0].tolist()) == bits(want)
    b = pl.log(tile([[3.0, 7.0]], pl.BF16), high_precision=True)
    assert b.data[0].tolist() == [float(torch.tensor(math.log(3.0)).to(torch.bfloat16)),
                                  float(torch.tensor(math.log(7.0)).to(torch.bfloat16))]


def _fp32_neighbours(y: float):
    up = np.nextafter(np.float32(y), np.float32(np.inf))
    down = np.nextafter(np.float32(y), np.float32(-np.inf))
    return float(down), float(up)


def correctly_rounded_rsqrt(x: float) -> float:
    """Exact check with fractions: the fp32 y with 1/sqrt(x) between its rounding midpoints."""
    y = float(np.float32(1 / math.sqrt(x)))
    for _ in range(4):
        down, up = _fp32_neighbours(y)
        lo, hi = (Fraction(down) + Fraction(y)) / 2, (Fraction(y) + Fraction(up)) / 2
        X = Fraction(x)
        if X * lo * lo <= 1 <= X * hi * hi:  # 1/sqrt(X) lies in [lo, hi]
            return y
        y = up if X * hi * hi < 1 else down
    raise AssertionError(x)


RSQRT_IN = [0.9702748656272888, 2.0, 3.0, 0.25, 5.0, 7.0, 1e-3, 123456.0, 2.0 ** -149, 3.0e38, 1.0000001]


def test_rsqrt_high_precision_is_correctly_rounded(ctx):
    x = tile([RSQRT_IN])
    got = pl.rsqrt(x, high_precision=True).data[0].tolist()
    assert got == [correctly_rounded_rsqrt(float(np.float32(v))) for v in RSQRT_IN]
    # the tile form selects the same path by passing its scratch tile
    assert pl.tile.rsqrt(x, x).data[0].tolist() == got
    special = pl.rsqrt(tile([[0.0, -0.0, -1.0, float("inf")]]), high_precision=True).data[0].tolist()
    assert special[:2] == [math.inf, -math.inf] and special[2] != special[2] and special[3] == 0.0


def test_rsqrt_default_is_sqrt_then_reciprocal(ctx):
    got = pl.rsqrt(tile([RSQRT_IN])).data[0].tolist()
    want = [float(np.float32(1 / float(np.float32(math.sqrt(float(np.float32(v))))))) for v in RSQRT_IN]
    assert got == want
    # two roundings differ from the correctly rounded value here: the paths are distinguishable
    assert got[0] != correctly_rounded_rsqrt(RSQRT_IN[0])


def test_fmods_sign_of_dividend_and_scalar_rounding(ctx):
    xs = [7.5, -7.5, 16.0, -0.0, 33.25, 1e30, float("inf")]
    got = pl.fmods(tile([xs]), 16.0).data[0].tolist()
    want = [math.fmod(v, 16.0) if math.isfinite(v) else math.nan for v in xs]
    assert bits(got) == bits(want)
    assert pl.fmods(tile([[-7.0, 9.0]], pl.INT32), 4).data.tolist() == [[-3, 1]]


def test_col_expand_expdif_rounds_the_difference_then_exp(ctx):
    x = tile([[1.0, 2.0], [0.1, -3.0]])
    v = tile([[0.3, 2.5]])
    got = pl.col_expand_expdif(x, v).data.tolist()
    want = [[float(np.float32(math.exp(float(np.float32(np.float32(a) - np.float32(b))))))
             for a, b in zip(row, [0.3, 2.5])] for row in [[1.0, 2.0], [0.1, -3.0]]]
    assert got == want
    r = pl.row_expand_expdif(x, tile([[1.0], [0.1]])).data.tolist()
    assert r[0][0] == 1.0 and r[1][0] == 1.0


def test_expdif_exp_is_the_float64_exp_of_the_rounded_difference(ctx):
    # Many differences: a float32 exp (instead of float64 exp rounded once) misses some of them.
    x = np.linspace(-20, 20, 512).astype(np.float32).reshape(2, 256)
    v = np.array([[0.3], [-1.7]], dtype=np.float32)
    diff = (x - v).astype(np.float64)  # float32 subtraction: the difference rounded once
    want = np.exp(diff).astype(np.float32).astype(np.float64)
    got = pl.row_expand_expdif(tile(x.tolist()), tile(v.tolist())).data.to(torch.float64).numpy()
    np.testing.assert_array_equal(got, want)
    got_col = pl.col_expand_expdif(tile(x.T.tolist()), tile(v.T.tolist())).data.to(torch.float64).numpy()
    np.testing.assert_array_equal(got_col, want.T)


def test_row_and_col_expand_broadcast_and_promote(ctx):
    target = pl.full([2, 3], pl.FP32, 0.0)
    col = pl.col_expand(target, tile([[1.0, 2.0, 3.0]], pl.BF16))
    assert col.dtype is pl.FP32 and col.data.tolist() == [[1.0, 2.0, 3.0]] * 2
    row = pl.row_expand(target, tile([[4.0], [5.0]]))
    assert row.data.tolist() == [[4.0] * 3, [5.0] * 3]
    with pytest.raises(KernelError, match="needs a"):
        pl.col_expand(target, tile([[1.0, 2.0]]))


def test_col_expand_sub_div_max_min(ctx):
    x = tile([[1.0, -2.0], [3.0, 0.5]])
    v = tile([[2.0, -1.0]])
    assert pl.col_expand_sub(x, v).data.tolist() == [[-1.0, -1.0], [1.0, 1.5]]
    assert pl.col_expand_div(x, v).data.tolist() == [[0.5, 2.0], [1.5, -0.5]]
    assert pl.col_expand_max(x, v).data.tolist() == [[2.0, -1.0], [3.0, 0.5]]
    assert pl.col_expand_min(x, v).data.tolist() == [[1.0, -2.0], [2.0, -1.0]]


def test_tile_aliases_are_the_same_ops(ctx):
    a, b = tile([[1.5, 2.0]]), tile([[0.25, 4.0]])
    assert pl.tile.add(a, b).data.tolist() == [[1.75, 6.0]]
    assert pl.tile.maximum(a, b).data.tolist() == [[1.5, 4.0]]
    assert pl.tile.cast(a, pl.INT32, mode="trunc").data.tolist() == [[1, 2]]
    assert pl.tile.row_expand_div(a, tile([[2.0]])).data.tolist() == [[0.75, 1.0]]


def test_global_tensor_operands_are_read_whole(ctx):
    from equiv.tile.memory import Tensor
    t = Tensor("x", [1, 3], pl.FP32, torch.tensor([[1.0, -4.0, 9.0]], dtype=torch.float64), written=True)
    assert pl.add(t, 1.0).data.tolist() == [[2.0, -3.0, 10.0]]
    assert pl.row_max(t).data.tolist() == [[9.0]]
    # an unwritten scratch tensor reads as poison (NaN by default), never as zeros
    scratch = Tensor("s", [1, 2], pl.FP32)
    assert all(v != v for v in pl.neg(scratch).data[0].tolist())
