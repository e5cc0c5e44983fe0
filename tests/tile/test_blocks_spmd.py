"""Block and task identity: the three pl.spmd forms, get_block_idx under the shuffled block
order, syncall barriers, split_aiv lanes and aiv_shard, spmd_submit, task ids and pl.Array.

The PyPTO-syntax kernels live in tests/fixtures/blocks/spmd_kernels.py and are loaded
through source mode, whose load-time rewrite runs each `with pl.spmd(...) as tid:` body
once per block. Values are checked against torch float64 / Python arithmetic done here.
"""

import os
import textwrap

import pytest
import torch

from equiv import tile as pl
from equiv.tile.errors import KernelError, UnsupportedOpError
from equiv.tile.context import RunContext, running
from equiv.tile.memory import Tensor
from equiv.options import Options
from equiv.source import load_kernel
from equiv.tile import blocks, rewrite

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "blocks", "spmd_kernels.py")
R, C, RB, NB = 8, 16, 2, 4


def line_of(text):
    with open(FIXTURE) as fh:
        return next(i for i, line in enumerate(fh, 1) if text in line)


def x_values():
    return torch.arange(R * C, dtype=torch.float32).reshape(R, C) - 37.5


def run(entry, seed=1, **outputs):
    fn = load_kernel(FIXTURE, entry)
    with running(RunContext(Options(seed=seed))) as ctx:
        x = Tensor.from_torch("x", x_values() if entry != "rotate_with_barrier" else x_values()[:NB])
        outs = {k: Tensor(k, shape, dt) for k, (shape, dt) in outputs.items()}
        fn(x=x, **outs)
    return ctx, outs


def kinds(ctx, kind):
    return [f for f in ctx.findings.values() if f.kind == kind]


OUT = {"out": ([R, C], pl.FP32)}


# ---------------------------------------------------------------------------------------
# with pl.spmd(n) as tid: one body per block
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_with_spmd_runs_the_body_once_per_block_and_writes_every_row(seed):
    ctx, outs = run("scale_rows", seed, **OUT)
    out = outs["out"]
    assert not ctx.findings and bool(out.written.all())
    assert out.data.tolist() == (x_values().double() * 2).tolist()
    # One block node per block, each with its own index, in the seed's shuffled order.
    order = [n.block for n in ctx.nodes.values() if n.name == "scale"]
    assert sorted(order) == list(range(NB))
    assert order == torch.randperm(NB, generator=torch.Generator().manual_seed(seed * 7919 + 17)).tolist()


def test_with_spmd_overlapping_stores_are_a_race_between_neighbouring_blocks():
    ctx, _ = run("scale_rows_overlap", **OUT)
    (race,) = kinds(ctx, "race")
    assert race.site.endswith(f"spmd_kernels.py:{line_of('# overlapping store')}")
    # Rows 2, 4 and 6 are each written by two neighbouring blocks.
    assert race.count == (NB - 1) * C and race.region == [(2, 7), (0, C)] and "scale[" in race.detail


def test_with_spmd_load_past_the_tensor_is_recorded_at_the_load():
    ctx, _ = run("scale_rows_oob", **OUT)
    (f,) = kinds(ctx, "oob-read")
    assert f.site.endswith(f":{line_of('[b * RB + 1, 0], [RB, C])')}") and f.count == C


def test_with_spmd_missing_block_leaves_rows_unwritten():
    ctx, outs = run("scale_rows_gap", **OUT)
    written = outs["out"].written
    assert not ctx.findings and bool(written[:R - RB].all()) and not written[R - RB:].any()


def test_block_index_follows_the_innermost_spmd_and_is_zero_outside(tmp_path):
    with running(RunContext(Options(seed=4))):
        assert pl.tile.get_block_idx() == 0 and pl.get_block_num() == 1
        seen = []
        for b in pl.spmd(3):
            for p in pl.parallel(2):          # not a block launch: the index stays b
                seen.append((b, p, pl.get_block_idx(), pl.tile.get_block_num()))
        assert sorted(seen) == [(b, p, b, 3) for b in range(3) for p in range(2)]


# ---------------------------------------------------------------------------------------
# Task ids, pl.Array, create_tensor(init_value=, manual_dep=), task_dummy
# ---------------------------------------------------------------------------------------
def test_column_sums_through_atomic_scratch_task_ids_and_arrays():
    ctx, outs = run("column_sums", out=([1, C], pl.FP32), counts=([1, NB], pl.INT32))
    x = x_values().double()
    # Each block adds its RB rows in order (float32), then the partials are added to the
    # zero-filled scratch in the shuffled block order (float32 each time).
    order = [n.block for n in ctx.nodes.values() if n.name == "partial"]
    acc = torch.zeros(C, dtype=torch.float32)
    for b in order:
        part = torch.zeros(C, dtype=torch.float32)
        for r in range(RB):
            part = (part.double() + x[b * RB + r]).float()
        acc = (acc.double() + part.double()).float()
    assert outs["out"].data[0].tolist() == acc.double().tolist()
    assert outs["counts"].data.tolist() == [[RB] * NB] and not ctx.findings


def test_task_ids_arrays_and_dummies():
    with running(RunContext(Options(seed=1))):
        arr = pl.array.create(3, pl.TASK_ID)
        assert arr[0] is None                       # zero-initialised: no task
        d = pl.spmd(2, "a")
        list(d.blocks())
        arr[1] = d.task
        dummy = pl.system.task_dummy(deps=[arr[1], None])
        assert dummy.deps == (d.task,)
        with pytest.raises(KernelError, match="task ids"):
            arr[0] = 5
        ints = pl.array.create(2, pl.INT32)
        assert ints[1] == 0
        ints[1] = 2 ** 31                            # wraps like int32
        assert ints[1] == -(2 ** 31)
        assert pl.array.get_element(pl.array.update_element(ints, 0, 7), 0) == 7
        with pytest.raises(KernelError, match="outside an array"):
            ints[2]
        with pl.at(level=pl.Level.CORE_GROUP, name_hint="t", deps=[dummy]) as tid:
            pass
        assert isinstance(tid, blocks.TaskId)


# ---------------------------------------------------------------------------------------
# syncall barriers
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [1, 2, 5])
def test_syncall_makes_every_block_see_the_other_blocks_first_phase(seed):
    ctx, outs = run("rotate_with_barrier", seed, out=([NB, C], pl.FP32))
    expect = torch.roll(x_values()[:NB].double() * 2, -1, 0)
    assert outs["out"].data.tolist() == expect.tolist() and not ctx.findings


def test_writes_on_both_sides_of_a_barrier_are_not_a_race_but_within_a_phase_they_are(tmp_path):
    src = tmp_path / "k.py"
    src.write_text(textwrap.dedent("""
        import pypto.language as pl

        @pl.jit
        def k(out: pl.Out[pl.Tensor[[1, 4], pl.INT32]]):
            with pl.spmd(2, name_hint="b"):
                b = pl.tile.get_block_idx()
                pl.write(out, [0, 0], b)          # both blocks, same phase: a race
                pl.system.syncall(core_type="mix")
                if b == 1:
                    pl.write(out, [0, 1], b)
                pl.system.syncall(core_type="mix")
                if b == 0:
                    pl.write(out, [0, 1], b)      # after a barrier: ordered, no race
            return out
        """))
    fn = load_kernel(str(src), "k")
    with running(RunContext(Options(seed=3))) as ctx:
        out = Tensor("out", [1, 4], pl.INT32)
        fn(out=out)
    (race,) = kinds(ctx, "race")
    assert race.region == [(0, 1), (0, 1)] and out.data[0, 1].item() == 0


def test_a_block_that_skips_the_barrier_is_a_deadlock(tmp_path):
    src = tmp_path / "k.py"
    src.write_text(textwrap.dedent("""
        import pypto.language as pl

        @pl.jit
        def k(out: pl.Out[pl.Tensor[[1, 4], pl.INT32]]):
            with pl.spmd(3):
                b = pl.tile.get_block_idx()
                if b != 1:
                    pl.system.syncall()
                pl.write(out, [0, b], b)
            return out
        """))
    fn = load_kernel(str(src), "k")
    with running(RunContext(Options(seed=1))):
        with pytest.raises(KernelError, match="deadlock"):
            fn(out=Tensor("out", [1, 4], pl.INT32))


def test_syncall_outside_a_rewritten_with_body_is_an_emulator_gap():
    with running(RunContext(Options(seed=1))):
        with pytest.raises(UnsupportedOpError):
            for _ in pl.spmd(2):
                pl.system.syncall()


# ---------------------------------------------------------------------------------------
# The rewrite itself
# ---------------------------------------------------------------------------------------
def test_with_spmd_without_the_rewrite_refuses_instead_of_running_one_block():
    with running(RunContext(Options(seed=1))):
        with pytest.raises(UnsupportedOpError, match="with pl.spmd"):
            with pl.spmd(4):
                pass


@pytest.mark.parametrize("stmt", ["return out", "break", "continue"])
def test_leaving_a_with_spmd_body_is_rejected_at_load(tmp_path, stmt):
    src = tmp_path / "k.py"
    src.write_text(textwrap.dedent(f"""
        import pypto.language as pl

        def k(out):
            for i in pl.range(2):
                with pl.spmd(2):
                    {stmt}
            return out
        """))
    with pytest.raises(rewrite.RewriteError, match=r"k.py:7"):
        load_kernel(str(src), "k")


def test_loop_inside_a_with_body_may_break(tmp_path):
    src = tmp_path / "k.py"
    src.write_text(textwrap.dedent("""
        import pypto.language as pl

        def k(out: pl.Out[pl.Tensor[[1, 3], pl.INT32]]):
            with pl.spmd(3) as tid:
                b = pl.tile.get_block_idx()
                for i in pl.range(10):
                    if i == b:
                        break
                pl.write(out, [0, b], i)
            return tid
        """))
    fn = load_kernel(str(src), "k")
    with running(RunContext(Options(seed=2))):
        out = Tensor("out", [1, 3], pl.INT32)
        tid = fn(out=out)
    assert out.data.tolist() == [[0, 1, 2]] and isinstance(tid, blocks.TaskId)


# ---------------------------------------------------------------------------------------
# spmd_submit, split_aiv / aiv_shard
# ---------------------------------------------------------------------------------------
def test_spmd_submit_calls_the_kernel_per_block_and_self_names_the_module_function(tmp_path):
    src = tmp_path / "k.py"
    src.write_text(textwrap.dedent("""
        import pypto.language as pl

        @pl.jit.incore
        def fill(out: pl.InOut[pl.Tensor[[1, 4], pl.INT32]]):
            b = pl.tile.get_block_idx()
            pl.write(out, [0, b], 10 + b)
            return out

        @pl.jit
        def entry(out: pl.Out[pl.Tensor[[1, 4], pl.INT32]]):
            out, tid = pl.spmd_submit(self.fill, pl.no_dep(out), core_num=4, deps=[None])
            return tid
        """))
    fn = load_kernel(str(src), "entry")
    with running(RunContext(Options(seed=2))) as ctx:
        out = Tensor("out", [1, 4], pl.INT32)
        tid = fn(out=out)
    assert out.data.tolist() == [[10, 11, 12, 13]] and isinstance(tid, blocks.TaskId) and not ctx.findings


def test_split_aiv_up_down_gives_each_lane_its_half_of_the_rows():
    ctx, outs = run("lanes", **OUT)
    assert outs["out"].data.tolist() == x_values().double().tolist() and bool(outs["out"].written.all())
    assert not ctx.findings
    lanes = [n for n in ctx.nodes.values() if n.name == "aiv"]
    assert len(lanes) == 2 * (NB // 2) and {n.parent.name for n in lanes} == {"lanes"}


def test_aiv_shard_modes_and_lane_index():
    t = pl.Tile(torch.arange(16, dtype=torch.float64).reshape(4, 4), pl.FP32)
    with running(RunContext(Options(seed=1))):
        got = {}
        for lane in pl.split_aiv(2, mode=pl.SplitMode.LEFT_RIGHT):
            got[lane] = (pl.aiv_shard(t).data.tolist(), pl.get_subblock_idx())
        assert got[0] == ([[0, 1], [4, 5], [8, 9], [12, 13]], 0)
        assert got[1] == ([[2, 3], [6, 7], [10, 11], [14, 15]], 1)
        for lane in pl.split_aiv(2, mode=pl.SplitMode.NONE):
            assert pl.aiv_shard(t) is t
        with pytest.raises(KernelError, match="split_aiv"):
            pl.aiv_shard(t)


def test_two_lanes_of_a_none_split_writing_one_element_race():
    with running(RunContext(Options(seed=1))) as ctx:
        out = Tensor("out", [2], pl.INT32)
        for lane in pl.split_aiv(2, mode=pl.SplitMode.NONE):
            pl.write(out, [0], lane)
    assert len(kinds(ctx, "race")) == 1


def test_a_run_time_block_count_of_zero_runs_no_block_and_a_negative_one_is_an_error():
    with running(RunContext(Options(seed=1))):
        assert list(pl.spmd(0)) == []
        assert isinstance(pl.spmd(0).run_barriered(lambda: 1 / 0), blocks.TaskId)
        with pytest.raises(KernelError, match="negative"):
            pl.spmd(-1)


def test_predicate_false_retires_the_dispatch():
    with running(RunContext(Options(seed=1))):
        flag = pl.Tile(torch.zeros(1, 1, dtype=torch.int64), pl.INT32)
        assert list(pl.spmd(3, predicate=flag)) == []
        assert len(list(pl.spmd(3, predicate=True))) == 3


def test_barriered_body_shares_the_enclosing_functions_names(tmp_path):
    src = tmp_path / "k.py"
    src.write_text(textwrap.dedent("""
        import pypto.language as pl

        @pl.jit
        def k(out: pl.Out[pl.Tensor[[1, 4], pl.INT32]]):
            last = -1
            with pl.spmd(4, name_hint="s") as tid:
                b = pl.tile.get_block_idx()
                out = pl.store(pl.tile.full([1, 1], dtype=pl.INT32, value=b), [0, b], out)
                pl.system.syncall()
                last = pl.read(out, [0, (b + 1) % 4])
            return out, last, tid
        """))
    fn = load_kernel(str(src), "k")
    with running(RunContext(Options(seed=6))) as ctx:
        out = Tensor("out", [1, 4], pl.INT32)
        got, last, tid = fn(out=out)
    order = [n.block for n in ctx.nodes.values() if n.name == "s"]
    # The second phase runs in the same shuffled order; `last` is the last block's read.
    assert got is out and out.data.tolist() == [[0, 1, 2, 3]] and last == (order[-1] + 1) % 4
    assert isinstance(tid, blocks.TaskId) and len(order) == 8
