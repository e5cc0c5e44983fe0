"""A batched stage's deferred stores written at once (`equiv.tile.batch._bulk_plan`): through
one view of a grid of windows, or element by element for scattered windows, and only where
that writes exactly what replaying the blocks one by one writes — the same bits, written-
masks, last writers and findings. Where it could differ (an element stored twice, a store
out of range, an earlier writer that races) the stores replay block by block.
"""

import pytest
import torch

from equiv import tile as pl
from equiv.tile.context import RunContext, running
from equiv.tile.memory import Tensor
from equiv.observe.cachelines import CacheLineObserver
from equiv.options import Options
from equiv.tile import rewrite
from equiv.tile.batch import deferred as _deferred, grids as _grids, wrapping as _wrapping
from tests.tile.test_batch import C, N, R, both, x_values

WIDE = {"out": ([R, 3 * N * C], pl.BF16)}
ROWS = {"out": ([N * (N + 1) // 2 + R, C], pl.BF16)}
OUT = {"out": ([N * R, C], pl.BF16)}


@pytest.fixture
def at_once(monkeypatch):
    """Records, per finished batched stage, whether its stores were written at once."""
    seen: list[bool] = []
    plan = _deferred._bulk_plan

    def spy(*args, **kwargs):
        got = plan(*args, **kwargs)
        seen.append(got is not None)
        return got
    monkeypatch.setattr(_deferred, "_bulk_plan", spy)
    return seen


def x_wide():
    return (torch.arange(R * 3 * N * C, dtype=torch.float32).reshape(R, 3 * N * C) / 5 - 7).to(torch.bfloat16)


def tiled_rows(x: pl.Tensor, out: pl.Tensor) -> None:
    for b in pl.spmd(N, name_hint="rows"):
        t = pl.cast(x[b * R : b * R + R, :], target_type=pl.FP32)
        out[b * R : b * R + R, :] = pl.cast(pl.mul(t, 3.0), target_type=pl.BF16, mode="rint")


def strided_columns(x: pl.Tensor, out: pl.Tensor) -> None:
    # Block b writes columns [3bC, 3bC + C): windows on a grid with gaps between them.
    for b in pl.spmd(N, name_hint="cols"):
        c0 = b * 3 * C
        t = pl.cast(x[:, c0 : c0 + C], target_type=pl.FP32)
        out[:, c0 : c0 + C] = pl.cast(pl.add(t, 1.0), target_type=pl.BF16, mode="rint")


def scattered_rows(x: pl.Tensor, out: pl.Tensor) -> None:
    # Block b writes row b(b+1)/2: unevenly spaced windows (no grid), none shared.
    for b in pl.spmd(N, name_hint="rows"):
        r = b * (b + 1) // 2
        t = pl.cast(x[b * R : b * R + 1, :], target_type=pl.FP32)
        out[r : r + 1, :] = pl.cast(pl.sub(t, 2.0), target_type=pl.BF16, mode="rint")


def stored_by_lane(x: pl.Tensor, out: pl.Tensor) -> None:
    # pl.store with per-block offsets runs per lane: one deferred store per block.
    for b in pl.spmd(N, name_hint="rows"):
        t = pl.load(x, [b * R, 0], [R, C])
        pl.store(t, [b * R, 0], out)


def partly_valid(x: pl.Tensor, out: pl.Tensor) -> None:
    # Only the first R - 1 rows of each block's tile are valid: the last row stays unwritten.
    for b in pl.spmd(N, name_hint="rows"):
        t = pl.load(x, [b * R, 0], [R, C], valid_shape=[R - 1, C])
        out[b * R : b * R + R, :] = t


def overlapping_rows(x: pl.Tensor, out: pl.Tensor) -> None:
    # Block b writes rows [b, b + R): neighbours share rows, a race.
    for b in pl.spmd(N, name_hint="rows"):
        t = pl.cast(x[b : b + R, :], target_type=pl.FP32)
        out[b : b + R, :] = pl.cast(t, target_type=pl.BF16, mode="rint")


def twice_per_block(x: pl.Tensor, out: pl.Tensor) -> None:
    # Each block writes its rows twice: program order decides (the second store wins).
    for b in pl.spmd(N, name_hint="rows"):
        t = pl.cast(x[b * R : b * R + R, :], target_type=pl.FP32)
        out[b * R : b * R + R, :] = pl.cast(t, target_type=pl.BF16, mode="rint")
        out[b * R : b * R + R, :] = pl.cast(pl.mul(t, 2.0), target_type=pl.BF16, mode="rint")


def nested_in_outer_blocks(x: pl.Tensor, out: pl.Tensor) -> None:
    # The outer stage runs one block at a time (its body holds a stage); each outer block's
    # inner stage writes the same rows: outer blocks 0 and 1 race, which only the earlier
    # writer's block shows.
    for o in pl.parallel(2, name_hint="outer"):
        for b in pl.spmd(N, name_hint="rows"):
            t = pl.cast(x[b * R : b * R + R, :], target_type=pl.FP32)
            out[b * R : b * R + R, :] = pl.cast(pl.add(t, o), target_type=pl.BF16, mode="rint")


def two_stages(x: pl.Tensor, out: pl.Tensor) -> None:
    # The second stage overwrites what the first wrote: stages are ordered, no race.
    for b in pl.spmd(N, name_hint="first"):
        t = pl.cast(x[b * R : b * R + R, :], target_type=pl.FP32)
        out[b * R : b * R + R, :] = pl.cast(t, target_type=pl.BF16, mode="rint")
    for b in pl.spmd(N, name_hint="second"):
        t = pl.cast(x[b * R : b * R + R, :], target_type=pl.FP32)
        out[b * R : b * R + R, :] = pl.cast(pl.neg(t), target_type=pl.BF16, mode="rint")


def interleaved_extents(x: pl.Tensor, out: pl.Tensor) -> None:
    # Block b writes columns [3bC, 3bC + 2C) and then [3bC + 2C, 3bC + 3C): two grids of
    # different extents whose bounding boxes overlap, though no element is stored twice.
    for b in pl.spmd(N, name_hint="cols"):
        c0 = b * 3 * C
        t = pl.cast(x[:, c0 : c0 + 3 * C], target_type=pl.FP32)
        out[:, c0 : c0 + 2 * C] = pl.cast(pl.add(t[:, 0 : 2 * C], 1.0), target_type=pl.BF16, mode="rint")
        out[:, c0 + 2 * C : c0 + 3 * C] = pl.cast(pl.mul(t[:, 2 * C : 3 * C], 2.0), target_type=pl.BF16,
                                                  mode="rint")


def interleaved_extents_sharing_a_column(x: pl.Tensor, out: pl.Tensor) -> None:
    # As above, but the second window starts one column early: that column is stored twice
    # per block, and program order decides (the second store wins).
    for b in pl.spmd(N, name_hint="cols"):
        c0 = b * 3 * C
        t = pl.cast(x[:, c0 : c0 + 3 * C], target_type=pl.FP32)
        out[:, c0 : c0 + 2 * C] = pl.cast(pl.add(t[:, 0 : 2 * C], 1.0), target_type=pl.BF16, mode="rint")
        out[:, c0 + 2 * C - 1 : c0 + 3 * C] = pl.cast(pl.mul(t[:, 2 * C - 1 : 3 * C], 2.0),
                                                      target_type=pl.BF16, mode="rint")


SPREAD = {"out": ([2 * N * N, C], pl.BF16)}


def grid_and_scattered_rows(x: pl.Tensor, out: pl.Tensor, odd: int) -> None:
    # Block b writes half of row 2b (a grid) and all of row 2b² + odd (scattered: written
    # element by element). With odd = 1 the second rows are odd and no element is stored
    # twice, though the two writes' bounding boxes overlap; with odd = 0 block 0 stores half
    # of row 0 twice and blocks 2 and 4 both store half of row 8 (a race).
    for b in pl.spmd(N, name_hint="rows"):
        t = pl.cast(x[b * R : b * R + 1, :], target_type=pl.FP32)
        out[2 * b : 2 * b + 1, 0 : C // 2] = pl.cast(pl.add(t[:, 0 : C // 2], 1.0), target_type=pl.BF16,
                                                     mode="rint")
        r = 2 * b * b + odd
        out[r : r + 1, :] = pl.cast(pl.mul(t, 2.0), target_type=pl.BF16, mode="rint")


def bf16(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).to(torch.float64)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_windows_tiling_a_box_are_written_at_once_with_the_same_bits_masks_and_writers(at_once, seed):
    x = x_values().to(torch.bfloat16)
    ctx, outs = both(tiled_rows, {"x": x}, OUT, seed=seed)
    assert at_once[0] is True and ctx.batch_stats == {"batched": 1}
    assert torch.equal(outs["out"].data.double(), bf16(x.double() * 3))
    # each row's last writer is the block that owns it
    tokens = outs["out"].writer[::R, 0].tolist()
    assert [ctx.nodes[t].block for t in tokens] == list(range(N))


def test_evenly_spaced_windows_with_gaps_leave_the_gaps_unwritten(at_once):
    x = x_wide()
    ctx, outs = both(strided_columns, {"x": x}, WIDE)
    assert at_once[0] is True
    out = outs["out"]
    cols = torch.zeros(3 * N * C, dtype=torch.bool)
    for b in range(N):
        cols[3 * b * C : 3 * b * C + C] = True
    assert torch.equal(out.written, cols.expand(R, -1))
    assert torch.equal(out.data.double()[:, cols], bf16(x.double() + 1)[:, cols])


def test_scattered_windows_are_written_element_by_element(at_once):
    x = x_values().to(torch.bfloat16)
    ctx, outs = both(scattered_rows, {"x": x}, ROWS)
    assert at_once[0] is True
    out = outs["out"]
    rows = [b * (b + 1) // 2 for b in range(N)]
    assert sorted(torch.nonzero(out.written[:, 0]).flatten().tolist()) == rows
    for b, r in enumerate(rows):
        assert torch.equal(out.data.double()[r], bf16(x.double()[b * R] - 2))


def test_per_lane_stores_are_gathered_into_one_write(at_once):
    x = x_values().to(torch.bfloat16)
    ctx, outs = both(stored_by_lane, {"x": x}, OUT)
    assert at_once[0] is True
    assert torch.equal(outs["out"].data.double(), x.double())


def test_only_the_valid_region_is_written_at_once(at_once):
    x = x_values().to(torch.bfloat16)
    ctx, outs = both(partly_valid, {"x": x}, OUT)
    assert at_once[0] is True
    written = outs["out"].written[:, 0].reshape(N, R)
    assert written[:, : R - 1].all() and not written[:, R - 1].any()


@pytest.mark.parametrize("kernel, finding", [(overlapping_rows, "race"), (twice_per_block, None)])
def test_elements_stored_twice_replay_block_by_block(at_once, kernel, finding):
    x = x_values().to(torch.bfloat16)
    ctx, outs = both(kernel, {"x": x}, OUT)
    assert at_once == [False]
    kinds = [f.kind for f in ctx.findings.values()]
    assert kinds == ([finding] if finding else [])
    if kernel is twice_per_block:
        assert torch.equal(outs["out"].data.double(), bf16(x.double() * 2))


def test_an_earlier_writer_that_races_keeps_the_stores_block_by_block(at_once):
    x = x_values().to(torch.bfloat16)
    ctx, outs = both(nested_in_outer_blocks, {"x": x}, OUT)
    # outer block 0's inner stage is written at once; outer block 1's finds block 0's rows
    assert at_once == [True, False]
    (race,) = ctx.findings.values()
    assert race.kind == "race" and "outer[" in race.detail


def test_an_earlier_stage_is_no_race_and_its_rows_are_overwritten_at_once(at_once):
    x = x_values().to(torch.bfloat16)
    ctx, outs = both(two_stages, {"x": x}, OUT)
    assert at_once == [True, True] and not ctx.findings
    assert torch.equal(outs["out"].data.double(), -x.double())


def test_observed_runs_replay_block_by_block(at_once):
    x = x_values().to(torch.bfloat16)
    both(tiled_rows, {"x": x}, OUT, seed=1)
    assert at_once == [True]
    ctx = RunContext(Options(seed=1))
    ctx.attach(CacheLineObserver(64))
    with running(ctx):
        out = Tensor("out", [N * R, C], pl.BF16)
        rewrite.batched_kernel(tiled_rows)(x=Tensor.from_torch("x", x), out=out)
    assert at_once == [True]  # the observed run never asked for a plan
    assert ctx.batch_stats == {"batched": 1} and bool(out.written.all())


def _grid_by_enumeration(starts, extent, distinct):
    """`_grid`'s answer found by brute force: the distinct starts along each dimension, sorted,
    must be evenly spaced, and the windows must be exactly every point of their product."""
    import itertools

    axes = [sorted(set(col)) for col in starts]
    steps = [axis[1] - axis[0] if len(axis) > 1 else n for axis, n in zip(axes, extent)]
    for axis, step, n in zip(axes, steps, extent):
        if axis != list(range(axis[0], axis[0] + step * len(axis), step)) or (distinct and step < n):
            return None
    points = list(itertools.product(*axes))  # row-major
    windows = list(zip(*starts))
    if set(windows) != set(points) or (distinct and len(windows) != len(points)):
        return None
    rank = {p: i for i, p in enumerate(points)}
    return [axis[0] for axis in axes], steps, [len(axis) for axis in axes], [rank[w] for w in windows]


def test_grid_detection_matches_enumeration_and_window_reads_match_per_lane_slices():
    # Shuffled grids with gaps, overlaps and repeats and scattered windows, few lanes and
    # many: `_grid` finds exactly the grids enumeration finds, with the same positions; and
    # every lane's window read at once equals its own slice.
    import itertools
    import random

    rnd = random.Random(1)
    found_grids = 0
    for _ in range(1500):
        dims, n = rnd.randint(1, 3), rnd.choice([1, 2, 5, 64, 70, 130])
        extent = tuple(rnd.randint(1, 4) for _ in range(dims))
        if rnd.random() < 0.5:
            counts = [rnd.randint(1, 5) for _ in range(dims)]
            steps = [rnd.choice([e, e + 1, max(1, e - 1)]) for e in extent]
            points = list(itertools.product(*[range(c) for c in counts]))
            rnd.shuffle(points)
            points = (points * (n // len(points) + 1))[:n]
            starts = [[3 + p[d] * steps[d] for p in points] for d in range(dims)]
        else:
            starts = [[rnd.randint(0, 20) for _ in range(n)] for _ in range(dims)]
        for distinct in (True, False):
            want = _grid_by_enumeration(starts, extent, distinct)
            assert _grids.lane_grid(starts, extent, distinct) == want, (starts, extent, distinct)
            found_grids += want is not None
        x = torch.rand(*([30] * dims))
        if all(max(col) + e <= 30 for col, e in zip(starts, extent)):
            want = torch.stack([x[tuple(slice(col[k], col[k] + e) for col, e in zip(starts, extent))]
                                for k in range(n)])
            assert torch.equal(_wrapping._gather_windows(x, starts, extent), want)
            holes = _grids.read_grid(starts, extent)  # a grid with unread positions, for reads
            if holes is not None:
                first, steps, counts, ranks = holes
                view = _grids.grid_view(x, first, steps, counts, extent).reshape(-1, *extent)
                assert torch.equal(view[torch.tensor(ranks)], want)
    assert found_grids > 500  # both answers are exercised, not only "no grid"


def test_grid_detection_rejects_uneven_and_incomplete_grids():
    assert _grids.lane_grid([[0, 4, 8, 12]], (4,)) == ([0], [4], [4], [0, 1, 2, 3])
    assert _grids.lane_grid([[8, 0, 4]], (4,)) == ([0], [4], [3], [2, 0, 1])
    assert _grids.lane_grid([[0, 4, 12]], (4,)) is None  # a gap: 0, 4, _, 12
    assert _grids.lane_grid([[0, 3, 6]], (4,)) is None  # windows overlap
    assert _grids.lane_grid([[0, 3, 6]], (4,), distinct=False) == ([0], [3], [3], [0, 1, 2])
    assert _grids.lane_grid([[0, 0, 4, 4], [0, 4, 0, 0]], (4, 4), distinct=False) is None  # (4, 4) missing
    assert _grids.lane_grid([[0, 2, 5]], (1,)) is None  # 5 - 0 is not a whole number of steps
    assert _grids.lane_grid([[0, 3, 4]], (1,)) is None  # three starts spanning 2 steps of 2, but 3 is off it


def test_interleaved_windows_of_two_extents_are_written_at_once(at_once):
    x = x_wide()
    ctx, outs = both(interleaved_extents, {"x": x}, WIDE)
    assert at_once == [True] and not ctx.findings
    first = torch.zeros(3 * N * C, dtype=torch.bool)
    for b in range(N):
        first[3 * b * C : 3 * b * C + 2 * C] = True
    want = torch.where(first, bf16(x.double() + 1), bf16(x.double() * 2))
    assert torch.equal(outs["out"].data.double(), want) and bool(outs["out"].written.all())


def test_interleaved_windows_that_share_an_element_replay_block_by_block(at_once):
    x = x_wide()
    ctx, outs = both(interleaved_extents_sharing_a_column, {"x": x}, WIDE)
    assert at_once == [False] and not ctx.findings  # one block stores the column twice: no race
    shared = [3 * b * C + 2 * C - 1 for b in range(N)]
    assert torch.equal(outs["out"].data.double()[:, shared], bf16(x.double() * 2)[:, shared])


@pytest.mark.parametrize("odd, at_once_expected", [(1, True), (0, False)])
def test_a_grid_and_scattered_windows_are_written_at_once_unless_they_share_an_element(at_once, odd,
                                                                                        at_once_expected):
    x = x_values().to(torch.bfloat16)
    ctx, outs = both(grid_and_scattered_rows, {"x": x}, SPREAD, odd=odd)
    assert at_once == [at_once_expected]
    assert [f.kind for f in ctx.findings.values()] == ([] if odd else ["race"])
    last = N - 1  # the last block's scattered row holds its doubled values
    assert torch.equal(outs["out"].data.double()[2 * last * last + odd], bf16(x.double()[last * R] * 2))
    if not odd:  # row 0: block 0's second store wins
        assert torch.equal(outs["out"].data.double()[0], bf16(x.double()[0] * 2))
