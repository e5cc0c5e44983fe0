"""Sequential loops inside a batched stage whose iterations run as lanes of their own
(`equiv.tile.batch.stages.iterations`): the same bits, masks, writers and findings as one block
and one iteration at a time, and a fall back to iteration by iteration wherever lanes could
differ (memory read after an earlier iteration's store, writes into tiles from before the
loop, patterned poison)."""

import pytest
import torch

from equiv import tile as pl
from equiv.tile import rewrite
from tests.tile.test_batch import C, N, R, both, bf16, run, x_values

ITERS = 3  # rows per block, one per iteration (of R = 4)


def rows_in_iterations(x: pl.Tensor, out: pl.Tensor) -> None:
    for b in pl.spmd(N, name_hint="rows"):
        scale = pl.cast(x[b * R : b * R + 1, :], target_type=pl.FP32)  # a tile from before the loop
        for r in pl.pipeline(b * R, b * R + ITERS, stage=2):
            w = pl.read(x, [r, 0])
            row = pl.add(pl.mul(pl.cast(x[r : r + 1, :], target_type=pl.FP32), w), scale)
            out[r : r + 1, :] = pl.cast(row, target_type=pl.BF16, mode="rint")
        out[b * R + ITERS : b * R + R, :] = pl.cast(scale, target_type=pl.BF16, mode="rint")  # after the loop


def carried_sum(x: pl.Tensor, out: pl.Tensor) -> None:
    for b in pl.spmd(N, name_hint="rows"):
        acc = pl.full([1, C], dtype=pl.FP32, value=0.0)
        for r in pl.range(ITERS):  # acc carries from one iteration to the next: never lanes
            acc = pl.add(acc, pl.cast(x[b * R + r : b * R + r + 1, :], target_type=pl.FP32))
        out[b * R : b * R + 1, :] = pl.cast(acc, target_type=pl.BF16, mode="rint")


def overwrites_in_order(x: pl.Tensor, out: pl.Tensor) -> None:
    # Iteration j writes row j at line A and row j+1 at line B: A of iteration j+1 must
    # overwrite B of iteration j (program order), not the other way round.
    for b in pl.spmd(N, name_hint="rows"):
        for j in pl.range(ITERS - 1):
            r = b * R + j
            out[r : r + 1, :] = pl.cast(pl.add(pl.cast(x[r : r + 1, :], target_type=pl.FP32), 100.0),
                                        target_type=pl.BF16, mode="rint")
            out[r + 1 : r + 2, :] = pl.cast(pl.add(pl.cast(x[r : r + 1, :], target_type=pl.FP32), -100.0),
                                            target_type=pl.BF16, mode="rint")


def writes_outer_tile(x: pl.Tensor, out: pl.Tensor) -> None:
    # The tile carries a sum from one iteration to the next through in-place writes, which
    # no Python name shows.
    for b in pl.spmd(N, name_hint="rows"):
        buf = pl.cast(x[b * R : b * R + 1, :], target_type=pl.FP32)  # one per block (lane axis)
        for j in pl.range(ITERS):
            r = b * R + j
            buf[0:1, :] = pl.add(buf, pl.cast(x[r : r + 1, :], target_type=pl.FP32))
        out[b * R : b * R + 1, :] = pl.cast(buf, target_type=pl.BF16, mode="rint")


def reads_earlier_iteration(x: pl.Tensor, out: pl.Tensor, tmp: pl.Tensor) -> None:
    for b in pl.spmd(N, name_hint="rows"):
        for j in pl.range(ITERS):
            r = b * R + j
            if j == 0:
                tmp[r : r + 1, :] = x[r : r + 1, :]
            else:
                prev = pl.cast(tmp[r - 1 : r, :], target_type=pl.FP32)  # what iteration j-1 stored
                tmp[r : r + 1, :] = pl.cast(pl.add(prev, pl.cast(x[r : r + 1, :], target_type=pl.FP32)),
                                            target_type=pl.BF16, mode="rint")
            out[r : r + 1, :] = tmp[r : r + 1, :]


def partly_valid_loads(x: pl.Tensor, out: pl.Tensor) -> None:
    # Each iteration loads a tile partly outside the rows it wrote: poison per iteration.
    for b in pl.spmd(N, name_hint="rows"):
        for j in pl.range(ITERS):
            r = b * R + j
            t = pl.load(x, [r, 0], [1, C], valid_shape=[1, C // 2])
            out[r : r + 1, :] = pl.cast(pl.cast(t, target_type=pl.FP32), target_type=pl.BF16, mode="rint")


OUT = {"out": ([N * R, C], pl.BF16)}


def _x():
    return bf16(x_values())


def test_independent_iterations_run_as_lanes_with_the_same_bits():
    x = _x()
    ctx, outs = both(rows_in_iterations, {"x": x.to(torch.bfloat16)}, OUT)
    assert ctx.batch_stats == {"batched": 1} and ctx.loop_stats == {"as lanes": 1}
    # values against float64: row r = x[r]·x[r, 0] + x[block's first row], rounded to fp32 then bf16
    xb = x.reshape(N, R, C)
    want = torch.empty(N, R, C, dtype=torch.float64)
    for j in range(ITERS):
        prod = (xb[:, j] * xb[:, j, :1]).to(torch.float32).double()
        want[:, j] = bf16((prod + xb[:, 0]).to(torch.float32).double())
    got = outs["out"].data.double().reshape(N, R, C)
    assert got[:, :ITERS].tolist() == want[:, :ITERS].tolist()
    assert got[:, ITERS].tolist() == xb[:, 0].tolist()  # the outside tile, as it was before the loop


def test_a_loop_that_carries_a_value_is_not_run_as_lanes_and_is_right():
    x = _x()
    ctx, outs = both(carried_sum, {"x": x.to(torch.bfloat16)}, OUT)
    assert ctx.loop_stats == {}
    acc = torch.zeros(N, C, dtype=torch.float32)
    for j in range(ITERS):
        acc = acc + x.reshape(N, R, C)[:, j].to(torch.float32)
    assert outs["out"].data.double().reshape(N, R, C)[:, 0].tolist() == bf16(acc.double()).tolist()


def test_stores_of_iterations_are_applied_in_program_order():
    x = _x()
    ctx, outs = both(overwrites_in_order, {"x": x.to(torch.bfloat16)}, OUT)
    assert ctx.loop_stats == {"as lanes": 1}
    got = outs["out"].data.double().reshape(N, R, C)
    xb = x.reshape(N, R, C)
    for j in range(ITERS - 1):  # row j: line A of iteration j, written after line B of j-1
        assert got[:, j].tolist() == bf16(xb[:, j] + 100.0).tolist()
    assert got[:, ITERS - 1].tolist() == bf16(xb[:, ITERS - 2] - 100.0).tolist()


def test_writes_into_a_tile_from_before_the_loop_run_iteration_by_iteration():
    x = _x()
    ctx, outs = both(writes_outer_tile, {"x": x.to(torch.bfloat16)}, OUT)
    assert ctx.batch_stats == {"batched": 1}
    assert [k.split(": ", 1)[1] for k in ctx.loop_stats] == ["an in-place write into a tile made before the loop"]
    xb = x.reshape(N, R, C).to(torch.float32)
    acc = xb[:, 0]
    for j in range(ITERS):
        acc = acc + xb[:, j]
    assert outs["out"].data.double().reshape(N, R, C)[:, 0].tolist() == bf16(acc.double()).tolist()


def test_an_iteration_reading_an_earlier_iterations_store_is_right():
    x = _x()
    ctx, outs = both(reads_earlier_iteration, {"x": x.to(torch.bfloat16)},
                     {**OUT, "tmp": ([N * R, C], pl.BF16)})
    assert "batched" not in ctx.batch_stats  # the stage reads what it writes: block by block
    xb = x.reshape(N, R, C)
    run_sum = xb[:, 0]
    want = [run_sum]
    for j in range(1, ITERS):
        run_sum = bf16(run_sum + xb[:, j])
        want.append(run_sum)
    assert outs["out"].data.double().reshape(N, R, C)[:, :ITERS].tolist() == torch.stack(want, 1).tolist()


@pytest.mark.parametrize("poison", ["nan", "pattern"])
def test_partly_valid_loads_in_iterations_give_the_same_poison(poison):
    x = _x()
    ctx, outs = both(partly_valid_loads, {"x": x.to(torch.bfloat16)}, OUT, poison=poison)
    if poison == "nan":
        assert ctx.loop_stats == {"as lanes": 1}
    else:  # patterns are drawn per block in order: iteration by iteration
        assert any("patterned poison" in k for k in ctx.loop_stats)
    got = outs["out"].data.double().reshape(N, R, C)
    assert got[:, :ITERS, : C // 2].tolist() == x.reshape(N, R, C)[:, :ITERS, : C // 2].tolist()


def test_one_by_one_runs_never_take_the_lanes_path():
    ctx, _, error = run(rows_in_iterations, {"x": _x().to(torch.bfloat16)}, OUT, False)
    assert error is None and ctx.loop_stats == {}


def _rewritten(fn):
    return rewrite.batched_kernel(fn).__code__.co_names


def test_only_loops_without_python_state_between_iterations_are_rewritten():
    assert "iterations" in _rewritten(rows_in_iterations)
    assert "iterations" not in _rewritten(carried_sum)


def list_from_outside(x: pl.Tensor, out: pl.Tensor) -> None:
    for b in pl.spmd(N, name_hint="rows"):
        scales = [1.0, 2.0]  # a mutable outside object: the iterations could share it
        for j in pl.range(ITERS):
            r = b * R + j
            out[r : r + 1, :] = pl.cast(pl.mul(pl.cast(x[r : r + 1, :], target_type=pl.FP32), scales[1]),
                                        target_type=pl.BF16, mode="rint")


def test_a_mutable_outside_object_keeps_the_iterations_in_order_and_says_so():
    x = _x()
    ctx, outs = both(list_from_outside, {"x": x.to(torch.bfloat16)}, OUT)
    assert [k.split(": ", 1)[1] for k in ctx.loop_stats] == ["a list from outside the loop"]
    got = outs["out"].data.double().reshape(N, R, C)
    assert got[:, :ITERS].tolist() == bf16(2 * x.reshape(N, R, C)[:, :ITERS]).tolist()
