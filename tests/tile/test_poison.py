"""Patterned poison (`RunContext.poison`): a function of the seed, the drawing block and its
count of earlier patterns — a window of a per-dtype table of SplitMix64 values, checked
against SplitMix64 computed here with Python integers — and the same for a block whether the
stage runs batched or one block at a time."""

import pytest
import torch

from equiv import tile as pl
from equiv.dtypes import BF16, FP32, INT8, INT32
from equiv.tile.poison import PATTERN_PERIOD, poison_pattern
from equiv.tile.context import RunContext, running
from equiv.tile.memory import Tensor
from equiv.options import Options
from tests.tile.test_batch import C, N, R, both, x_values

M64 = 2**64 - 1


def splitmix64(i: int) -> int:
    x = (i * 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


@pytest.mark.parametrize("key", [0, 1, -5, 2**62 + 12345, -(2**63)])
def test_integer_pattern_is_splitmix64_of_key_and_index_reduced_to_the_range(key):
    for dtype, (lo, hi) in ((INT8, (-128, 127)), (INT32, (-(2**31), 2**31 - 1))):
        got = poison_pattern((3, 5), dtype, key).flatten().tolist()
        want = [lo + (splitmix64(_position(key, i)) >> 11) % (hi - lo + 1) for i in range(15)]
        assert got == want


def _position(key: int, i: int) -> int:
    # draws read the table from key mod period on, wrapping around
    return (key % PATTERN_PERIOD + i) % PATTERN_PERIOD


def test_a_draw_longer_than_the_rest_of_the_table_wraps_around():
    key = PATTERN_PERIOD - 3
    got = poison_pattern((2, 4), INT8, key).flatten().tolist()
    assert got == [-128 + (splitmix64(_position(key, i)) >> 11) % 256 for i in range(8)]


@pytest.mark.parametrize("key", [7, -99, 2**40])
def test_float_pattern_is_a_finite_value_over_sixteen_binades_rounded_to_the_type(key):
    for dtype in (FP32, BF16):
        got = poison_pattern((64,), dtype, key).tolist()
        for i, value in enumerate(got):
            bits = splitmix64(_position(key, i))
            mant = 1.0 + (bits >> 11) * 2.0**-53
            sign = 1.0 if bits & 1 else -1.0
            exp = ((bits >> 1) & 0x3FF) % 17 - 8
            exact = sign * mant * 2.0**exp
            want = torch.tensor(exact, dtype=torch.float64).to(dtype.torch_dtype).item() \
                if dtype is FP32 else _bf16_nearest_even(exact)
            assert value == want, (dtype, i)


def _bf16_nearest_even(v: float) -> float:
    # float64 -> bf16 by integer arithmetic on the float64 bits (8 significant bits kept)
    import struct

    bits = struct.unpack("<q", struct.pack("<d", v))[0]
    drop = 45
    low = bits & ((1 << drop) - 1)
    kept = bits >> drop
    half = 1 << (drop - 1)
    if low > half or (low == half and kept & 1):
        kept += 1
    return struct.unpack("<d", struct.pack("<q", kept << drop))[0]


def test_patterns_differ_by_block_and_by_draw_and_repeat_for_the_same_seed():
    def draws(seed):
        ctx = RunContext(Options(seed=seed, poison="pattern"))
        out = []
        with running(ctx):
            stage = ctx.new_stage()
            for b in range(2):
                with ctx.block(stage, b, "s"):
                    out += [ctx.poison((4,), INT32), ctx.poison((4,), INT32)]
        return out

    a, b = draws(3), draws(3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert len({tuple(x.tolist()) for x in a}) == 4  # two blocks x two draws, all different
    assert not torch.equal(draws(4)[0], a[0])


def per_block_slices(x: pl.Tensor, out: pl.Tensor) -> None:
    # Each block loads a partly valid int8 tile (its own poison in the last row) and declares
    # it all valid: the output's last rows are each block's poison pattern.
    for b in pl.spmd(N, name_hint="rows"):
        t = pl.slice(x, [R, C], [b * R, 0], valid_shape=[R - 1, C])
        out[b * R : b * R + R, :] = pl.set_validshape(t, R, C)


def same_window_every_block(x: pl.Tensor, out: pl.Tensor) -> None:
    # The slice is the same for every block (made once for all of them) but its poison is
    # each block's own: the op runs again per block.
    for b in pl.spmd(N, name_hint="rows"):
        t = pl.slice(x, [R, C], [0, 0], valid_shape=[R - 1, C])
        out[b * R : b * R + R, :] = pl.set_validshape(t, R, C)


@pytest.mark.parametrize("kernel", [per_block_slices, same_window_every_block])
def test_blocks_draw_the_same_poison_batched_and_one_by_one(kernel):
    x = (x_values() * 4).to(torch.int8)
    ctx, outs = both(kernel, {"x": x}, {"out": ([N * R, C], INT8)}, poison="pattern")
    assert ctx.batch_stats == {"batched": 1}
    last_rows = outs["out"].data.reshape(N, R, C)[:, R - 1]
    assert len({tuple(r.tolist()) for r in last_rows}) == N  # each block its own pattern


def test_a_scratch_tensor_allocated_by_each_block_still_runs_one_by_one():
    def scratch(x: pl.Tensor, out: pl.Tensor) -> None:
        for b in pl.spmd(N, name_hint="rows"):
            tmp = pl.create_tensor([R, C], dtype=pl.INT8)
            tmp[0:R, :] = pl.slice(x, [R, C], [b * R, 0])
            out[b * R : b * R + R, :] = tmp[0:R, :]

    x = (x_values() * 4).to(torch.int8)
    ctx, outs = both(scratch, {"x": x}, {"out": ([N * R, C], INT8)}, poison="pattern")
    assert "batched" not in ctx.batch_stats
    assert torch.equal(outs["out"].data, x)


def test_outputs_start_as_the_pattern_of_the_kernel_body():
    ctx = RunContext(Options(seed=2, poison="pattern"))
    with running(ctx):
        t = Tensor("t", [2, 3], INT32)
    assert torch.equal(t.data.to(torch.int64), poison_pattern((2, 3), INT32, _root_key(2)))


def _root_key(seed: int) -> int:
    from equiv.tile.poison import pattern_key

    return pattern_key(seed, (), 0)
