"""Matmul in a batched stage with operands of different rank per block (the form of
DeepSeek-V4's `wo_a` projection: a [T, K] activation tile by a [1, N, K] weight slice whose
group is the block's): the stage runs batched, one block's product per lane, and gives the
bits of running the blocks one at a time. Broadcast from the end as they come, the lane axis
would meet the weight's batch axis of 1 and every block would multiply every other block's
weights (a lanes-times larger fold, then a tile of the wrong shape and a fall-back)."""

import torch

from equiv import tile as pl
from equiv.tile.values import Tile
from tests.tile.test_batch import C, N, R, both

matmul = __import__("importlib").import_module("equiv.tile.matmul")


def group_projection(x: pl.Tensor, w: pl.Tensor, out: pl.Tensor) -> None:
    for b in pl.spmd(N, name_hint="proj"):
        xa = x[b * R : b * R + R, 0:C]
        wa = w[b : b + 1, 0:R, 0:C]
        acc = pl.matmul(xa, wa, b_trans=True, out_dtype=pl.FP32)
        acc = pl.matmul_acc(acc, xa, wa, b_trans=True)
        out[b * R : b * R + R, 0:R] = pl.reshape(acc, [R, R])


def shared_step(x: pl.Tensor, w: pl.Tensor, out: pl.Tensor) -> None:
    # the sum carries the lane axis; the second product's operands are the same for every block
    for b in pl.spmd(N, name_hint="proj"):
        acc = pl.matmul(x[b * R : b * R + R, 0:C], w[0:R, 0:C], b_trans=True, out_dtype=pl.FP32)
        acc = pl.matmul_acc(acc, x[0:R, 0:C], w[0:R, 0:C], b_trans=True)
        out[b * R : b * R + R, 0:R] = acc


def int8_group_projection(x: pl.Tensor, w: pl.Tensor, out: pl.Tensor) -> None:
    for b in pl.spmd(N, name_hint="proj"):
        acc = pl.matmul(x[b * R : b * R + R, 0:C], w[b : b + 1, 0:R, 0:C], b_trans=True)
        out[b * R : b * R + R, 0:R] = pl.reshape(acc, [R, R])


def _operands(seed: int, w_shape, dtype=torch.bfloat16):
    g = torch.Generator().manual_seed(seed)
    if dtype is torch.int8:
        return (torch.randint(-128, 128, (N * R, C), generator=g, dtype=torch.int8),
                torch.randint(-128, 128, w_shape, generator=g, dtype=torch.int8))
    return torch.randn(N * R, C, generator=g).to(dtype), torch.randn(*w_shape, generator=g).to(dtype)


def test_group_projection_runs_batched_with_the_bits_of_one_block_at_a_time():
    x, w = _operands(1, (N, R, C))
    ctx, outs = both(group_projection, {"x": x, "w": w}, {"out": ([N * R, R], pl.FP32)})
    assert ctx.batch_stats == {"batched": 1}, ctx.batch_stats  # not a fall-back
    want = torch.cat([2 * (x[b * R:b * R + R].double() @ w[b].double().T) for b in range(N)])
    assert torch.allclose(outs["out"].data.double(), want, rtol=1e-5, atol=1e-5)


def test_a_lane_sum_with_a_shared_product_runs_batched():
    x, w = _operands(2, (N * R, C))
    ctx, outs = both(shared_step, {"x": x, "w": w}, {"out": ([N * R, R], pl.FP32)})
    assert ctx.batch_stats == {"batched": 1}, ctx.batch_stats
    shared = x[:R].double() @ w[:R].double().T
    want = torch.cat([x[b * R:b * R + R].double() @ w[:R].double().T + shared for b in range(N)])
    assert torch.allclose(outs["out"].data.double(), want, rtol=1e-5, atol=1e-5)


def test_int8_group_projection_runs_batched_exactly():
    x, w = _operands(3, (N, R, C), torch.int8)
    ctx, outs = both(int8_group_projection, {"x": x, "w": w}, {"out": ([N * R, R], pl.INT32)})
    assert ctx.batch_stats == {"batched": 1}, ctx.batch_stats
    want = torch.cat([x[b * R:b * R + R].long() @ w[b].long().T for b in range(N)])
    assert torch.equal(outs["out"].data.long(), want)


def test_int8_matmul_valid_shape_has_the_broadcast_batch_axes(ctx):
    """Outside a stage: [M, K] by [1, K, N] is a [1, M, N] tile, valid all of it (a valid
    shape of rank 2 on a rank-3 container would read as a lane axis)."""
    x = Tile(torch.ones(4, 8, dtype=torch.int64), pl.INT8)
    w = Tile(torch.ones(1, 8, 3, dtype=torch.int64), pl.INT8)
    got = matmul.matmul(x, w)
    assert tuple(got.data.shape) == (1, 4, 3) and got.valid == (1, 4, 3)
    assert torch.equal(got.data, torch.full((1, 4, 3), 8))
