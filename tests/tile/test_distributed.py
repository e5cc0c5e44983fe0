"""pypto.language.distributed: ranks run in one process, each with its own windows.

The programs are PyPTO files under tests/fixtures/distributed/, loaded through source mode
(so ``import pypto.language.distributed as pld`` and ``from pypto.language import
distributed`` go through its import hook). Values are checked against numpy float32 /
Python integer arithmetic done here, not through the emulator.
"""

import os

import numpy as np
import pytest
import torch

from equiv.tile.errors import KernelError, UnsupportedOpError
from equiv.tile.context import RunContext, running
from equiv.tile.memory import Tensor
from equiv.options import Options
from equiv.source import load_kernel
from equiv.tile.distributed import dsl_types, ops, shims
from equiv.tile.distributed import world as pld_world

HERE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "distributed")
EXCHANGE = os.path.join(HERE, "exchange.py")
COLLECTIVES = os.path.join(HERE, "collectives.py")
N = 4


def line_of(path, text):
    with open(path) as fh:
        return next(i for i, line in enumerate(fh, 1) if text in line)


PUT_LINE = line_of(EXCHANGE, "pld.tensor.put(")
COPY_LINE = line_of(EXCHANGE, "y[blk * ROWS:(blk + 1) * ROWS, :] = data[")


def run(path, entry, inputs, outputs, seed=0, world=N):
    """Run host entry `entry` on `inputs` (torch) with poisoned `outputs` ({name: (shape, dtype)})."""
    fn = load_kernel(path, entry)
    with running(RunContext(Options(seed=seed))) as ctx:
        args = {k: Tensor.from_torch(k, v) for k, v in inputs.items()}
        outs = {k: Tensor.from_torch(k, torch.zeros(shape, dtype=dt)) for k, (shape, dt) in outputs.items()}
        for t in outs.values():  # poison: an element no rank writes stays NaN / unwritten
            t.data.fill_(float("nan") if t.dtype.is_float else -7)
            t.written.zero_()
        with pld_world.configured(world):
            fn(**args, **outs)
    return fn, ctx, outs


def findings(ctx, kind):
    return [f for f in ctx.findings.values() if f.kind == kind]


def gather_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(N, 2, 8, generator=g)}


GATHER_OUT = {"y": ([N, N * 2, 8], torch.float32)}


# --- remote writes, notify / wait --------------------------------------------------------
def test_every_rank_receives_every_rank_rows_and_clearing_after_wait_is_no_race():
    x = gather_inputs()["x"]
    _, ctx, outs = run(EXCHANGE, "gather_host", {"x": x}, GATHER_OUT)
    y = outs["y"]
    assert bool(y.written.all())
    expected = torch.cat([x[r] for r in range(N)], dim=0)  # rows of rank r at slot r
    for r in range(N):
        assert torch.equal(y.to_torch()[r], expected)
    assert ctx.findings == {}


def test_two_ranks_writing_one_remote_element_is_a_cross_rank_race():
    for seed in range(3):
        _, ctx, _ = run(EXCHANGE, "gather_host_same_slot", gather_inputs(), GATHER_OUT, seed=seed)
        races = findings(ctx, "race")
        assert {f.tensor for f in races} == {f"data@rank{r}" for r in range(N)}
        assert all("cross-rank race" in f.detail and f.site.endswith(f"exchange.py:{PUT_LINE}") for f in races)
        assert all(f.region == [(0, 2), (0, 8)] for f in races)


def test_owner_clearing_its_window_unordered_with_a_peer_push_is_a_race():
    _, ctx, _ = run(EXCHANGE, "gather_host_zero_first", gather_inputs(), GATHER_OUT, seed=1)
    races = findings(ctx, "race")
    assert races and all("cross-rank race" in f.detail for f in races)


def test_reading_a_window_without_waiting_for_the_writers_is_a_race_in_every_rank_order():
    for seed in range(4):
        _, ctx, _ = run(EXCHANGE, "gather_host_no_wait", gather_inputs(), GATHER_OUT, seed=seed)
        races = findings(ctx, "race")
        on_data = [f for f in races if f.tensor.startswith("data@")]
        # Whoever ran first, the unordered pair is seen: a read after the push (at the copy)
        # or a push after the read (at the put).
        assert on_data and all("read by rank" in f.detail for f in on_data)
        assert {f.site.rpartition(":")[2] for f in on_data} <= {str(PUT_LINE), str(COPY_LINE)}
        # Clearing the counters no wait consumed races with the peers' notifies.
        on_signal = [f for f in races if f.tensor.startswith("signal@")]
        assert on_signal and all("written by rank" in f.detail for f in on_signal)


def test_remote_write_past_the_window_end_is_recorded_at_the_put():
    _, ctx, _ = run(EXCHANGE, "gather_host_past_end", gather_inputs(), GATHER_OUT)
    oob = findings(ctx, "oob-write")
    assert oob and all(f.site.endswith(f"exchange.py:{PUT_LINE}") for f in oob)
    assert all("write to data@rank" in f.detail and "[8:10, 0:8]" in f.detail for f in oob)


def test_race_free_program_gives_the_same_bits_under_every_rank_order():
    orders, results = set(), []
    for seed in range(6):
        fn, ctx, outs = run(EXCHANGE, "gather_host", gather_inputs(), GATHER_OUT, seed=seed)
        orders.add(tuple(fn.last_order))
        results.append(outs["y"].to_torch())
        assert ctx.findings == {}
    assert len(orders) > 1  # the seed really reorders the ranks
    assert all(torch.equal(r, results[0]) for r in results)


def test_rank_order_follows_the_seed():
    a = run(EXCHANGE, "gather_host", gather_inputs(), GATHER_OUT, seed=4)[0].last_order
    b = run(EXCHANGE, "gather_host", gather_inputs(), GATHER_OUT, seed=4)[0].last_order
    assert a == b and sorted(a) == list(range(N))


# --- atomic remote stores, Set / Eq signals, remote loads --------------------------------
def test_atomic_remote_adds_wrap_like_int32_and_every_rank_loads_the_total():
    x = torch.zeros(N, 2, 8, dtype=torch.int32)
    x[0] = 2**31 - 1
    x[1] = 1                      # 2**31 - 1 + 1 wraps to -2**31
    x[2, 0] = torch.arange(8, dtype=torch.int32) - 4
    x[3, 1] = -(2**31)
    _, ctx, outs = run(COLLECTIVES, "total_host", {"x": x}, {"y": ([N, 2, 8], torch.int32)})
    total = [[sum(int(x[r, i, j]) for r in range(N)) for j in range(8)] for i in range(2)]
    wrapped = torch.tensor([[(v + 2**31) % 2**32 - 2**31 for v in row] for row in total], dtype=torch.int32)
    for r in range(N):
        assert torch.equal(outs["y"].to_torch()[r], wrapped)
    assert ctx.findings == {}  # atomic adds from four ranks into one element do not race


def test_a_wait_no_rank_can_satisfy_is_a_deadlock_naming_the_sites():
    with pytest.raises(KernelError, match=r"deadlock: rank 0 at .*collectives.py:\d+ waits for arrived@rank0\[0, 0\] >= 5"):
        run(COLLECTIVES, "total_host_waits_forever", {"x": torch.ones(N, 2, 8, dtype=torch.int32)},
            {"y": ([N, 2, 8], torch.int32)})


# --- collectives ---------------------------------------------------------------------------
def f32_mesh(values, me, op):
    """Own value first, then peers in ascending rank, rounding to float32 after each step."""
    acc = np.float32(values[me])
    for r in range(len(values)):
        if r != me:
            acc = np.float32(op(acc, np.float32(values[r])))
    return acc


def collective_inputs():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(N, 1, 8, generator=g)
    # Column 0: ties that decide bits. Rank 0 adds 2^-24 + 2^-24 before 1.0 and keeps
    # 1 + 2^-23; rank 2 adds 1.0 + 2^-24 first, a tie that rounds to even (1.0).
    x[:, 0, 0] = torch.tensor([2.0**-24, 2.0**-24, 1.0, 0.0])
    xs = torch.randn(N, N, 8, generator=g)
    return {"x": x, "xs": xs}


COLLECTIVE_OUT = {"out_sum": ([N, 1, 8], torch.float32), "out_max": ([N, 1, 8], torch.float32),
                  "out_gather": ([N, N, 8], torch.float32), "out_bcast": ([N, 1, 8], torch.float32),
                  "out_rs": ([N, 1, 8], torch.float32), "out_a2a": ([N, N, 8], torch.float32)}


@pytest.fixture(scope="module")
def collectives_run():
    inputs = collective_inputs()
    _, ctx, outs = run(COLLECTIVES, "collectives_host", inputs, COLLECTIVE_OUT, seed=3)
    return inputs, ctx, {k: v.to_torch().numpy() for k, v in outs.items()}, outs


def test_collectives_write_every_output_without_findings(collectives_run):
    _, ctx, _, outs = collectives_run
    assert ctx.findings == {}
    assert all(bool(t.written.all()) for t in outs.values())


def test_allreduce_sum_rounds_in_mesh_order(collectives_run):
    inputs, _, out, _ = collectives_run
    x = inputs["x"].numpy()
    for r in range(N):
        for j in range(8):
            want = f32_mesh([x[p, 0, j] for p in range(N)], r, lambda a, b: a + b)
            assert out["out_sum"][r, 0, j].tobytes() == want.tobytes()
    assert out["out_sum"][0, 0, 0] == np.float32(1 + 2.0**-23) and out["out_sum"][2, 0, 0] == np.float32(1.0)


def test_allreduce_max_allgather_broadcast(collectives_run):
    inputs, _, out, _ = collectives_run
    x = inputs["x"].numpy()
    for r in range(N):
        assert np.array_equal(out["out_max"][r, 0], np.max(x[:, 0, :], axis=0))
        assert np.array_equal(out["out_gather"][r], x[:, 0, :])
        assert np.array_equal(out["out_bcast"][r, 0], x[2, 0])  # ROOT = 2


def test_reduce_scatter_and_all_to_all(collectives_run):
    inputs, _, out, _ = collectives_run
    xs = inputs["xs"].numpy()
    for r in range(N):
        for j in range(8):
            want = f32_mesh([xs[p, r, j] for p in range(N)], r, lambda a, b: a + b)
            assert out["out_rs"][r, 0, j].tobytes() == want.tobytes()
        assert np.array_equal(out["out_a2a"][r], np.stack([xs[src, r] for src in range(N)]))


# --- world size and source mode ------------------------------------------------------------
def test_world_size_comes_from_the_files_distributed_config():
    import equiv.source as source

    loader = source.SourceLoader()
    mod = loader.load(source.SourceRef(EXCHANGE, "gather_host"), {})
    assert pld_world.world_size_from({"distributed_config": mod.CONFIG}) == N
    assert pld_world.world_size_from({}) is None


def test_host_without_a_world_size_says_how_to_set_it():
    fn = load_kernel(EXCHANGE, "gather_host")
    with running(RunContext(Options())):
        x = Tensor.from_torch("x", torch.zeros(N, 2, 8))
        y = Tensor.from_torch("y", torch.zeros(N, 8, 8))
        # an emulator gap (cannot judge), never a kernel error turned into a verdict
        with pytest.raises(UnsupportedOpError, match="without a world size.*configured"):
            fn(x, y)


def test_uncovered_distributed_name_is_reported_by_its_dotted_name():
    from equiv.tile.errors import UnsupportedOpError

    shim = shims.make_shim()
    assert shim.tensor.put is ops.put and shim.NotifyOp.AtomicAdd == dsl_types.NotifyOp.AtomicAdd
    with pytest.raises(UnsupportedOpError, match="pld.no_such_op"):
        shim.no_such_op


def test_an_uncovered_op_in_one_rank_stops_every_rank_and_names_the_op():
    from equiv.tile.errors import UnsupportedOpError

    for seed in range(3):  # rank 0 may be waiting for the failing rank, or not started yet
        with pytest.raises(UnsupportedOpError, match=r"pl.not_an_emulated_op") as err:
            run(COLLECTIVES, "failing_host", {"x": torch.zeros(N, 1, dtype=torch.int32)}, {}, seed=seed)
        assert err.value.site.endswith(f"collectives.py:{line_of(COLLECTIVES, 'pl.not_an_emulated_op(')}")
    import threading

    assert not [t for t in threading.enumerate() if t.name.startswith("equiv-rank")]  # none left behind


def test_a_whole_host_tensor_reaches_every_rank_and_unsynchronised_writes_to_it_race():
    x = torch.arange(N * 2 * 8, dtype=torch.int32).reshape(N, 2, 8)
    w = -torch.arange(16, dtype=torch.int32).reshape(2, 8)
    _, ctx, outs = run(COLLECTIVES, "shared_host", {"x": x, "w": w},
                       {"y": ([N, 2, 8], torch.int32), "last": ([1, 8], torch.int32)})
    y = outs["y"].to_torch()
    for r in range(N):
        assert torch.equal(y[r, 0], x[r, 0]) and torch.equal(y[r, 1], w[1])
    races = findings(ctx, "race")
    assert [f.tensor for f in races] == ["last"] and "rank[" in races[0].detail


@pytest.mark.parametrize("seed", range(4))  # rank orders: rank 0 suspended in its task first, or not
def test_a_slice_in_a_ranks_own_code_is_a_view_its_kernels_load_and_store(seed):
    x = torch.arange(N * 2 * 8, dtype=torch.int32).reshape(N, 2, 8)
    _, ctx, outs = run(COLLECTIVES, "sliced_host", {"x": x}, {"y": ([N, 2, 8], torch.int32)}, seed=seed)
    y = outs["y"].to_torch()
    for r in range(N):
        assert y[r, 0].tolist() == (2 * x[r, 1]).tolist()
    assert outs["y"].written.reshape(N, 2, 8).any(dim=2).tolist() == [[True, False]] * N
    assert not ctx.findings
