"""The native round-to-nearest-even path of `equiv.rounding.to_float` against the general
(quantum-scaling) path and against integer arithmetic on the bits, on ties, subnormals,
NaN, infinities and overflow."""

from __future__ import annotations

import torch

from equiv import rounding
from equiv.dtypes import BF16, FP16, FP32


def _edge_values() -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    # Random float64 bit patterns over the whole exponent range of the targets and beyond.
    mant = torch.randint(0, 2**52, (20000,), generator=g, dtype=torch.int64)
    exp = torch.randint(1023 - 160, 1023 + 140, (20000,), generator=g, dtype=torch.int64)
    sign = torch.randint(0, 2, (20000,), generator=g, dtype=torch.int64) << 63
    rand = (sign | (exp << 52) | mant).view(torch.float64)
    specials = []
    for target, quantum_bits in ((BF16, 7), (FP16, 10), (FP32, 23)):
        fmt = target.fmt
        for e in (fmt.emin - 1, fmt.emin, 0, 5, fmt.emax):
            q = 2.0 ** (max(e, fmt.emin) - fmt.mantissa_bits)
            base = 2.0 ** max(e, fmt.emin)
            for k in range(4):
                mid = base + (k + 0.5) * q  # exact ties, both parities
                specials += [mid, -mid, mid + q / 1024, mid - q / 1024]
        top = fmt.max_finite
        q = 2.0 ** (fmt.emax - fmt.mantissa_bits)
        specials += [top, top + q / 2, top + q / 2 - q / 4096, top + q, -(top + q / 2), 2.0 ** (fmt.emin - fmt.mantissa_bits - 1),
                     2.0 ** (fmt.emin - fmt.mantissa_bits - 1) * 1.0000001, 2.0 ** (fmt.emin - fmt.mantissa_bits) * 1.5]
    specials += [0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e300, -1e300, 1e-300, -1e-300]
    return torch.cat([rand, torch.tensor(specials, dtype=torch.float64)])


def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    a, b = a.to(torch.float64), b.to(torch.float64)  # (FP32 containers are float32: widening is exact)
    both_nan = torch.isnan(a) & torch.isnan(b)
    return bool(((a.view(torch.int64) == b.view(torch.int64)) | both_nan).all())


def test_fast_path_equals_general_path_for_every_float_target():
    x = _edge_values()
    for dtype in (FP32, BF16, FP16):
        fast = rounding._nearest_even_fast(x, dtype)
        assert fast is not None
        slow = rounding._to_float_general(x, dtype, "rint")
        assert _bits_equal(fast, slow), dtype


def test_bf16_rounding_against_integer_arithmetic_on_float32_bits():
    # For float32 inputs a single RNE to bf16 is integer arithmetic on the bits.
    g = torch.Generator().manual_seed(9)
    bits = torch.randint(-(2**31), 2**31 - 1, (50000,), generator=g, dtype=torch.int64).to(torch.int32)
    f = bits.view(torch.float32)
    f = f[torch.isfinite(f)]
    b = f.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    rne = (b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000
    expect = rne.to(torch.int32).view(torch.float32).to(torch.float64)  # may overflow to inf: right
    got = rounding.to_float(f.to(torch.float64), BF16, "rint")
    assert _bits_equal(got, expect)


def test_ties_go_to_even_and_overflow_goes_to_inf():
    one = torch.tensor([1 + 2.0**-8, 1 + 3 * 2.0**-8, -(1 + 2.0**-8)], dtype=torch.float64)
    assert rounding.to_float(one, BF16).tolist() == [1.0, 1 + 2 * 2.0**-7, -1.0]
    big = torch.tensor([3.4e38, 3.5e38, -1e39], dtype=torch.float64)
    out = rounding.to_float(big, BF16).tolist()
    assert out[1] == float("inf") and out[2] == float("-inf")
    assert rounding.to_float(torch.tensor([65520.0, 65519.0]), FP16).tolist() == [float("inf"), 65504.0]


def test_flush_to_zero_mode_falls_back_to_the_exact_general_path():
    x = torch.tensor([2.0**-130, 3 * 2.0**-135, -(2.0**-129)], dtype=torch.float64)
    expect = rounding._to_float_general(x, BF16, "rint")
    assert expect[0] != 0  # a bf16 subnormal
    if not torch.set_flush_denormal(True):
        return  # this CPU has no flush mode to switch on: nothing to fall back from
    try:
        assert not rounding.refresh_native_probe()
        assert rounding._nearest_even_fast(x, BF16) is None
        assert _bits_equal(rounding.to_float(x, BF16), expect)
    finally:
        torch.set_flush_denormal(False)
        rounding.refresh_native_probe()
    assert rounding.native_conversions_exact(torch.device("cpu"))


def test_fp32_tiles_leave_float32_containers_under_a_flush_mode():
    """FP32 tiles compute in float32 only while native float32 arithmetic keeps subnormals:
    under FTZ/DAZ a subnormal product would flush, so they go back to float64 containers."""
    from equiv import tile as pl
    from equiv.tile.context import RunContext, running
    from equiv.options import Options

    a = torch.tensor([[2.0**-70, 3 * 2.0**-75, 1.5]], dtype=torch.float64)
    b = torch.tensor([[2.0**-70, 2.0**-60, 3.0]], dtype=torch.float64)
    want = [2.0**-140, 3 * 2.0**-135, 4.5]  # fp32 subnormals, exact
    with running(RunContext(Options())):
        assert FP32.container is torch.float32
        got = pl.mul(pl.Tile(a, FP32), pl.Tile(b, FP32))
        assert got.data.dtype is torch.float32 and got.data.tolist() == [want]
    if not torch.set_flush_denormal(True):
        return  # this CPU has no flush mode to switch on
    try:
        with running(RunContext(Options())):  # a run probes the flush mode at its start
            assert FP32.container is torch.float64
            got = pl.mul(pl.Tile(a, FP32), pl.Tile(b, FP32))
            assert got.data.dtype is torch.float64 and got.data.tolist() == [want]
    finally:
        torch.set_flush_denormal(False)
        rounding.refresh_native_probe()
    assert FP32.container is torch.float32


def _values_of(dtype, n: int, seed: int) -> torch.Tensor:
    """`n` values of `dtype` (float64) from random bit patterns of the type: every binade,
    subnormals, the largest finite values, ±0 (NaN and infinities left out: they pass through
    ops unchanged)."""
    g = torch.Generator().manual_seed(seed)
    width = 16
    bits = torch.randint(0, 2**width, (n,), generator=g, dtype=torch.int64)
    x = bits.to(torch.int16).view(dtype.torch_dtype).to(torch.float64)
    return x[torch.isfinite(x)]


def test_bf16_and_fp16_arithmetic_in_float32_containers_is_the_exact_result_rounded_once():
    """BF16 and FP16 tiles compute + - * / natively in float32 and round the float32 result
    once more; float32's 24 bits are >= 2p + 2 for both, so that equals the exact result
    rounded once. Checked against float64 arithmetic (exact for + - *, and >= 2p + 2 bits
    for /) rounded once by `numerics.round_to`, on 200,000 pairs of values of each type
    including subnormals, ties, cancellations and overflow."""
    from equiv import numerics
    from equiv import tile as pl
    from equiv.tile.context import RunContext, running
    from equiv.options import Options

    ops = {"add": (pl.add, torch.add), "sub": (pl.sub, torch.sub), "mul": (pl.mul, torch.mul),
           "div": (pl.div, torch.div)}
    with running(RunContext(Options())):
        for dtype, fmt in ((BF16, numerics.BF16), (FP16, numerics.FP16)):
            assert dtype.container is torch.float32
            a = _values_of(dtype, 200_000, 1)
            b = _values_of(dtype, 200_000, 2)
            n = min(len(a), len(b))
            a, b = a[:n].reshape(1, -1), b[:n].reshape(1, -1)
            b_near = numerics.round_to(a * (1 + 2.0**-6), fmt)  # close operands: cancellation
            for name, (op, exact) in ops.items():
                for x, y in ((a, b), (a, b_near)):
                    got = op(pl.Tile(x, dtype), pl.Tile(y, dtype))
                    assert got.data.dtype is torch.float32
                    want = numerics.round_to(exact(x, y), fmt)
                    assert _bits_equal(got.data, want), (dtype, name)


def test_bf16_and_fp16_tiles_leave_float32_containers_under_a_flush_mode():
    from equiv import tile as pl
    from equiv.tile.context import RunContext, running
    from equiv.options import Options

    tiny = torch.tensor([[2.0**-130, 2.0**-20]], dtype=torch.float64)  # a bf16 / an fp16 subnormal
    if not torch.set_flush_denormal(True):
        return  # this CPU has no flush mode to switch on
    try:
        with running(RunContext(Options())):
            for dtype in (BF16, FP16):
                assert dtype.container is torch.float64
                got = pl.add(pl.Tile(tiny, dtype), pl.Tile(tiny, dtype))
                want = rounding._to_float_general(tiny * 2, dtype, "rint")
                assert got.data.dtype is torch.float64 and _bits_equal(got.data, want)
    finally:
        torch.set_flush_denormal(False)
        rounding.refresh_native_probe()
    assert BF16.container is torch.float32 and FP16.container is torch.float32


def _mm_reference(acc, x, y):
    """Sequential fp32 fold over K in float64 arithmetic, rounded per step (numerics.round_to)."""
    from equiv import numerics

    out = None if acc is None else acc.clone()
    for k in range(x.shape[-1]):
        p = numerics.round_to(x[..., :, k : k + 1] * y[..., k : k + 1, :], numerics.FP32)
        out = p if out is None else numerics.round_to(out + p, numerics.FP32)
    return out


def test_native_fp32_matmul_fold_is_the_sequential_fold():
    import importlib

    mm = importlib.import_module("equiv.tile.matmul")

    g = torch.Generator().manual_seed(3)
    for dtype in (BF16, FP32):
        for batch, y_batch in (((), ()), ((3,), (3,)), ((3,), ()), ((2, 1), (3,))):  # lanes on one side too
            x = rounding.to_float(torch.randn(*batch, 5, 37, generator=g, dtype=torch.float64) * 1e3, dtype)
            y = rounding.to_float(torch.randn(*y_batch, 37, 6, generator=g, dtype=torch.float64), dtype)
            x[..., 0, 3] = 2.0**-70  # products in the fp32 subnormal range
            y[..., 3, :] = 2.0**-70
            x[..., 1, 4] = 3e38  # overflow to inf mid-fold, then inf - inf = NaN
            y[..., 4, 0] = 2.0
            y[..., 5, 0] = -2.0
            x[..., 1, 5] = 3e38
            # operands hold values of their type, as every tile container does
            x, y = rounding.to_float(x, dtype), rounding.to_float(y, dtype)
            out_batch = torch.broadcast_shapes(batch, y_batch)
            acc = rounding.to_float(torch.randn(*out_batch, 5, 6, generator=g, dtype=torch.float64), FP32)
            for start in (None, acc):
                want = _mm_reference(start, x, y)
                old_chunk = mm._MM_CHUNK_ELEMENTS
                try:
                    for chunk in (old_chunk, 40):  # one block and many K chunks
                        mm._MM_CHUNK_ELEMENTS = chunk
                        got = mm._mm_fp32_native(start, x, y)
                        assert _bits_equal(got, want), (dtype, batch, chunk)
                finally:
                    mm._MM_CHUNK_ELEMENTS = old_chunk


def test_global_tensors_store_the_narrowest_exact_dtype_and_load_wide():
    from equiv.dtypes import INT8
    from equiv.tile.context import RunContext, running
    from equiv.tile.memory import Tensor
    from equiv.options import Options

    with running(RunContext(Options())):
        w = Tensor.from_torch("w", torch.tensor([[-128, 127], [5, -7]], dtype=torch.int8))
        assert w.data.dtype == torch.int8 and w.writer.dtype == torch.int32
        assert w.load(((0, 2), (0, 2))).dtype == torch.int64
        assert w.load(((0, 2), (0, 2))).tolist() == [[-128, 127], [5, -7]]
        b = Tensor.from_torch("b", torch.tensor([1 + 2.0**-7, -3.0e38], dtype=torch.bfloat16))
        assert b.data.dtype == torch.float32
        assert b.load(((0, 2),)).dtype == BF16.container
        assert b.load(((0, 2),)).tolist() == [1 + 2.0**-7, float(torch.tensor(-3.0e38, dtype=torch.bfloat16))]
        out = Tensor("out", [3], BF16)  # poison NaN, stored narrow
        assert out.data.dtype == torch.float32 and torch.isnan(out.data).all()
        # a container value (exactly a bf16 value) stored and read back unchanged
        v = rounding.to_float(torch.tensor([1.0e-40, 3.5, -2.0**-133], dtype=torch.float64), BF16)
        out.store(((0, 3),), v)
        assert _bits_equal(out.load(((0, 3),)), v) and out.written.all()
        assert INT8.storage == torch.int8 and BF16.storage == torch.float32


def test_writer_map_is_made_on_first_use_and_shared_by_shallow_copies():
    from equiv.tile.context import RunContext, running
    from equiv.tile.memory import Tensor
    from equiv.options import Options

    with running(RunContext(Options())) as ctx:
        w = Tensor.from_torch("w", torch.zeros(4, 4, dtype=torch.int8))
        assert w.__dict__["_writer_box"][0] is None  # a read-only input costs no writer map
        w.load(((0, 4), (0, 4)))
        assert w.__dict__["_writer_box"][0] is None
        copy = Tensor.__new__(Tensor)
        copy.__dict__.update(w.__dict__)  # how rank-local handles of a host tensor are made
        with ctx.block(ctx.new_stage(), 0, "b"):
            copy.store(((0, 1), (0, 4)), torch.ones(1, 4, dtype=torch.int64))
        assert w.writer is copy.writer and (w.writer[0] > 0).all() and (w.writer[1:] == -1).all()
        view = Tensor.__new__(Tensor)
        view.__dict__.update(w.__dict__)
        view.writer = w.writer.view(16)  # a reshaped view assigns its own map of the same memory
        assert w.writer.shape == (4, 4) and view.writer.shape == (16,)


def test_fp32_containers_convert_to_bf16_and_fp16_as_the_general_path_rounds():
    # Every value an FP32 tile can hold, in its float32 container: the edge values rounded to
    # fp32 (ties of bf16/fp16, subnormals of both, values past their largest finite value, ±0,
    # ±inf, NaN) and random fp32 bit patterns. One native conversion rounds them.
    g = torch.Generator().manual_seed(11)
    bits = torch.randint(-(2**31), 2**31 - 1, (50000,), generator=g, dtype=torch.int64).to(torch.int32)
    x = torch.cat([_edge_values().to(torch.float32), bits.view(torch.float32)])
    assert FP32.container is torch.float32
    for dtype in (BF16, FP16):
        for mode in ("rint", "none"):
            got = rounding.convert(x, dtype, mode)
            assert got.dtype is dtype.container
            assert _bits_equal(got, rounding._to_float_general(x.to(torch.float64), dtype, "rint")), dtype
    assert _bits_equal(rounding.convert(x, FP32, "rint"), x)  # already fp32 values: unchanged


def test_integer_wrap_is_twos_complement_modular_arithmetic_for_every_type():
    """`wrap_int` against Python's modular arithmetic, on the edges of every integer type."""
    from equiv.dtypes import ALL

    g = torch.Generator().manual_seed(5)
    for dtype in ALL.values():
        if dtype.is_float:
            continue
        lo, hi = dtype.int_range
        span = hi - lo + 1
        edges = [lo, hi, lo - 1, hi + 1, 0, -1, 1, lo - span, hi + span, 3 * lo - 7, 5 * hi + 3]
        values = [v for v in edges if -(2**62) <= v < 2**62]
        values += torch.randint(-(2**62), 2**62, (200,), generator=g).tolist()
        got = rounding.wrap_int(torch.tensor(values, dtype=torch.int64), dtype).tolist()
        want = values if span >= 2**64 else [(v - lo) % span + lo for v in values]
        assert got == want, dtype


def test_vector_conversion_probe_expects_the_exact_roundings_and_its_verdict_gates_the_fast_path(monkeypatch):
    # The probe's inputs are ties between subnormal neighbours: their exact roundings (by
    # `numerics.round_to`, not by a conversion) are what it expects the conversions to give.
    from equiv import numerics

    bf16_tie = torch.tensor([3 * 2.0**-134], dtype=torch.float64)
    fp16_tie = torch.tensor([3 * 2.0**-25], dtype=torch.float64)
    assert numerics.round_to(bf16_tie, numerics.BF16).item() == 2.0**-132
    assert numerics.round_to(fp16_tie, numerics.FP16).item() == 2.0**-23
    x = torch.tensor([1 + 2.0**-8, 3 * 2.0**-134], dtype=torch.float64)
    want = rounding._to_float_general(x, BF16, "rint")
    monkeypatch.setattr(rounding, "_VECTOR_CONVERSIONS_EXACT", False)
    try:
        assert not rounding.refresh_native_probe()  # a machine whose vector conversions flush
        assert rounding._nearest_even_fast(x, BF16) is None and BF16.container is torch.float64
        assert _bits_equal(rounding.to_float(x, BF16), want)
    finally:
        monkeypatch.undo()
        rounding.refresh_native_probe()
    assert rounding.native_conversions_exact(torch.device("cpu")) == rounding._VECTOR_CONVERSIONS_EXACT
