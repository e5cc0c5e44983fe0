"""Explicit memory ops: pl.load / pl.store / pl.move with MemorySpace, create_tile,
create_l1, create_tensor(init_value=, manual_dep=), scalar writes (pl.write,
pl.tensor.write, pl.tile.write), pl.tensor.read / set_validshape / arange and the tile-level
aliases (tile.load, tile.store, tile.slice, tile.assemble, tile.full, tile.fillpad, ...).

Each global-memory op is held to the hazards of slices: a broken kernel is caught (an
out-of-range access recorded at the kernel's line or raised, an unwritten element left
unmarked, two blocks writing one element reported as a race) and a correct one passes with
no finding. Values are compared with plain Python / float64 arithmetic done here.
"""

import inspect

import pytest
import torch

from equiv import tile as pl
from equiv.tile.errors import KernelError, OutOfBoundsError
from equiv.tile.context import RunContext, running
from equiv.tile.memory import Tensor
from equiv.options import Options
from equiv.tile import elements


@pytest.fixture
def ctx():
    with running(RunContext(Options(seed=5))) as c:
        yield c


def kinds(ctx, kind):
    return [f for f in ctx.findings.values() if f.kind == kind]


def grid(rows, cols, base=0.0):
    """Values r * 100 + c + base as float32 (exact), and the same as Python floats."""
    vals = [[base + 100.0 * r + c for c in range(cols)] for r in range(rows)]
    return torch.tensor(vals, dtype=torch.float32), vals


def here() -> int:
    return inspect.currentframe().f_back.f_lineno


# ---------------------------------------------------------------------------------------
# pl.load
# ---------------------------------------------------------------------------------------
def test_load_reads_the_window_and_leaves_the_invalid_part_poison(ctx):
    x, vals = grid(6, 8)
    t = Tensor.from_torch("x", x)
    tile = pl.load(t, [1, 2], [4, 4], valid_shape=[3, 4], target_memory=pl.MemorySpace.Vec)
    assert tile.shape == [4, 4] and list(tile.valid) == [3, 4]
    assert tile.data[:3].tolist() == [row[2:6] for row in vals[1:4]]
    assert not ctx.findings
    # The row outside valid_shape is not read: it is poison, not x's row 4.
    assert tile.data[3].tolist() != vals[4][2:6]


def test_load_past_the_tensor_is_recorded_at_the_kernel_line(ctx):
    t = Tensor.from_torch("x", grid(6, 8)[0])
    line = here() + 1
    pl.load(t, [4, 0], [4, 8])
    (f,) = kinds(ctx, "oob-read")
    assert f.site.endswith(f"test_memory_ops.py:{line}") and f.count == 2 * 8 and f.region == [(4, 8), (0, 8)]


def test_load_past_the_tensor_raises_under_the_raise_policy():
    with running(RunContext(Options(seed=1, out_of_bounds="raise"))):
        t = Tensor.from_torch("x", grid(6, 8)[0])
        with pytest.raises(OutOfBoundsError):
            pl.tile.load(t, [0, 6], [2, 4])


def test_load_with_clamp_cuts_the_valid_region_to_the_edge(ctx):
    x, vals = grid(6, 8)
    tile = pl.load(Tensor.from_torch("x", x), [4, 0], [4, 8], clamp=True)
    assert list(tile.valid) == [2, 8] and tile.data[:2].tolist() == vals[4:6]
    assert not ctx.findings


def test_load_rejects_a_tile_source(ctx):
    with pytest.raises(KernelError, match="pl.tile.slice"):
        pl.load(pl.tile.full([2, 2], dtype=pl.FP32, value=1.0), [0, 0], [1, 1])


# ---------------------------------------------------------------------------------------
# pl.store
# ---------------------------------------------------------------------------------------
def test_store_writes_only_the_valid_region_and_returns_the_tensor(ctx):
    x, vals = grid(4, 4)
    out = Tensor("out", [6, 6], pl.FP32)
    tile = pl.load(Tensor.from_torch("x", x), [0, 0], [4, 4], valid_shape=[2, 3])
    assert pl.store(tile, [1, 2], out) is out
    written = out.written.nonzero().tolist()
    assert written == [[r, c] for r in (1, 2) for c in (2, 3, 4)]
    assert out.data[1:3, 2:5].tolist() == [row[:3] for row in vals[:2]]
    assert not ctx.findings


def test_store_of_a_partly_valid_tile_at_the_edge_is_in_range(ctx):
    # Tile rows 3..7 are invalid and lie past the tensor: not written, so not out of range.
    tile = pl.load(Tensor.from_torch("x", grid(8, 4)[0]), [0, 0], [8, 4], valid_shape=[3, 4])
    out = Tensor("out", [5, 4], pl.FP32)
    pl.store(tile, [2, 0], out)
    assert not ctx.findings and int(out.written.sum()) == 12


def test_store_past_the_tensor_is_recorded_and_the_inside_part_written(ctx):
    out = Tensor("out", [4, 4], pl.FP32)
    line = here() + 1
    pl.tile.store(pl.tile.full([2, 4], dtype=pl.FP32, value=3.0), [3, 0], out)
    (f,) = kinds(ctx, "oob-write")
    assert f.site.endswith(f":{line}") and f.count == 4
    assert out.written[3].all() and not out.written[:3].any() and out.data[3].tolist() == [3.0] * 4


def test_store_from_two_blocks_to_one_element_is_a_race_and_disjoint_stores_are_not(ctx):
    out = Tensor("out", [4, 4], pl.FP32)
    for b in pl.spmd(2):
        pl.store(pl.tile.full([2, 4], dtype=pl.FP32, value=float(b)), [2 * b, 0], out)
    assert not kinds(ctx, "race")
    for b in pl.spmd(2):
        pl.store(pl.tile.full([3, 4], dtype=pl.FP32, value=float(b)), [min(2 * b, 1), 0], out)
    (race,) = kinds(ctx, "race")
    assert race.tensor == "out" and race.region == [(1, 3), (0, 4)]


def test_store_with_an_nd_partition_shape_maps_a_2d_tile_into_a_4d_tensor(ctx):
    out = Tensor("out", [2, 2, 2, 3], pl.FP32)
    x, vals = grid(2, 3)
    pl.tile.store(pl.load(Tensor.from_torch("x", x), [0, 0], [2, 3]), [1, 0, 0, 0], out, shapes=[1, 1, 2, 3])
    assert out.data[1, 0].tolist() == vals and int(out.written.sum()) == 6


def test_store_atomic_add_sums_in_block_order_with_one_rounding_each(ctx):
    out = Tensor.from_torch("out", torch.zeros(1, 2))
    for b in pl.spmd(3):
        pl.store(pl.tile.full([1, 2], dtype=pl.FP32, value=0.1 * (b + 1)), [0, 0], out, atomic=pl.AtomicType.Add)
    assert not kinds(ctx, "race")
    import struct

    def f32(v):
        return struct.unpack("f", struct.pack("f", v))[0]

    order = [n.block for n in ctx.nodes.values() if n.name == "spmd"]
    acc = 0.0
    for b in order:
        acc = f32(acc + f32(0.1 * (b + 1)))
    assert out.data[0].tolist() == [acc, acc]


def test_store_of_another_dtype_is_an_error(ctx):
    with pytest.raises(KernelError, match="cast it first"):
        pl.store(pl.tile.full([1, 1], dtype=pl.BF16, value=1.0), [0, 0], Tensor("o", [1, 1], pl.FP32))


# ---------------------------------------------------------------------------------------
# create_tensor / create_l1 / create_tile / move
# ---------------------------------------------------------------------------------------
def test_create_tensor_init_value_fills_and_counts_as_written(ctx):
    t = pl.create_tensor([3, 2], dtype=pl.INT32, init_value=7, manual_dep=True)
    assert t.data.tolist() == [[7, 7]] * 3 and bool(t.written.all())
    z = pl.create_tensor([2], dtype=pl.BF16, init_value=0)
    assert z.data.tolist() == [0.0, 0.0] and bool(z.written.all())
    f = pl.create_tensor([1], dtype=pl.FP32, init_value=0.1)
    import struct
    assert f.data.tolist() == [struct.unpack("f", struct.pack("f", 0.1))[0]]


def test_create_tensor_without_init_value_is_unwritten_poison_and_bf16_nonzero_fill_is_rejected(ctx):
    t = pl.create_tensor([2, 2], dtype=pl.FP32)
    assert not t.written.any()
    with pytest.raises(KernelError, match="16-bit floats"):
        pl.create_tensor([2], dtype=pl.BF16, init_value=1.0)


def test_create_l1_is_uninitialised_and_create_tile_is_poison_all_valid(ctx):
    l1 = pl.create_l1([4, 8], pl.BF16)
    assert isinstance(l1, Tensor) and l1.shape == (4, 8) and not l1.written.any()
    tiles = []
    for seed in (1, 2):
        with running(RunContext(Options(seed=seed))):
            tiles.append(pl.create_tile([2, 4], dtype=pl.FP32, target_memory=pl.MemorySpace.Vec))
    assert tiles[0].valid == (2, 4) and tiles[0].data.tolist() != tiles[1].data.tolist()
    assert pl.tile.create([1, 2], pl.INT32).shape == [1, 2]


def test_move_keeps_values_and_valid_shape(ctx):
    x, vals = grid(2, 4)
    t = pl.load(Tensor.from_torch("x", x), [0, 0], [2, 4], valid_shape=[1, 4], target_memory=pl.MemorySpace.Mat)
    m = pl.move(t, target_memory=pl.MemorySpace.Right)
    assert m.valid == (1, 4) and m.data[0].tolist() == vals[0]


# ---------------------------------------------------------------------------------------
# Scalar reads and writes
# ---------------------------------------------------------------------------------------
def test_scalar_writes_round_to_the_tensor_type_and_mark_one_element(ctx):
    t = Tensor("t", [2, 3], pl.BF16)
    pl.write(t, [1, 2], 1.0 + 2.0 ** -8)         # a tie: rounds to even, 1.0
    pl.tensor.write(t, [0, 0], 1.0 + 3 * 2.0 ** -8)  # a tie: rounds to even, 1 + 2^-6
    assert t.data[1, 2].item() == 1.0 and t.data[0, 0].item() == 1.0 + 2.0 ** -6
    assert t.written.nonzero().tolist() == [[0, 0], [1, 2]]
    i = Tensor("i", [2], pl.INT8)
    pl.tile.write(i, [1], 130)                   # wraps like int8
    assert i.data[1].item() == 130 - 256 and pl.tensor.read(i, [1]) == -126 and pl.read(i, 1) == -126


def test_all_scalar_writes_go_through_scalar_store(ctx, monkeypatch):
    seen = []
    real = elements.scalar_store
    monkeypatch.setattr(elements, "scalar_store", lambda d, i, v: (seen.append((d.name, list(i))), real(d, i, v)))
    t = Tensor("t", [4], pl.INT32)
    pl.write(t, [0], 1)
    pl.tensor.write(t, [1], 2)
    pl.tile.write(t, [2], 3)
    assert seen == [("t", [0]), ("t", [1]), ("t", [2])]


def test_scalar_write_out_of_range_is_recorded_and_racing_scalar_writes_are_found(ctx):
    t = Tensor("t", [4], pl.INT32)
    line = here() + 1
    pl.write(t, [4], 1)
    (f,) = kinds(ctx, "oob-write")
    assert f.site.endswith(f":{line}") and not t.written.any()
    for b in pl.spmd(2):
        pl.tensor.write(t, [b], b)          # disjoint elements: no race
    assert not kinds(ctx, "race")
    for b in pl.spmd(2):
        pl.tensor.write(t, [3], b)          # one element from both blocks
    assert len(kinds(ctx, "race")) == 1


def test_a_scalar_write_and_a_one_element_store_leave_the_same_state_and_findings():
    # pl.write's element path (Tensor.store_element) against the general store of a 1-element
    # window: values, written-mask, last writer and the race finding, with blocks racing.
    def scalar_stores(t, via_store):
        for b in pl.spmd(3):
            for i in (b, 3):  # element 3 is written by every block
                if via_store:
                    t.store(((i, i + 1),), torch.tensor([float(b) + 0.5], dtype=torch.float64))
                else:
                    assert t.store_element((i,), float(b) + 0.5)

    states = []
    for via_store in (False, True):
        with running(RunContext(Options(seed=2))) as c:
            t = Tensor("t", [5], pl.FP32)
            scalar_stores(t, via_store)
            states.append((t.data.nan_to_num(-9.0).tolist(), t.written.tolist(), t.writer.tolist(),
                           [(f.kind, f.detail, f.region, f.count) for f in c.findings.values()]))
    assert states[0] == states[1]
    assert states[0][3] and all(kind == "race" for kind, *_ in states[0][3])
    with running(RunContext(Options())):
        assert Tensor("u", [2], pl.FP32).store_element((2,), 1.0) is False  # outside: the general path


def test_tile_write_updates_one_element_without_touching_a_tile_sharing_its_container(ctx):
    a = pl.tile.full([1, 4], dtype=pl.FP32, value=1.0)
    b = pl.cast(a, pl.FP32)                 # an exact cast shares a's container
    pl.tile.write(b, [0, 2], 5.5)
    assert b.data[0].tolist() == [1.0, 1.0, 5.5, 1.0] and a.data[0].tolist() == [1.0] * 4
    with pytest.raises(KernelError, match="outside a tile"):
        pl.tile.write(b, [1, 0], 0.0)


# ---------------------------------------------------------------------------------------
# set_validshape / arange / tile.* aliases
# ---------------------------------------------------------------------------------------
def test_tensor_set_validshape_of_a_window_and_of_a_tile(ctx):
    x, vals = grid(4, 6)
    t = Tensor.from_torch("x", x)
    v = pl.tensor.set_validshape(t[:, 0:4], 2, 3)
    assert v.shape == [4, 4] and v.valid == (2, 3) and v.data[:2, :3].tolist() == [r[:3] for r in vals[:2]]
    w = pl.tensor.set_validshape(t, 1, 6)
    assert w.valid == (1, 6)
    with pytest.raises(KernelError):
        pl.tile.set_validshape(v, 5, 1)


def test_arange_forms(ctx):
    a = pl.tensor.arange(0, [1, 6], dtype=pl.UINT32)
    assert a.data.tolist() == [[0, 1, 2, 3, 4, 5]] and a.dtype is pl.UINT32
    d = pl.tile.arange(5, [1, 4], dtype=pl.INT32, descending=True)
    assert d.data.tolist() == [[5, 4, 3, 2]]


def test_tile_slice_is_a_window_inside_the_tile_with_optional_padding(ctx):
    x, vals = grid(4, 8)
    t = pl.load(Tensor.from_torch("x", x), [0, 0], [4, 8])
    s = pl.tile.slice(t, [2, 4], [1, 2])
    assert s.data.tolist() == [row[2:6] for row in vals[1:3]] and s.valid == (2, 4)
    p = pl.tile.slice(t, [2, 4], [0, 0], valid_shape=[2, 3], pad_value=pl.PadValue.min)
    assert p.valid == (2, 3) and p.data[:, 3].tolist() == [float("-inf")] * 2
    with pytest.raises(KernelError):
        pl.tile.slice(t, [2, 4], [3, 0])   # runs off the tile: an error, not a hazard


def test_tile_assemble_copies_the_valid_region_into_a_copy_of_the_target(ctx):
    base = pl.tile.full([4, 4], dtype=pl.FP32, value=0.0)
    x, vals = grid(2, 2)
    src = pl.load(Tensor.from_torch("x", x), [0, 0], [2, 2], valid_shape=[1, 2])
    out = pl.tile.assemble(base, src, [2, 1])
    assert out.data.tolist() == [[0.0] * 4, [0.0] * 4, [0.0, vals[0][0], vals[0][1], 0.0], [0.0] * 4]
    assert base.data.abs().sum().item() == 0.0     # the target tile is not modified
    with pytest.raises(KernelError, match="outside a target tile"):
        pl.tile.assemble(base, src, [3, 3])


def test_tile_aliases_compute_like_their_pl_names(ctx):
    f = pl.tile.full([2, 2], dtype=pl.INT32, value=3)
    assert f.data.tolist() == [[3, 3], [3, 3]]
    part = pl.tile.set_validshape(f, 1, 2)
    assert pl.tile.fillpad(part, pad_value=pl.PadValue.zero).data.tolist() == [[3, 3], [0, 0]]
    assert pl.tile.reshape(f, [1, 4]).shape == [1, 4]


def test_store_and_assemble_drop_leading_unit_axes_of_the_tile(ctx):
    x, vals = grid(2, 3)
    t3 = pl.Tile(x.double().reshape(1, 2, 3), pl.FP32)         # e.g. a matmul with a 3-d weight window
    out = Tensor("out", [3, 4], pl.FP32)
    pl.store(t3, [1, 1], out)
    assert out.data[1:3, 1:4].tolist() == vals and int(out.written.sum()) == 6
    out2 = Tensor("out2", [2, 3], pl.FP32)
    pl.assemble(out2, t3, [0, 0])
    assert out2.data.tolist() == vals
    with pytest.raises(KernelError):
        pl.store(pl.Tile(torch.zeros(2, 2, 3, dtype=torch.float64), pl.FP32), [0, 0], out)


def test_tile_window_assignment_writes_the_value_and_keeps_the_valid_shape(ctx):
    base = pl.tile.set_validshape(pl.tile.full([3, 4], dtype=pl.FP32, value=0.0), 2, 4)
    shared = pl.cast(base, pl.FP32)                 # shares base's container
    x, vals = grid(1, 2)
    base[1:2, 2:4] = pl.Tile(x.double(), pl.FP32)
    base[0, :] = 7.0
    assert base.data.tolist() == [[7.0] * 4, [0.0, 0.0] + vals[0], [0.0] * 4] and base.valid == (2, 4)
    assert shared.data.abs().sum().item() == 0.0    # the other tile is untouched
    with pytest.raises(KernelError, match="outside a tile"):
        base[2:4, 0:1] = 1.0
    with pytest.raises(KernelError, match="cast it first"):
        base[0:1, 0:1] = pl.tile.full([1, 1], dtype=pl.BF16, value=1.0)


def test_reading_unwritten_scratch_gives_seed_dependent_poison_and_init_value_does_not():
    got = {}
    for seed in (1, 2):
        with running(RunContext(Options(seed=seed))):
            raw = pl.create_tensor([2, 4], dtype=pl.FP32)
            filled = pl.create_tensor([2, 4], dtype=pl.FP32, init_value=0.0)
            got[seed] = (pl.load(raw, [0, 0], [2, 4]).data.tolist(), pl.load(filled, [0, 0], [2, 4]).data.tolist())
    assert got[1][0] != got[2][0]
    assert got[1][1] == got[2][1] == [[0.0] * 4] * 2


def test_scalar_reads_and_writes_see_each_other_through_views_and_after_stores(ctx):
    # pl.read / pl.write use NumPy views of a tensor's memory; they must follow the tensor's
    # data through reshaped views, tile stores and maps made later.
    x = Tensor.from_torch("x", torch.arange(12, dtype=torch.float32).reshape(3, 4))
    assert pl.read(x, [1, 2]) == 6.0
    flat = pl.reshape(x, [12])
    pl.write(flat, [6], 60.5)  # through the view ...
    assert pl.read(x, [1, 2]) == 60.5  # ... seen by the base
    x[0:1, :] = pl.full([1, 4], dtype=pl.FP32, value=-1.0)  # a tile store between scalar accesses
    assert [pl.read(flat, [i]) for i in range(4)] == [-1.0] * 4
    pl.write(x, [2, 3], 7.25)
    assert float(x.data[2, 3]) == 7.25 and bool(x.written[2, 3])
    assert int(x.writer[2, 3]) == ctx.current.token
    i8 = Tensor.from_torch("i", torch.tensor([[-128, 127]], dtype=torch.int8))
    assert (pl.read(i8, [0, 0]), pl.read(i8, [0, 1])) == (-128, 127)
    pl.write(i8, [0, 0], 5)
    assert i8.data.tolist() == [[5, 127]]


# ---------------------------------------------------------------------------------------
# pl.slice of a tensor: a view in orchestration code, a tile in kernel code
# ---------------------------------------------------------------------------------------
def _double_rows(x: pl.Tensor, out: pl.Tensor) -> None:
    # A kernel that takes tensors: loads from its input, stores into its output.
    rows = pl.tensor.dim(x, 0)
    for b in pl.spmd(rows, name_hint="rows"):
        t = pl.load(x, [b, 0], [1, 8])
        pl.store(pl.mul(t, 2.0), [b, 0], out)


def test_slice_in_orchestration_code_is_a_view_kernels_read_and_write(ctx):
    x, vals = grid(6, 8)
    src, dst = Tensor.from_torch("x", x), Tensor("out", [6, 8], pl.FP32)
    x_rows = pl.slice(src, [2, 8], [3, 0])
    out_rows = pl.slice(dst, [2, 8], [1, 0])
    assert isinstance(x_rows, Tensor) and isinstance(out_rows, Tensor) and x_rows.shape == (2, 8)
    _double_rows(x_rows, out_rows)
    got = dst.data.tolist()
    assert got[1:3] == [[2 * v for v in row] for row in vals[3:5]]
    # the writes are the output's own: rows 1-2 written, the rest not
    assert dst.written.any(dim=1).tolist() == [False, True, True, False, False, False]
    assert not ctx.findings


def test_slice_in_kernel_code_is_a_tile_read_when_sliced(ctx):
    x, vals = grid(4, 8)
    src = Tensor.from_torch("x", x)
    with pl.at(level=pl.Level.CORE_GROUP, name_hint="task"):
        snap = pl.slice(src, [1, 8], [0, 0])
        pl.store(pl.full([1, 8], dtype=pl.FP32, value=-1.0), [0, 0], src)
    assert isinstance(snap, pl.Tile) and snap.data.tolist() == [vals[0]]
    for b in pl.spmd(2, name_hint="blocks"):
        assert isinstance(pl.slice(src, [1, 8], [b, 0]), pl.Tile)
    # a partly valid window stays a tile (poison past the valid part) even in orchestration
    part = pl.slice(src, [2, 8], [2, 0], valid_shape=[1, 8])
    assert isinstance(part, pl.Tile) and list(part.valid) == [1, 8]


def test_slice_view_past_the_tensor_is_a_tile_with_the_access_recorded(ctx):
    x, _ = grid(4, 8)
    src = Tensor.from_torch("x", x)
    t = pl.slice(src, [2, 8], [3, 0])
    assert isinstance(t, pl.Tile) and kinds(ctx, "oob-read")


def test_reshape_of_a_column_window_view_reads_it_whole(ctx):
    x, vals = grid(4, 8)
    cols = pl.slice(Tensor.from_torch("x", x), [4, 2], [0, 3])  # not contiguous: no flat view
    flat = pl.reshape(cols, [1, 8])
    assert isinstance(flat, pl.Tile) and flat.data.tolist() == [[v for row in vals for v in row[3:5]]]


def _fill_rows_through_views(h: pl.Tensor, x: pl.Tensor) -> None:
    # expert_routed's pattern: a window of a scratch tensor taken in orchestration code (here
    # inside a pl.parallel loop), written inside a task: the writes must land in the tensor.
    for t in pl.parallel(2, name_hint="tiles"):
        h_rows = h[t * 2 : t * 2 + 2]
        with pl.at(level=pl.Level.CORE_GROUP, name_hint="fill"):
            h_rows[:, 0:8] = pl.mul(pl.cast(x[t * 2 : t * 2 + 2, :], target_type=pl.FP32), 3.0)


@pytest.mark.parametrize("batch", [True, False])
def test_subscript_in_orchestration_code_is_a_view_that_writes_reach(batch):
    from equiv.tile import rewrite

    x, vals = grid(4, 8)
    with running(RunContext(Options(seed=5, batch_blocks=batch))) as ctx:
        h = Tensor("h", [4, 8], pl.FP32)
        rewrite.batched_kernel(_fill_rows_through_views)(h, Tensor.from_torch("x", x))
    assert h.data.tolist() == [[3 * v for v in row] for row in vals]
    assert bool(h.written.all()) and not ctx.findings


def test_subscript_in_kernel_code_is_a_tile(ctx):
    x, vals = grid(4, 8)
    src = Tensor.from_torch("x", x)
    assert isinstance(src[1:2, :], Tensor)  # orchestration code: a view
    for b in pl.spmd(2, name_hint="blocks"):
        t = src[b : b + 1, :]
        assert isinstance(t, pl.Tile) and t.data.tolist() == [vals[int(b)]]
    with pl.at(level=pl.Level.CORE_GROUP, name_hint="task"):
        assert isinstance(src[0:1, :], pl.Tile)
