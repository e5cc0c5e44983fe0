"""Schedules: an output whose bits depend on an order the device leaves free (the order of a
stage's blocks, hence of their atomic adds; the turn order of ranks) is nondeterministic.

Pair-free toy repositories (tests/test_pairfree.py's builder) hold split-K kernels that
accumulate partial matmuls into an FP32 output with atomic adds, or with a fixed-order
reduction, and a multi-rank reduction by remote atomic adds; each case runs every version
under several schedules.
"""

from __future__ import annotations

import json

import pytest

from tests.test_pairfree import check, commit, git, make_repo
from tests.test_pairfree_gate import gate

CONFIG = '''
from dataclasses import dataclass


@dataclass(frozen=True)
class Cfg:
    name: str
    hidden_size: int


DEMO = Cfg("demo", 16)
TOKENS = 4
'''

HEADER = '''
import pypto.language as pl

from config import DEMO as M, TOKENS

T = TOKENS
N = M.hidden_size
K = 64
K_TILE = 16
'''

# The partial products of the K // K_TILE blocks are summed by atomic adds into y: their
# arrival order is the blocks' order, which the device leaves free.
ATOMIC = HEADER + '''

@pl.jit
def splitk_test(x: pl.Tensor[[T, K], {dt}], w: pl.Tensor[[K, N], {dt}], y: pl.Out[pl.Tensor[[T, N], {dt}]]):
    for z in pl.spmd(1, name_hint="zero"):
        pl.store(pl.tile.full([T, N], dtype={dt}, value=0), [0, 0], y)
    for k in pl.spmd(K // K_TILE, name_hint="splitk"):
        xt = pl.load(x, [0, k * K_TILE], [T, K_TILE])
        wt = pl.load(w, [k * K_TILE, 0], [K_TILE, N])
        pl.assemble(y, pl.matmul(xt, wt), [0, 0], atomic=pl.AtomicType.Add)  # ATOMIC
    return y
'''

# The same sum in a fixed order: one block folds the K chunks one after another.
FIXED = HEADER + '''

@pl.jit
def splitk_test(x: pl.Tensor[[T, K], {dt}], w: pl.Tensor[[K, N], {dt}], y: pl.Out[pl.Tensor[[T, N], {dt}]]):
    for z in pl.spmd(1, name_hint="fold"):
        acc = pl.matmul(pl.load(x, [0, 0], [T, K_TILE]), pl.load(w, [0, 0], [K_TILE, N]))
        for k in pl.range(1, K // K_TILE):
            xt = pl.load(x, [0, k * K_TILE], [T, K_TILE])
            wt = pl.load(w, [k * K_TILE, 0], [K_TILE, N])
            acc = pl.add(acc, pl.matmul(xt, wt))
        pl.store(acc, [0, 0], y)
    return y
'''

TAIL = '''

def golden_splitk(tensors):
    tensors["y"][:] = tensors["x"] @ tensors["w"]


def build_tensor_specs():
    import torch
    from golden import TensorSpec

    return [
        TensorSpec("x", [T, K], {torch_dt}, init_value={init}),
        TensorSpec("w", [K, N], {torch_dt}, init_value={init}),
        TensorSpec("y", [T, N], {torch_dt}, is_output=True),
    ]


if __name__ == "__main__":
    from golden import run_jit

    run_jit(fn=splitk_test, specs=build_tensor_specs(), golden_fn=golden_splitk, rtol=1e-4, atol=1e-4)
'''

FILE = "models/toy/splitk.py"


def source(body: str, integer: bool = False) -> str:
    if integer:
        # Zero-argument callables, as the golden harness takes them (shapes from the module).
        text = body.format(dt="pl.INT32") + TAIL.format(torch_dt="torch.int32", init="{init}")
        text = text.replace('"x", [T, K], torch.int32, init_value={init}',
                            '"x", [T, K], torch.int32, init_value=lambda: torch.randint(-4096, 4096, (T, K))')
        return text.replace('"w", [K, N], torch.int32, init_value={init}',
                            '"w", [K, N], torch.int32, init_value=lambda: torch.randint(-4096, 4096, (K, N))')
    return body.format(dt="pl.FP32") + TAIL.format(torch_dt="torch.float32", init="torch.randn")


def line_of(text: str, marker: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if marker in line)


@pytest.fixture
def repo(tmp_path):
    r = make_repo(tmp_path)
    (r / "models" / "toy" / "config.py").write_text(CONFIG)
    git(r, "add", "models/toy/config.py")
    return r


def run_check(repo, a, b, tmp_path, *extra):
    out = tmp_path / "r.json"
    rc = check(repo, FILE, a, b, "--json", str(out), *extra)
    return rc, json.loads(out.read_text())


def outputs_of(doc):
    results = [r for c in doc["checks"] for r in c["results"]]
    assert results, doc
    return results


def test_atomic_split_k_sum_is_nondeterministic_and_names_the_atomic(repo, capsys, tmp_path):
    text = source(ATOMIC)
    a = commit(repo, {FILE: text})
    rc, doc = run_check(repo, a, a, tmp_path)
    out = capsys.readouterr().out
    line = line_of(text, "# ATOMIC")
    for r in outputs_of(doc):
        y = r["outputs"]["y"]
        assert y["verdict"] == "both-defect"
        nd = y["nondeterministic"]["pre"]
        assert nd["count"] > 0 and nd["spread"] >= 1 and nd["schedules"] == 2
        assert any(f"splitk.py:{line}" in op and op.startswith("atomic add into y") for op in nd["operations"])
        hz = [h for h in r["hazards"]["retiled"] if h["kind"] == "nondeterministic"]
        assert hz and hz[0]["tensor"] == "y" and hz[0]["site"].endswith(f"splitk.py:{line}")
        assert "splitk[" in hz[0]["detail"]  # the blocks whose adds arrive in a free order
        # The cause is the order of the adds, never uninitialised memory.
        assert not y["poisoned"]
    assert "nondeterministic" in out and f"splitk.py:{line}" in out
    assert "uninitialised" not in out


def test_fixed_order_split_k_sum_is_clean(repo, capsys, tmp_path):
    a = commit(repo, {FILE: source(FIXED)})
    rc, doc = run_check(repo, a, a, tmp_path)
    assert rc == 0
    for r in outputs_of(doc):
        assert r["outputs"]["y"]["verdict"] == "equivalent"
        assert not r["outputs"]["y"]["nondeterministic"]
        assert not any(h["kind"] == "nondeterministic" for hs in r["hazards"].values() for h in hs)


def test_retile_that_introduces_the_atomics_is_a_regression(repo, capsys, tmp_path):
    a = commit(repo, {FILE: source(FIXED)})
    b = commit(repo, {FILE: source(ATOMIC)})
    rc, doc = run_check(repo, a, b, tmp_path)
    assert rc == 1
    out = capsys.readouterr().out
    for r in outputs_of(doc):
        y = r["outputs"]["y"]
        assert y["verdict"] == "regression"
        assert "retiled" in y["nondeterministic"] and "pre" not in y["nondeterministic"]
        assert any(reason.startswith("retiled nondeterministic on y") for reason in y["reasons"])
    assert "REGRESSION" in out and "uninitialised" not in out


def test_retile_that_removes_the_atomics_fixes_pre(repo, tmp_path):
    a = commit(repo, {FILE: source(ATOMIC)})
    b = commit(repo, {FILE: source(FIXED)})
    rc, doc = run_check(repo, a, b, tmp_path)
    assert rc == 0
    for r in outputs_of(doc):
        y = r["outputs"]["y"]
        assert y["verdict"] == "pre-defect"
        # Compared under the same schedule, and said to lie within pre's own schedule spread.
        assert any("within pre's own schedule spread" in reason for reason in y["reasons"])


def test_integer_atomic_adds_are_order_independent_and_clean(repo, tmp_path):
    a = commit(repo, {FILE: source(ATOMIC, integer=True)})
    rc, doc = run_check(repo, a, a, tmp_path, "--schedules", "4")
    assert rc == 0
    for r in outputs_of(doc):
        assert r["outputs"]["y"]["verdict"] == "equivalent"
        assert not r["outputs"]["y"]["nondeterministic"]


def test_one_schedule_turns_the_check_off_and_poison_still_names_no_false_cause(repo, tmp_path):
    a = commit(repo, {FILE: source(ATOMIC)})
    rc, doc = run_check(repo, a, a, tmp_path, "--schedules", "1")
    for r in outputs_of(doc):
        y = r["outputs"]["y"]
        assert not y["nondeterministic"] and not y["poisoned"] and y["verdict"] == "equivalent"


def test_gate_fails_a_change_that_makes_an_output_nondeterministic(repo, capsys):
    base = commit(repo, {FILE: source(FIXED)})
    head = commit(repo, {FILE: source(ATOMIC)})
    assert gate(repo, base, head) == 1
    out = capsys.readouterr().out
    assert "nondeterministic" in out


def test_gate_passes_a_change_to_a_file_whose_base_is_already_nondeterministic(repo, capsys):
    base = commit(repo, {FILE: source(ATOMIC)})
    head = commit(repo, {FILE: source(ATOMIC).replace("xt", "x_tile")})
    assert gate(repo, base, head) == 0
    out = capsys.readouterr().out
    assert "PASS" in out


# --- ranks: a hand-made reduction whose sum is in the ranks' arrival order ----------------
RANKS = '''
import pypto.language as pl
from pypto.language import distributed as pld
from pypto.ir.distributed_compiled_program import DistributedConfig

from config import TOKENS

N_RANKS = 4
ROWS = TOKENS
COLS = 8


@pl.jit
def reduce_rank(
    x: pl.Tensor[[ROWS, COLS], {dt}],
    y: pl.Out[pl.Tensor[[ROWS, COLS], {dt}]],
    total: pld.DistributedTensor[[ROWS, COLS], {dt}],
    arrived: pld.DistributedTensor[[1, 1], pl.INT32],
    ready: pld.DistributedTensor[[1, 1], pl.INT32],
    my_rank: pl.Scalar[pl.INT32],
):
    {contribute}
    pld.system.notify(target=arrived, peer=0, offsets=[0, 0], value=1, op=pld.NotifyOp.AtomicAdd)
    if my_rank == 0:
        pld.system.wait(signal=arrived, offsets=[0, 0], expected=N_RANKS, cmp=pld.WaitCmp.Ge)
        {combine}
        for peer in pl.range(1, N_RANKS):
            pld.system.notify(target=ready, peer=peer, offsets=[0, 0], value=1, op=pld.NotifyOp.Set)
        y[0:ROWS, :] = total[0:ROWS, :]
    else:
        pld.system.wait(signal=ready, offsets=[0, 0], expected=1, cmp=pld.WaitCmp.Eq)
        y[0:ROWS, :] = pld.tile.remote_load(total, peer=0, offsets=[0, 0], shape=[ROWS, COLS])


@pl.jit.host
def reduce_test(x: pl.Tensor[[N_RANKS, ROWS, COLS], {dt}], y: pl.Out[pl.Tensor[[N_RANKS, ROWS, COLS], {dt}]]):
    total_buf = pld.alloc_window_buffer(ROWS * COLS * 4 * N_RANKS)
    arrived_buf = pld.alloc_window_buffer(4)
    ready_buf = pld.alloc_window_buffer(4)
    for r in pl.range(pld.world_size()):
        total = pld.window(total_buf, [{rows}, COLS], dtype={dt})
        arrived = pld.window(arrived_buf, [1, 1], dtype=pl.INT32)
        ready = pld.window(ready_buf, [1, 1], dtype=pl.INT32)
        reduce_rank(x[r], y[r], total, arrived, ready, r, device=r)


def golden_reduce(tensors):
    tensors["y"][:] = tensors["x"].sum(dim=0, keepdim=True)


def build_tensor_specs():
    import torch
    from golden import TensorSpec

    return [
        TensorSpec("x", [N_RANKS, ROWS, COLS], torch.float32, init_value=torch.randn),
        TensorSpec("y", [N_RANKS, ROWS, COLS], torch.float32, is_output=True),
    ]


if __name__ == "__main__":
    from golden import run_jit

    run_jit(fn=reduce_test, specs=build_tensor_specs(), golden_fn=golden_reduce, rtol=1e-5, atol=1e-5,
            compile_cfg=dict(distributed_config=DistributedConfig(device_ids=list(range(N_RANKS)))))
'''

# Every rank adds its rows into rank 0's window: the sum is in the ranks' arrival order.
ARRIVAL = dict(rows="ROWS", combine="pass",
               contribute="pld.tile.remote_store(x[0:ROWS, :], target=total, peer=0, offsets=[0, 0], "
                          "atomic=pld.AtomicType.Add)  # REMOTE ADD")
# Every rank puts its rows into its own slot of rank 0's window; rank 0 adds the slots in rank order.
SLOTS = dict(rows="ROWS * N_RANKS",
             contribute="pld.tile.remote_store(x[0:ROWS, :], target=total, peer=0, offsets=[my_rank * ROWS, 0])",
             combine="""acc = pl.load(total, [0, 0], [ROWS, COLS])
        for s in pl.range(1, N_RANKS):
            acc = pl.add(acc, pl.load(total, [s * ROWS, 0], [ROWS, COLS]))
        total[0:ROWS, :] = acc""")

RANK_FILE = "models/toy/reduce.py"


def ranks_source(form: dict) -> str:
    return RANKS.format(dt="pl.FP32", **form)


def test_multi_rank_sum_in_arrival_order_is_nondeterministic(repo, capsys, tmp_path):
    text = ranks_source(ARRIVAL)
    a = commit(repo, {RANK_FILE: text})
    out_json = tmp_path / "r.json"
    check(repo, RANK_FILE, a, a, "--json", str(out_json))
    doc = json.loads(out_json.read_text())
    line = line_of(text, "# REMOTE ADD")
    for r in outputs_of(doc):
        y = r["outputs"]["y"]
        assert y["verdict"] == "both-defect", y["reasons"]
        nd = y["nondeterministic"]["pre"]
        assert nd["count"] > 0
        assert any(op.startswith("remote atomic add into total") and f"reduce.py:{line}" in op and "ranks 0, 1, 2, 3"
                   in op for op in nd["operations"])
        assert not y["poisoned"]


def test_multi_rank_sum_in_rank_order_is_clean(repo, tmp_path):
    a = commit(repo, {RANK_FILE: ranks_source(SLOTS)})
    out_json = tmp_path / "r.json"
    assert check(repo, RANK_FILE, a, a, "--json", str(out_json)) == 0
    for r in outputs_of(json.loads(out_json.read_text())):
        y = r["outputs"]["y"]
        assert y["verdict"] == "equivalent", y["reasons"]
        assert not y["nondeterministic"]


def test_console_json_and_html_all_name_the_nondeterministic_output(repo, capsys, tmp_path):
    text = source(ATOMIC)
    a = commit(repo, {FILE: text})
    html = tmp_path / "r.html"
    rc, doc = run_check(repo, a, a, tmp_path, "--report", str(html))
    out = capsys.readouterr().out
    line = line_of(text, "# ATOMIC")
    page = html.read_text()
    for shown in (out, page, json.dumps(doc)):
        assert "nondeterministic" in shown and f"splitk.py:{line}" in shown
        assert "differ between 2 schedules" in shown


# --- a registered pair: the same rules through `equiv.check` ------------------------------
def test_registered_pair_retile_to_atomics_is_a_regression_and_names_the_line():
    import dataclasses

    import equiv
    from tests.fixtures.schedules import splitk_pair as sp

    line = line_of(open(sp.__file__).read(), "# ATOMIC")
    r = equiv.check(sp.PAIR, shapes="nominal", recipes=["realistic"], shrink_budget=0)
    assert r.counts["y"]["regression"] == len(r.results) >= 1
    for case in r.results:
        y = case.outputs["y"]
        assert set(y.nondeterministic) == {"retiled"} and not y.poisoned
        assert any(f"splitk_pair.py:{line}" in op for op in y.nondeterministic["retiled"]["operations"])
    clean = equiv.check(dataclasses.replace(sp.PAIR, retiled=sp.fixed), shapes="nominal", recipes=["realistic"],
                        shrink_budget=0)
    assert clean.counts["y"]["equivalent"] == len(clean.results) >= 1


RACE = HEADER + '''

@pl.jit
def splitk_test(x: pl.Tensor[[T, K], {dt}], w: pl.Tensor[[K, N], {dt}], y: pl.Out[pl.Tensor[[T, N], {dt}]]):
    for k in pl.spmd(K // K_TILE, name_hint="splitk"):
        xt = pl.load(x, [0, k * K_TILE], [T, K_TILE])
        wt = pl.load(w, [k * K_TILE, 0], [K_TILE, N])
        pl.store(pl.matmul(xt, wt), [0, 0], y)  # RACE
    return y
'''


def test_last_writer_race_is_nondeterministic_and_names_the_racing_store(repo, tmp_path):
    text = source(RACE)
    a = commit(repo, {FILE: text})
    rc, doc = run_check(repo, a, a, tmp_path)
    line = line_of(text, "# RACE")
    for r in outputs_of(doc):
        y = r["outputs"]["y"]
        nd = y["nondeterministic"]["pre"]
        assert nd["count"] == 4 * 16  # every element: whichever block stores last wins
        assert any(op.startswith("race into y") and f"splitk.py:{line}" in op for op in nd["operations"])
        kinds = {h["kind"] for h in r["hazards"]["pre"]}
        assert {"race", "nondeterministic"} <= kinds
