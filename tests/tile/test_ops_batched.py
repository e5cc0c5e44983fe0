"""Compute ops on tiles that carry a leading batch dimension give, slice for slice, what they
give on each unbatched tile (ops index from the end), for the batched executor."""

import random

import pytest
import torch

from equiv import tile as pl


def fp32(shape, seed):
    g = torch.Generator().manual_seed(seed)
    # few distinct values, so ties, maxima and sort orders are exercised
    return torch.randint(-3, 4, shape, generator=g).to(torch.float64) * 0.75


def batched(fn, *stacks):
    """fn on the stacked tiles, and torch.stack of fn on each slice."""
    whole = fn(*[pl.Tile(s, dt) for s, dt in stacks])
    parts = [fn(*[pl.Tile(s[b], dt) for s, dt in stacks]) for b in range(stacks[0][0].shape[0])]
    return whole, parts


CASES = {
    "add": (lambda a, b: pl.add(a, b), 2),
    "cmp": (lambda a, b: pl.cmp(a, b, cmp_type=4), 2),
    "maximum": (lambda a, b: pl.maximum(a, b), 2),
    "row_sum": (lambda a: pl.row_sum(a), 1),
    "col_sum": (lambda a: pl.col_sum(a), 1),
    "col_sum_tree": (lambda a: pl.col_sum(a, a), 1),
    "col_max": (lambda a: pl.col_max(a), 1),
    "row_argmax": (lambda a: pl.row_argmax(a), 1),
    "row_expand_mul": (lambda a: pl.row_expand_mul(a, pl.row_max(a)), 1),
    "col_expand_expdif": (lambda a: pl.col_expand_expdif(a, pl.col_max(a)), 1),
    "gather_mask": (lambda a: pl.gather(a, mask_pattern=pl.tile.MaskPattern.P1010), 1),
    "concat": (lambda a, b: pl.concat(a, b), 2),
    "transpose": (lambda a: pl.transpose(a, -2, -1), 1),
    "matmul": (lambda a, b: pl.matmul(a, pl.transpose(b, -2, -1)), 2),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_batched_equals_per_slice(ctx, name):
    fn, arity = CASES[name]
    stacks = [(fp32([3, 4, 32], seed), pl.FP32) for seed in range(arity)]
    whole, parts = batched(fn, *stacks)
    assert whole.data.tolist() == torch.stack([p.data for p in parts]).tolist()
    assert whole.dtype == parts[0].dtype


def test_batched_sort_pipeline_and_flat_gather(ctx):
    vals = fp32([2, 1, 256], 9)
    idx = torch.arange(256).expand(2, 1, 256).clone()
    whole, parts = batched(lambda v, i: pl.mrgsort(pl.sort32(v, i), block_len=64), (vals, pl.FP32), (idx, pl.UINT32))
    assert whole.data.tolist() == torch.stack([p.data for p in parts]).tolist()
    flat = torch.tensor([random.Random(b).sample(range(128), 8) for b in range(2)]).reshape(2, 1, 8)
    src = fp32([2, 4, 32], 4)
    whole, parts = batched(lambda s, i: pl.tile.gather(s, i, i), (src, pl.FP32), (flat, pl.INT32))
    assert whole.data.tolist() == torch.stack([p.data for p in parts]).tolist()


# ---------------------------------------------------------------------------------------
# Integer matmul: exact at the edge of the float32 shortcut (K·128·128 ≤ 2^24)
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1023, 1024, 1025, 2048])
@pytest.mark.parametrize("fill", ["min", "max", "odd", "random"])
def test_int8_matmul_equals_python_integer_sums_at_the_float32_bound(ctx, k, fill):
    from equiv.tile.matmul import _int_product

    gen = torch.Generator().manual_seed(k)
    if fill == "min":  # every product 16384: the partial sums reach K·2^14 (2^24 at K = 1024)
        a, b = torch.full((2, k), -128), torch.full((k, 3), -128)
    elif fill == "max":
        a, b = torch.full((2, k), 127), torch.full((k, 3), -128)
    elif fill == "odd":  # odd products: partial sums past 2^24 would round in float32
        a, b = torch.full((2, k), 127), torch.full((k, 3), 127)
    else:
        a, b = torch.randint(-128, 128, (2, k), generator=gen), torch.randint(-128, 128, (k, 3), generator=gen)
    got = _int_product(a, b, pl.INT8, pl.INT8)
    want = [[sum(int(a[i, j]) * int(b[j, c]) for j in range(k)) for c in range(3)] for i in range(2)]
    assert got.tolist() == want
    # past the bound the float32 sum of 1025 products of 2^14 would round: float64 is used
    tile = pl.matmul(pl.Tile(a.to(torch.int64), pl.INT8), pl.Tile(b.to(torch.int64), pl.INT8), out_dtype=pl.INT32)
    wrapped = [[(v + 2**31) % 2**32 - 2**31 for v in row] for row in want]
    assert tile.data.tolist() == wrapped


@pytest.mark.parametrize("dtype", [pl.INT16, pl.INT32, pl.UINT32, pl.INT64])
def test_integer_matmul_of_wide_types_equals_python_integer_sums(ctx, dtype):
    # Operands pass through int32 on the way to float only where the type's values fit it:
    # UINT32's upper half and INT64 must not wrap there.
    from equiv.tile.matmul import _int_product

    lo, hi = dtype.int_range
    lo, hi = max(lo, -(2**40)), min(hi, 2**40)  # float64 holds every partial sum exactly below 2^53
    a = torch.tensor([[lo, hi, 1], [hi - 1, 0, lo + 1]], dtype=torch.int64)
    b = torch.tensor([[1, 0], [1, 3], [-1, 7]], dtype=torch.int64)
    got = _int_product(a, b, dtype, pl.INT8)
    want = [[sum(int(a[i, j]) * int(b[j, c]) for j in range(3)) for c in range(2)] for i in range(2)]
    assert got.tolist() == want
