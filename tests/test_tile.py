"""The tile emulator: rounding per op, cast modes, exact integer matmul, reduction orders,
poison and valid shapes, out-of-range accesses with the kernel's line, shuffled blocks."""

import math

import numpy as np
import pytest
import torch

from equiv import tile as pl
from equiv.tile.errors import OutOfBoundsError
from equiv.tile.context import RunContext, running
from equiv.tile.memory import Tensor
from equiv.options import Options


@pytest.fixture
def ctx():
    with running(RunContext(Options(seed=5))) as c:
        yield c


def tile(values, dtype=pl.FP32):
    from equiv import rounding
    data = torch.tensor(values, dtype=torch.float64)
    return pl.Tile(rounding.convert(data, dtype, "rint") if dtype.is_float else data.long(), dtype)


TIES = [2.5, -2.5, 0.5, -0.5, 1.5, -1.5, 3.7, -3.7]
EXPECTED_INT = {
    "rint": [2, -2, 0, 0, 2, -2, 4, -4],
    "none": [2, -2, 0, 0, 2, -2, 4, -4],
    "round": [3, -3, 1, -1, 2, -2, 4, -4],
    "trunc": [2, -2, 0, 0, 1, -1, 3, -3],
    "floor": [2, -3, 0, -1, 1, -2, 3, -4],
    "ceil": [3, -2, 1, 0, 2, -1, 4, -3],
}


@pytest.mark.parametrize("mode", sorted(EXPECTED_INT))
def test_float_to_int_cast_modes_on_ties_and_negatives(ctx, mode):
    out = pl.cast(tile([TIES]), pl.INT32, mode=mode)
    assert out.data.tolist() == [EXPECTED_INT[mode]]


U = 2.0 ** -7  # one bf16 ULP at 1.0
BF16_TIES = [1 + U / 2, -(1 + U / 2), 1 + 3 * U / 2, -(1 + 3 * U / 2)]
EXPECTED_BF16 = {
    "rint": [1, -1, 1 + 2 * U, -(1 + 2 * U)],
    "round": [1 + U, -(1 + U), 1 + 2 * U, -(1 + 2 * U)],
    "trunc": [1, -1, 1 + U, -(1 + U)],
    "floor": [1, -(1 + U), 1 + U, -(1 + 2 * U)],
    "ceil": [1 + U, -1, 1 + 2 * U, -(1 + U)],
}


@pytest.mark.parametrize("mode", sorted(EXPECTED_BF16))
def test_fp32_to_bf16_cast_modes_on_exact_ties(ctx, mode):
    out = pl.cast(tile([BF16_TIES]), pl.BF16, mode=mode)
    assert out.data.tolist() == [EXPECTED_BF16[mode]]


@pytest.mark.parametrize("mode", sorted(EXPECTED_INT))
def test_int_to_float_casts_equal_python_rounding_of_every_value(ctx, mode):
    # Whole ranges of the small integer types (exact in the float type, whatever the mode)
    # and INT32 values past 2^24 (rounded by the mode), against exact fractions in Python.
    from fractions import Fraction

    def rounded(v: int, fmt, mode: str) -> float:
        e = max(abs(v).bit_length() - 1, fmt.emin) if v else fmt.emin
        q = Fraction(2) ** (e - fmt.mantissa_bits)
        k = Fraction(v) / q
        lo = math.floor(k)
        frac = k - lo
        up = {"trunc": frac > 0 and v < 0, "floor": False, "ceil": frac > 0,
              "round": frac > Fraction(1, 2) or (frac == Fraction(1, 2) and v > 0),
              "rint": frac > Fraction(1, 2) or (frac == Fraction(1, 2) and lo % 2 == 1)}
        up["none"] = up["rint"]
        r = (lo + (1 if up[mode] else 0)) * q
        return float(r) if abs(r) <= fmt.max_finite else math.copysign(math.inf, v)

    cases = [(pl.INT8, range(-128, 128)), (pl.UINT8, range(0, 256)), (pl.INT16, range(-32768, 32768, 7)),
             (pl.INT32, [2**24 + 1, 2**24 + 3, -(2**24 + 1), 2**31 - 1, -(2**31), 2**25 + 2, 16777217 * 3]),
             # tiles whose values all fit the float type (converted directly), and just past it
             (pl.INT32, range(-(2**24), 2**24 + 1, 2**19 + 1)), (pl.INT32, range(-256, 257)),
             (pl.INT32, [2**24 - 1, 2**24 + 1]), (pl.INT32, [-(2**24 + 1), 5])]
    for int_type, values in cases:
        src = pl.Tile(torch.tensor([list(values)], dtype=torch.int64), int_type)
        for target in (pl.FP32, pl.BF16, pl.FP16):
            got = pl.cast(src, target, mode=mode).data[0].tolist()
            fmt = target.fmt
            want = [rounded(v, fmt, mode) for v in values]
            if mode == "trunc" or mode == "floor":  # past the largest finite value: no inf toward zero
                want = [w if not math.isinf(w) or (mode == "floor" and w < 0) else math.copysign(fmt.max_finite, w)
                        for w in want]
            if mode == "ceil":
                want = [w if not (math.isinf(w) and w < 0) else -fmt.max_finite for w in want]
            assert got == want, (int_type, target, mode)


def test_int_cast_saturates_and_nan_maps_to_zero(ctx):
    out = pl.cast(tile([[300.0, -300.0, float("nan")]]), pl.INT8, mode="rint")
    assert out.data.tolist() == [[127, -128, 0]]


def test_cast_overflow_follows_the_rounding_direction(ctx):
    big = float(torch.finfo(torch.float32).max)  # past the bf16 max and its halfway point to 2^128
    x = pl.Tile(torch.tensor([[big, -big]], dtype=torch.float64), pl.FP32)
    assert pl.cast(x, pl.BF16, mode="rint").data.tolist() == [[math.inf, -math.inf]]
    bf16_max = float(torch.finfo(torch.bfloat16).max)
    assert pl.cast(x, pl.BF16, mode="trunc").data.tolist() == [[bf16_max, -bf16_max]]
    assert pl.cast(x, pl.BF16, mode="floor").data.tolist() == [[bf16_max, -math.inf]]


def test_each_op_rounds_once_to_fp32_like_numpy(ctx):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 64)).astype(np.float32) * np.float32(1e3)
    b = rng.standard_normal((4, 64)).astype(np.float32)
    ta, tb = tile(a.tolist()), tile(b.tolist())
    np.testing.assert_array_equal(pl.add(ta, tb).data.numpy(), (a + b).astype(np.float64))
    np.testing.assert_array_equal(pl.mul(ta, tb).data.numpy(), (a * b).astype(np.float64))
    np.testing.assert_array_equal(pl.div(ta, tb).data.numpy(), (a / b).astype(np.float64))
    np.testing.assert_array_equal(pl.sqrt(pl.maximum(ta, pl.neg(ta))).data.numpy(),
                                  np.sqrt(np.abs(a)).astype(np.float64))
    np.testing.assert_array_equal(pl.recip(tb).data.numpy(), (np.float32(1) / b).astype(np.float64))


def test_no_fused_multiply_add(ctx):
    # a*b + c with a*b rounded first: (1+2^-12)^2 - 1 loses the 2^-24 term in fp32.
    a = tile([[1 + 2.0 ** -12]])
    c = tile([[-1.0]])
    assert pl.add(pl.mul(a, a), c).data.item() == 2.0 ** -11


def test_exp_is_float64_exp_rounded_once(ctx):
    x = np.linspace(-20, 20, 257).astype(np.float32)
    got = pl.exp(tile([x.tolist()])).data.numpy()[0]
    want = np.exp(x.astype(np.float64)).astype(np.float32).astype(np.float64)
    # float64 -> float32 through numpy rounds once (correctly)
    np.testing.assert_array_equal(got, want)


def test_int8_matmul_is_exact_int32(ctx):
    g = torch.Generator().manual_seed(1)
    a = torch.randint(-127, 128, (16, 512), generator=g)
    b = torch.randint(-127, 128, (64, 512), generator=g)
    out = pl.matmul(pl.Tile(a, pl.INT8), pl.Tile(b, pl.INT8), b_trans=True, out_dtype=pl.INT32)
    assert out.dtype is pl.INT32
    assert torch.equal(out.data, a @ b.T)
    acc = pl.matmul_acc(out, pl.Tile(a, pl.INT8), pl.Tile(b, pl.INT8), b_trans=True)
    assert torch.equal(acc.data, 2 * (a @ b.T))


def _np_tree(v):
    v = list(v)
    while len(v) > 1:
        nxt = [np.float32(v[i] + v[i + 1]) for i in range(0, len(v) - 1, 2)]
        if len(v) % 2:
            nxt.append(v[-1])
        v = nxt
    return v[0]


def test_row_sum_order_models_match_explicit_float32_sums():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((2, 448)) * np.exp(3 * rng.standard_normal((2, 448)))).astype(np.float32)
    t = tile(x.tolist())
    results = {}
    for order in ("sequential", "pairwise", "a2a3"):
        with running(RunContext(Options(row_sum_order=order))):
            results[order] = pl.row_sum(t).data[:, 0].numpy()
    for r in range(2):
        seq = np.float32(0)
        seq = x[r, 0]
        for v in x[r, 1:]:
            seq = np.float32(seq + v)
        assert results["sequential"][r] == seq
        assert results["pairwise"][r] == _np_tree(x[r])
        q = [x[r, 64 * k:64 * (k + 1)] for k in range(7)]
        lanes = (((q[0] + q[1]).astype(np.float32) + q[6]).astype(np.float32)
                 + (q[2] + q[3]).astype(np.float32)).astype(np.float32)
        lanes = (lanes + (q[4] + q[5]).astype(np.float32)).astype(np.float32)
        assert results["a2a3"][r] == _np_tree(lanes)
    assert len({float(v[0]) for v in results.values()}) > 1  # the orders really differ here


def test_scratch_and_padding_are_poison_and_unwritten(ctx):
    scratch = pl.create_tensor([4, 8], dtype=pl.FP32)
    assert torch.isnan(scratch.data).all() and not scratch.written.any()
    src = Tensor.from_torch("x", torch.ones(2, 8))
    t = pl.slice(src, [4, 8], [0, 0], valid_shape=[2, 8])
    assert t.valid == (2, 8)
    assert (t.data[:2] == 1).all() and torch.isnan(t.data[2:]).all()
    scratch[0:4, :] = t  # stores only the valid rows
    assert scratch.written[:2].all() and not scratch.written[2:].any()


def test_integer_poison_is_a_seeded_pattern():
    with running(RunContext(Options(seed=1))):
        a = pl.create_tensor([64], dtype=pl.INT32).data
    with running(RunContext(Options(seed=1))):
        b = pl.create_tensor([64], dtype=pl.INT32).data
    with running(RunContext(Options(seed=2))):
        c = pl.create_tensor([64], dtype=pl.INT32).data
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_out_of_range_read_raises_with_this_file_and_line():
    with running(RunContext(Options(out_of_bounds="raise"))):
        t = Tensor.from_torch("x", torch.zeros(4, 4))
        with pytest.raises(OutOfBoundsError) as err:
            t[2:6, :]  # the line reported
    assert "test_tile.py:" in str(err.value) and "x[2:6, 0:4]" in str(err.value)


def test_out_of_range_write_is_recorded_and_clipped(ctx):
    t = Tensor.from_torch("y", torch.zeros(4, 4))
    t[3:5, 0:4] = pl.full([2, 4], dtype=pl.FP32, value=1.0)
    (finding,) = ctx.findings.values()
    assert finding.kind == "oob-write" and finding.tensor == "y" and "test_tile.py:" in finding.site
    assert finding.count == 4
    assert t.data[3].tolist() == [1, 1, 1, 1]


def test_blocks_run_in_a_seeded_shuffled_order():
    def order(seed):
        with running(RunContext(Options(seed=seed))):
            return list(pl.spmd(16))
    assert order(1) == order(1)
    assert sorted(order(1)) == list(range(16))
    assert order(1) != order(2) or order(1) != order(3)
    with running(RunContext(Options(shuffle_blocks=False))):
        assert list(pl.spmd(5)) == [0, 1, 2, 3, 4]


def test_nested_parallel_blocks_race_only_within_a_stage(ctx):
    out = pl.create_tensor([4, 4], dtype=pl.FP32)
    for m in pl.parallel(2):
        for b in pl.spmd(2):
            out[2 * m + b:2 * m + b + 1, :] = pl.full([1, 4], dtype=pl.FP32, value=1.0)
    for b in pl.spmd(4):  # a later stage overwriting is ordered, not a race
        out[b:b + 1, :] = pl.full([1, 4], dtype=pl.FP32, value=2.0)
    assert not ctx.findings
    for b in pl.spmd(2):
        out[0:1, :] = pl.full([1, 4], dtype=pl.FP32, value=3.0)
    assert [f.kind for f in ctx.findings.values()] == ["race"]


def test_mismatched_operand_types_are_rejected(ctx):
    from equiv.tile.errors import KernelError
    with pytest.raises(KernelError, match="cast one first"):
        pl.add(tile([[1.0]]), tile([[1.0]], pl.BF16))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cpu_and_cuda_give_identical_bits():
    x = np.random.default_rng(0).standard_normal((8, 256)).astype(np.float32)
    outs = []
    for dev in ("cpu", "cuda"):
        with running(RunContext(Options(device=dev))):
            t = pl.Tile(torch.tensor(x, dtype=torch.float64, device=dev), pl.FP32)
            y = pl.recip(pl.add(pl.exp(pl.neg(t)), 1.0))
            y = pl.row_sum(pl.mul(pl.sqrt(pl.maximum(t, pl.neg(t))), y))
            outs.append(y.data.cpu())
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("name", ["FP32", "BF16", "FP16"])
def test_nearest_even_rounding_agrees_with_the_numerics_oracle(name):
    from equiv import numerics, rounding
    dtype = getattr(pl, name)
    g = torch.Generator().manual_seed(7)
    wide = torch.randn(20000, dtype=torch.float64, generator=g) * torch.exp2(
        torch.randint(-150, 140, (20000,), generator=g).double())
    raw = torch.randint(-2**62, 2**62, (20000,), generator=g).view(torch.float64)
    specials = torch.tensor([0.0, -0.0, math.inf, -math.inf, math.nan, 3.4e38, 3.5e38, 1e-45, 2.0 ** -133,
                             3 * 2.0 ** -134, 1 + 2.0 ** -8, 1 + 2.0 ** -8 + 2.0 ** -30, 65520.0])
    for x in (wide, raw, specials):
        got = rounding.to_float(x, dtype, "rint")
        want = numerics.round_to(x, numerics.format_of(dtype.torch_dtype))
        same = ((got == want) & (torch.signbit(got) == torch.signbit(want))) | (torch.isnan(got) & torch.isnan(want))
        assert bool(same.all()), x[~same][:4]
