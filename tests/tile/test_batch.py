"""Batched blocks (equiv.tile.batch): a stage run as one computation along a lane axis gives
bit-for-bit what running its blocks one at a time gives — outputs, written-masks, findings,
decisions and writer attribution — and a stage the batch cannot run falls back and is still
right. Values are also checked against torch arithmetic done here.
"""

import hashlib

import pytest
import torch

import equiv
from equiv import tile as pl
from equiv.tile.context import RunContext, running
from equiv.tile.memory import Tensor
from equiv.options import Options
from equiv.results import Case
from equiv.runner import SideRun, _run_once, make_inputs
from equiv.tile.batch import stages as _stages
from equiv.tile import rewrite, table
from equiv.tile.lanes import Lanes

N, R, C = 6, 4, 8


def run(kernel, inputs, outputs, batch, seed=5, **opts):
    scalars = {k: opts.pop(k) for k in list(opts) if k not in Options.__dataclass_fields__}
    ctx = RunContext(Options(seed=seed, batch_blocks=batch, **opts))
    with running(ctx):
        args = {k: Tensor.from_torch(k, v) for k, v in inputs.items()}
        args.update(scalars)
        outs = {k: Tensor(k, shape, dt) for k, (shape, dt) in outputs.items()}
        error = None
        try:
            rewrite.batched_kernel(kernel)(**args, **outs)
        except Exception as exc:  # noqa: BLE001 - compared between the two ways
            error = f"{type(exc).__name__}: {exc}"
    return ctx, outs, error


def both(kernel, inputs, outputs, **opts):
    """Run batched and one block at a time; assert the same bits, masks, findings, errors."""
    got = {}
    for batch in (True, False):
        ctx, outs, error = run(kernel, inputs, outputs, batch, **opts)
        got[batch] = (ctx, outs, error)
    (cb, ob, eb), (cs, os_, es) = got[True], got[False]
    assert eb == es
    for name in ob:
        assert torch.equal(ob[name].written, os_[name].written), name
        assert ob[name].data.view(-1).to(torch.float64).nan_to_num(7.25).tolist() == \
            os_[name].data.view(-1).to(torch.float64).nan_to_num(7.25).tolist(), name
        assert torch.equal(ob[name].writer, os_[name].writer), name
    assert [f.to_dict() for f in cb.findings.values()] == [f.to_dict() for f in cs.findings.values()]
    # the same block nodes (tokens, stages, blocks) in the same order
    assert [(t, n.stage, n.block, n.name) for t, n in cb.nodes.items()] == \
        [(t, n.stage, n.block, n.name) for t, n in cs.nodes.items()]
    assert cs.batch_stats == {}
    return cb, ob


def x_values():
    return torch.arange(N * R * C, dtype=torch.float32).reshape(N * R, C) / 7 - 3


# ---------------------------------------------------------------------------------------
# Kernels (PyPTO syntax)
# ---------------------------------------------------------------------------------------
def scale_rows(x: pl.Tensor, out: pl.Tensor) -> None:
    for b in pl.spmd(N, name_hint="rows"):
        r0 = b * R
        t = pl.cast(x[r0 : r0 + R, :], target_type=pl.FP32)
        s = pl.row_sum(t)
        y = pl.add(pl.mul(t, 0.5), pl.row_expand_mul(t, s))
        out[r0 : r0 + R, :] = pl.cast(y, target_type=pl.BF16, mode="rint")


def reads_block_data(x: pl.Tensor, out: pl.Tensor) -> None:
    # Control flow on a value read per block: the stage must run one block at a time.
    for b in pl.spmd(N, name_hint="rows"):
        r0 = b * R
        v = pl.read(x, [r0, 0])
        t = pl.cast(x[r0 : r0 + R, :], target_type=pl.FP32)
        if v > 0:
            t = pl.mul(t, 2.0)
        out[r0 : r0 + R, :] = pl.cast(t, target_type=pl.BF16, mode="rint")


def overlapping_writes(x: pl.Tensor, out: pl.Tensor) -> None:
    # Every block writes rows 0..R+1: a race, and unwritten rows past them.
    for b in pl.parallel(N, name_hint="rows"):
        t = pl.cast(x[0 : R + 2, :], target_type=pl.FP32)
        row = pl.cast(x[b * R : b * R + 1, :], target_type=pl.FP32)
        out[0 : R + 2, :] = pl.cast(pl.col_expand_add(t, row), target_type=pl.BF16, mode="rint")


def out_of_range(x: pl.Tensor, out: pl.Tensor) -> None:
    for b in pl.spmd(N, name_hint="rows"):
        r0 = b * R + 2  # the last block reads and writes 2 rows past the end
        t = pl.cast(x[r0 : r0 + R, :], target_type=pl.FP32)
        out[r0 : r0 + R, :] = pl.cast(t, target_type=pl.BF16, mode="rint")


def reads_what_it_writes(x: pl.Tensor, out: pl.Tensor) -> None:
    # Block b reads the rows block b-1 writes: the value depends on the block order.
    for b in pl.spmd(N, name_hint="rows"):
        src = ((b + N - 1) % N) * R
        t = pl.cast(out[src : src + R, :], target_type=pl.FP32)
        out[b * R : b * R + R, :] = pl.cast(pl.add(t, 1.0), target_type=pl.BF16, mode="rint")


def carried_across_blocks(x: pl.Tensor, out: pl.Tensor) -> None:
    acc = pl.full([R, C], dtype=pl.FP32, value=0.0)
    for b in pl.spmd(N, name_hint="rows"):
        acc = pl.add(acc, pl.cast(x[b * R : b * R + R, :], target_type=pl.FP32))
    out[0:R, :] = pl.cast(acc, target_type=pl.BF16, mode="rint")


def in_place_outer_tile(x: pl.Tensor, out: pl.Tensor) -> None:
    buf = pl.full([R, C], dtype=pl.FP32, value=0.0)
    for b in pl.spmd(N, name_hint="rows"):
        buf[0:1, :] = pl.add(buf[0:1, :], 1.0)
        out[b * R : b * R + R, :] = pl.cast(buf, target_type=pl.BF16, mode="rint")


OUT = {"out": ([N * R, C], pl.BF16)}


def bf16(t):
    return t.to(torch.bfloat16).to(torch.float64)


# ---------------------------------------------------------------------------------------
# The batched path runs and equals the one-by-one path
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("poison", ["nan", "pattern"])
def test_clean_stage_runs_batched_with_the_same_bits_as_one_by_one(seed, poison):
    ctx, outs = both(scale_rows, {"x": bf16(x_values()).to(torch.bfloat16)}, OUT, seed=seed, poison=poison)
    assert ctx.batch_stats == {"batched": 1}
    # and the values are right (float64 here, rounded per op as the kernel does)
    x = bf16(x_values()).reshape(N, R, C)
    s = x.to(torch.float32).sum(-1, keepdim=True)  # within fp32 rounding: compare loosely
    want = bf16((x * 0.5 + x * s.double()).reshape(N * R, C))
    assert torch.allclose(outs["out"].data.double(), want, rtol=2**-7, atol=1e-3)
    assert sorted(n.block for n in ctx.nodes.values() if n.name == "rows") == list(range(N))


def test_blocks_branching_on_data_they_read_split_into_groups_and_are_right():
    x = bf16(x_values())
    ctx, outs = both(reads_block_data, {"x": x.to(torch.bfloat16)}, OUT)
    assert ctx.batch_stats == {"split": 1, "batched": 1}
    rows = x.reshape(N, R, C)
    want = torch.where(rows[:, :1, :1] > 0, rows * 2, rows).reshape(N * R, C)
    assert torch.equal(outs["out"].data.double(), bf16(want))


def three_ways(x: pl.Tensor, out: pl.Tensor) -> None:
    for b in pl.spmd(N, name_hint="rows"):
        t = pl.cast(x[b * R : b * R + R, :], target_type=pl.FP32)
        if b % 3 == 0:
            t = pl.mul(t, 2.0)
        elif b % 3 == 1:
            t = pl.add(t, 1.0)
        out[b * R : b * R + R, :] = pl.cast(t, target_type=pl.BF16, mode="rint")


def test_a_stage_splitting_into_many_small_groups_runs_one_by_one_and_is_right():
    x = bf16(x_values())
    ctx, outs = both(three_ways, {"x": x.to(torch.bfloat16)}, OUT)
    assert "batched" not in ctx.batch_stats
    (why,) = [k for k in ctx.batch_stats if k != "split"]
    assert why.endswith("a comparison of a block-dependent value")
    assert f"test_batch.py:{_line(three_ways, 'elif b % 3 == 1')}:" in why
    rows = x.reshape(N, R, C)
    want = torch.stack([rows[b] * 2 if b % 3 == 0 else rows[b] + 1 if b % 3 == 1 else rows[b] for b in range(N)])
    assert torch.equal(outs["out"].data.double(), bf16(want.reshape(N * R, C)))


def test_races_and_unwritten_elements_are_reported_exactly_as_one_by_one():
    ctx, outs = both(overlapping_writes, {"x": x_values().to(torch.bfloat16)}, OUT)
    assert ctx.batch_stats == {"batched": 1}
    (race,) = [f for f in ctx.findings.values() if f.kind == "race"]
    assert race.region == [(0, R + 2), (0, C)] and race.site.endswith(f":{_line(overlapping_writes, 'out[0')}")
    assert int(outs["out"].written.sum()) == (R + 2) * C


def test_out_of_range_accesses_fall_back_and_are_found_at_the_kernel_line():
    ctx, outs = both(out_of_range, {"x": x_values().to(torch.bfloat16)}, OUT)
    assert "batched" not in ctx.batch_stats
    kinds = sorted(f.kind for f in ctx.findings.values())
    assert kinds == ["oob-read", "oob-write"]


def test_a_stage_reading_what_it_writes_falls_back_and_keeps_the_order_dependence():
    x = x_values().to(torch.bfloat16)
    ctx, outs = both(reads_what_it_writes, {"x": x}, OUT)
    assert any("which the stage writes" in why or "which the stage reads" in why for why in ctx.batch_stats)


def test_loops_that_carry_python_state_between_blocks_are_not_batched():
    x = bf16(x_values())
    ctx, outs = both(carried_across_blocks, {"x": x.to(torch.bfloat16)}, OUT)
    assert ctx.batch_stats == {}  # never attempted: the rewrite left the loop alone
    assert torch.equal(outs["out"].data[0:R].double(), bf16(x.reshape(N, R, C).to(torch.float32).sum(0).double()))


def test_in_place_writes_into_a_tile_made_before_the_stage_fall_back():
    ctx, outs = both(in_place_outer_tile, {"x": x_values().to(torch.bfloat16)}, OUT)
    assert any("in-place write" in why for why in ctx.batch_stats)
    # block k of the order sees k+1 increments, as one by one
    order = [n.block for n in ctx.nodes.values() if n.name == "rows"]
    for k, b in enumerate(order):
        assert outs["out"].data[b * R, 0].item() == k + 1


def _line(fn, text):
    import inspect

    lines, start = inspect.getsourcelines(fn)
    return start + next(i for i, ln in enumerate(lines) if text in ln)


# ---------------------------------------------------------------------------------------
# The rewrite: which loops are batched
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("body, batched", [
    ("    t = x[b:b+1, :]\n    out[b:b+1, :] = t\n", True),
    ("    acc = acc + 1\n", False),                       # carried from the previous block
    ("    t = x[b:b+1, :]\n    if t is None:\n        break\n", False),
    ("    last = b\n", False),                            # read after the loop
    ("    items.append(b)\n", False),                     # mutates a local list
    ("    for k in pl.range(4):\n        if k == 0:\n            a = k\n        else:\n            a = a + k\n", True),
])
def test_rewrite_batches_only_loops_without_python_state_between_blocks(body, batched):
    src = ("def k(x, out):\n    acc = 0\n    items = []\n    last = -1\n"
           "    for b in pl.spmd(4):\n" + "\n".join("    " + ln for ln in body.splitlines()) + "\n"
           "    return acc, items, last\n")
    import ast

    assert rewrite.rewrite_module(ast.parse(src), "<k>") is batched


def test_lane_values_answer_one_value_only_where_every_lane_agrees():
    from equiv.tile.errors import LaneSplit

    v = Lanes([0, 1, 2]) * 4 + 1
    assert v.values == [1, 5, 9] and (10 - v).values == [9, 5, 1] and (v // 2).values == [0, 2, 4]
    for ask in (int, float, lambda a: a < 3, lambda a: a == 1, lambda a: range(a), lambda a: bool(a - 5)):
        with pytest.raises(LaneSplit):
            ask(v)
    with pytest.raises(LaneSplit) as split:
        v < 6  # noqa: B015
    assert split.value.keys == [True, True, False]
    same = Lanes([3, 3, 3])
    assert int(same) == 3 and (same < 4) is True and bool(same) is True and list(range(same)) == [0, 1, 2]


# ---------------------------------------------------------------------------------------
# Every batch-native op against its per-lane run
# ---------------------------------------------------------------------------------------
NATIVE_CALLS = {
    "add": lambda a, b: pl.add(a, b), "sub": lambda a, b: pl.sub(a, 0.75), "mul": lambda a, b: pl.mul(a, b),
    "div": lambda a, b: pl.div(a, pl.add(pl.maximum(b, 0.5), 0.25)), "maximum": lambda a, b: pl.maximum(a, b),
    "minimum": lambda a, b: pl.minimum(b, a), "neg": lambda a, b: pl.neg(a), "abs": lambda a, b: pl.abs(a),
    "exp": lambda a, b: pl.exp(a), "sqrt": lambda a, b: pl.sqrt(pl.abs(a)), "recip": lambda a, b: pl.recip(b),
    "rsqrt": lambda a, b: pl.rsqrt(pl.add(pl.abs(a), 1.0)),
    "cast": lambda a, b: pl.cast(a, target_type=pl.BF16, mode="rint"),
    "row_sum": lambda a, b: pl.row_sum(a), "row_max": lambda a, b: pl.row_max(a), "row_min": lambda a, b: pl.row_min(b),
    "row_expand": lambda a, b: pl.row_expand(a, pl.row_max(b)), "col_expand": lambda a, b: pl.col_expand(a, b[0:1, :]),
    **{f"row_expand_{op}": (lambda op: lambda a, b: getattr(pl, f"row_expand_{op}")(a, pl.row_max(b)))(op)
       for op in ("mul", "add", "sub", "div", "max", "min")},
    **{f"col_expand_{op}": (lambda op: lambda a, b: getattr(pl, f"col_expand_{op}")(a, pl.add(b[0:1, :], 2.0)))(op)
       for op in ("mul", "add", "sub", "div", "max", "min")},
    "matmul": lambda a, b: pl.matmul(a, b, b_trans=True),
    "matmul_acc": lambda a, b: pl.matmul_acc(pl.matmul(a, b, b_trans=True), b, a, b_trans=True),
    "reshape": lambda a, b: pl.reshape(a, [R * C // 2, 2]),
    # index: |b| truncated, 0..4, within the row
    "gather": lambda a, b: pl.gather(a, dim=-1, index=pl.cast(b, target_type=pl.INT32, mode="trunc")),
}


def test_every_native_name_has_a_lane_test():
    bare = {n.split(".", 1)[-1] for n in table.BATCH_NATIVE | table.BATCH_EXPANDED}
    assert bare <= set(NATIVE_CALLS), sorted(bare - set(NATIVE_CALLS))


@pytest.mark.parametrize("op", sorted(NATIVE_CALLS))
def test_native_op_on_lane_tiles_equals_its_per_block_run(op):
    g = torch.Generator().manual_seed(11)
    a = (torch.randint(-6, 7, (N * R, C), generator=g).to(torch.float32) * 0.375 + 0.125).to(torch.bfloat16)
    b = (torch.randint(1, 9, (R, C), generator=g).to(torch.float32) * 0.5).to(torch.bfloat16)
    # The loop as the rewrite makes it, written out (the op is a parameter of the test).
    outs = {}
    for batch in (True, False):
        ctx = RunContext(Options(seed=2, batch_blocks=batch))
        with running(ctx):
            ta, tb = Tensor.from_torch("a", a), Tensor.from_torch("b", b)
            out = Tensor("out", [N, R * C], pl.FP32)
            loop = pl.spmd(N, name_hint="lanes")
            fn = NATIVE_CALLS[op]
            for i in _stages.attempts(loop):
                with _stages.guard():
                    t_a = pl.cast(ta[i * R : i * R + R, :], target_type=pl.FP32)
                    t_b = pl.cast(tb[0:R, :], target_type=pl.FP32)
                    y = fn(t_a, t_b)
                    y = pl.cast(y, target_type=pl.FP32) if y.dtype != pl.FP32 else y
                    n = 1
                    for s in y.shape:
                        n *= s
                    out[i : i + 1, 0:n] = pl.reshape(y, [1, n])
            outs[batch] = (out, dict(ctx.batch_stats))
    (ob, sb), (os_, _) = outs[True], outs[False]
    assert sb == {"batched": 1}, sb  # it really ran batched
    assert torch.equal(ob.written, os_.written)
    assert ob.data.nan_to_num(9.5).tolist() == os_.data.nan_to_num(9.5).tolist()


# ---------------------------------------------------------------------------------------
# Every registered pair at its presets, both ways
# ---------------------------------------------------------------------------------------
def _digest(outs, findings, error, observed: SideRun):
    h = hashlib.sha256()
    for k in sorted(outs or {}):
        t = outs[k]
        h.update(k.encode() + t.data.cpu().numpy().tobytes() + t.written.cpu().numpy().tobytes())
    h.update(repr(findings).encode() + repr(error).encode())
    h.update(repr(sorted((s, r.op, sorted(r.seen)) for s, r in (observed.decisions or {}).items())).encode())
    h.update(repr(observed.attribution).encode())
    return h.hexdigest()


@pytest.mark.parametrize("name", sorted(equiv.names()))
def test_every_registered_pair_gives_the_same_bits_batched_and_one_block_at_a_time(name):
    pair = equiv.get(name)
    for preset in pair.shapes.presets:
        for shape in pair.shapes.preset(preset):
            case = Case(shape, "realistic", 0)
            inputs = make_inputs(pair, case)
            for side in ("pre", "retiled"):
                if pair.rejection(side, shape):
                    continue
                for poison in ("nan", "pattern"):
                    digests = []
                    for batch in (True, False):
                        observed = SideRun(side)
                        outs, findings, error = _run_once(pair.kernel(side), pair, case, inputs,
                                                          Options(poison=poison, batch_blocks=batch), side,
                                                          observe=observed)
                        digests.append(_digest(outs, findings, error, observed))
                    assert digests[0] == digests[1], (name, preset, side, poison)


def scratch_per_block(x: pl.Tensor, out: pl.Tensor) -> None:
    # Each block's scratch tensor is its own: no race between blocks on it.
    for b in pl.spmd(N, name_hint="rows"):
        tmp = pl.create_tensor([R, C], dtype=pl.FP32)
        tmp[0:R, :] = pl.cast(x[b * R : b * R + R, :], target_type=pl.FP32)
        out[b * R : b * R + R, :] = pl.cast(pl.mul(pl.cast(x[b * R : b * R + R, :], target_type=pl.FP32), 3.0),
                                            target_type=pl.BF16, mode="rint")


def test_scratch_tensors_stay_one_per_block():
    ctx, outs = both(scratch_per_block, {"x": x_values().to(torch.bfloat16)}, OUT)
    assert not [f for f in ctx.findings.values() if f.kind == "race"]
    assert any("allocated by each block" in why for why in ctx.batch_stats)


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "maximum", "minimum"])
def test_a_per_block_scalar_operand_equals_that_scalar_in_each_block(op):
    a = (torch.arange(N * R * C, dtype=torch.float32).reshape(N * R, C) / 5 - 7).to(torch.bfloat16)
    outs = {}
    for batch in (True, False):
        ctx = RunContext(Options(seed=4, batch_blocks=batch))
        with running(ctx):
            ta = Tensor.from_torch("a", a)
            out = Tensor("out", [N * R, C], pl.FP32)
            for i in _stages.attempts(pl.spmd(N, name_hint="lanes")):
                with _stages.guard():
                    t = pl.cast(ta[i * R : i * R + R, :], target_type=pl.FP32)
                    # a value of a third binade per block, 1/3 not exact in fp32: rounding matters
                    out[i * R : i * R + R, :] = getattr(pl, op)(t, i * 0.75 + 1 / 3)
            outs[batch] = (out.data.clone(), dict(ctx.batch_stats))
    assert outs[True][1] == {"batched": 1}
    assert torch.equal(outs[True][0], outs[False][0])
    # against float64: each block's scalar rounded to fp32 once, the result once
    x = a.to(torch.float64).reshape(N, R, C)
    s = torch.tensor([b * 0.75 + 1 / 3 for b in range(N)], dtype=torch.float64).to(torch.float32).double()
    f = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div,
         "maximum": torch.maximum, "minimum": torch.minimum}[op]
    want = f(x, s.reshape(N, 1, 1)).to(torch.float32).double().reshape(N * R, C)
    assert torch.equal(outs[True][0], want)


def lane_bounds(x: pl.Tensor, out: pl.Tensor) -> None:
    for b in pl.spmd(N, name_hint="rows"):
        for r in pl.range(b * R, b * R + R, 2):
            out[r : r + 2, :] = pl.cast(pl.add(pl.cast(x[r : r + 2, :], target_type=pl.FP32), 1.0),
                                        target_type=pl.BF16, mode="rint")


def lane_trip_counts(x: pl.Tensor, out: pl.Tensor) -> None:
    for b in pl.spmd(N, name_hint="rows"):
        for r in pl.range(b * R, b * R + b % 2 + 1):  # 1 or 2 iterations
            out[r : r + 1, :] = x[r : r + 1, :]


def test_loops_with_per_block_bounds_run_batched_when_every_block_makes_the_same_trips():
    x = x_values().to(torch.bfloat16)
    ctx, outs = both(lane_bounds, {"x": x}, OUT)
    assert ctx.batch_stats == {"batched": 1}
    assert torch.equal(outs["out"].data.double(), bf16(x.double() + 1))
    ctx, outs = both(lane_trip_counts, {"x": x}, OUT)
    assert any("trip count differs per block" in why for why in ctx.batch_stats)
    assert int(outs["out"].written.sum()) == sum(b % 2 + 1 for b in range(N)) * C


def predicated(x: pl.Tensor, n_active: int, out: pl.Tensor) -> None:
    for b in pl.spmd(N, name_hint="rows"):
        if b < n_active:
            out[b * R : b * R + R, :] = pl.cast(pl.mul(pl.cast(x[b * R : b * R + R, :], target_type=pl.FP32), 2.0),
                                                target_type=pl.BF16, mode="rint")
        else:
            out[b * R : b * R + R, :] = x[b * R : b * R + R, :]


def test_blocks_that_branch_differently_split_into_batched_groups():
    x = x_values().to(torch.bfloat16)
    for n_active in (0, 2, N):
        ctx, outs = both(predicated, {"x": x}, OUT, n_active=n_active)
        assert ctx.batch_stats.get("batched") == 1
        assert ctx.batch_stats.get("split", 0) == (1 if 0 < n_active < N else 0)
        rows = x.double().reshape(N, R, C)
        want = torch.cat([bf16(rows[b] * 2) if b < n_active else rows[b] for b in range(N)])
        assert torch.equal(outs["out"].data.double(), want)


def test_bench_says_which_stages_ran_batched_and_why_the_others_did_not():
    from equiv.bench import bench_preset

    (row,) = bench_preset(equiv.get("indexer.qr_rope"), "demo", Options())
    assert row.batched == "2/2"
    (row,) = bench_preset(equiv.get("csa.sparse_index"), "demo", Options())
    reasons = [why for why in row.stages if why not in ("batched", "split")]
    assert row.batched.endswith("/" + str(row.stages.get("batched", 0) + sum(row.stages[w] for w in reasons)))
    assert reasons and all("csa_sparse_index/" in why for why in reasons)
    (row,) = bench_preset(equiv.get("indexer.qr_rope"), "demo", Options(batch_blocks=False))
    assert row.batched == "-"


def reads_past_the_end(x: pl.Tensor, out: pl.Tensor) -> None:
    for b in pl.spmd(N, name_hint="rows"):
        v = pl.read(x, [b * R + R + 1, 0])  # the last block reads past x
        t = pl.mul(pl.cast(x[b * R : b * R + R, :], target_type=pl.FP32), v)
        out[b * R : b * R + R, :] = pl.cast(t, target_type=pl.BF16, mode="rint")


def test_per_block_scalar_reads_read_every_block_element_and_find_the_one_out_of_range():
    x = bf16(x_values())
    ctx, outs = both(reads_past_the_end, {"x": x.to(torch.bfloat16)}, OUT)
    (f,) = [f for f in ctx.findings.values() if f.kind == "oob-read"]
    assert f.site.endswith(f":{_line(reads_past_the_end, 'v = pl.read')}")
    rows = x.reshape(N, R, C)
    for b in range(N - 1):
        assert torch.equal(outs["out"].data[b * R : b * R + R].double(), bf16(rows[b] * x[b * R + R + 1, 0]))


def scalar_operands(x: pl.Tensor, w: pl.Tensor, out: pl.Tensor, zeros: pl.Tensor) -> None:
    # Per-block scalars read from an FP32 tensor, used by an FP32 op (exact as read) and by a
    # BF16 op (each rounded to BF16 first); +0.0 and then -0.0 as scalar operands.
    for b in pl.spmd(N, name_hint="rows"):
        r0 = b * R
        s = pl.read(w, [b])
        t = pl.cast(x[r0 : r0 + R, :], target_type=pl.FP32)
        y32 = pl.add(pl.mul(t, s), pl.mul(t, 0.0))
        out[r0 : r0 + R, :] = pl.mul(pl.cast(y32, target_type=pl.BF16, mode="rint"), s)
        zeros[r0 : r0 + R, :] = pl.cast(pl.mul(t, -0.0), target_type=pl.BF16, mode="rint")


def test_lane_scalars_round_to_the_op_type_unless_read_as_that_type():
    x = bf16(x_values())
    w = torch.tensor([1 + 2**-20, -3 - 2**-12, 0.1, 1.0, -0.0, 7.0 + 2**-9], dtype=torch.float32)
    ctx, outs = both(scalar_operands, {"x": x.to(torch.bfloat16), "w": w}, {**OUT, "zeros": OUT["out"]})
    assert ctx.batch_stats == {"batched": 1}
    x, w64 = x.reshape(N, R, C), w.double()
    y32 = (x * w64[:, None, None]).to(torch.float32).double() + x * 0.0
    w16 = w64.to(torch.bfloat16).double()  # the BF16 op rounds each block's scalar to BF16
    want = bf16(bf16(y32) * w16[:, None, None])
    got = outs["out"].data.double().reshape(N, R, C)
    assert got.tolist() == want.tolist()
    assert torch.equal(torch.signbit(got), torch.signbit(want))
    # -0.0 is its own operand, not the +0.0 used before it: x · -0.0 is -0 where x > 0
    zeros = outs["zeros"].data.double().reshape(N, R, C)
    assert torch.equal(torch.signbit(zeros), torch.signbit(x * -0.0)) and bool((zeros == 0).all())


def scattered_reads(x: pl.Tensor, out: pl.Tensor) -> None:
    # Windows at offsets that are not on an evenly spaced grid (rows b·b mod 19, column b % 3).
    for b in pl.spmd(N, name_hint="rows"):
        r = (b * b) % 19
        c = b % 3
        t = pl.cast(x[r : r + 2, c : c + 4], target_type=pl.FP32)
        out[b * R : b * R + 2, 0:4] = pl.cast(pl.add(t, 1.0), target_type=pl.BF16, mode="rint")


def scattered_rows(x: pl.Tensor, out: pl.Tensor) -> None:
    # The same columns for every block, rows off any grid: read as whole rows, then narrowed.
    for b in pl.spmd(N, name_hint="rows"):
        r = (b * b) % 19
        t = pl.cast(x[r : r + 2, 3 : 7], target_type=pl.FP32)
        out[b * R : b * R + 2, 0:4] = pl.cast(pl.add(t, 1.0), target_type=pl.BF16, mode="rint")


@pytest.mark.parametrize("kernel", [scattered_reads, scattered_rows])
def test_windows_off_any_grid_are_read_at_once_with_each_blocks_values(kernel):
    x = bf16(x_values())
    ctx, outs = both(kernel, {"x": x.to(torch.bfloat16)}, OUT)
    assert ctx.batch_stats == {"batched": 1}
    got = outs["out"].data.double().reshape(N, R, C)
    for b in range(N):
        r, c = (b * b) % 19, (b % 3 if kernel is scattered_reads else 3)
        assert got[b, :2, :4].tolist() == bf16(x[r : r + 2, c : c + 4] + 1.0).tolist(), b
