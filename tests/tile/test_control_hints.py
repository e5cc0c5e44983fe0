"""Scopes, scheduling hints and program structure run as what their bodies compute:
pl.scope / manual_scope bodies run once, pl.unroll has range's iterations, pl.yield_
returns its values, pl.no_dep / prefetch change nothing, @pl.program / @pl.function /
@pl.inline / @pl.jit.incore are plain calls, @pl.jit.extern is a named emulator gap, and the
optimisation requests (pl.split, pl.auto_chunk, pl.cross_core_slot) are accepted by pl.at.
"""

import textwrap

import pytest
import torch

from equiv import tile as pl
from equiv.tile.errors import KernelError, UnsupportedOpError
from equiv.tile.context import RunContext, running
from equiv.tile.memory import Tensor
from equiv.options import Options
from equiv.source import load_kernel


@pytest.fixture
def ctx():
    with running(RunContext(Options(seed=1))) as c:
        yield c


def test_scopes_run_their_body_once(ctx):
    hits = []
    with pl.scope():
        hits.append("auto")
    with pl.scope(mode=pl.ScopeMode.MANUAL):
        hits.append("manual-mode")
    with pl.manual_scope():
        hits.append("manual")
    assert hits == ["auto", "manual-mode", "manual"]


@pytest.mark.parametrize("args", [(4,), (1, 7), (0, 9, 3), (5, 5)])
def test_unroll_has_the_iterations_of_range(ctx, args):
    assert list(pl.unroll(*args)) == list(range(*args))


def test_yield_returns_one_value_or_a_tuple(ctx):
    assert pl.yield_(3) == 3
    a, b = pl.yield_(1, "x")
    assert (a, b) == (1, "x")


def test_no_dep_and_prefetch_change_no_value(ctx):
    t = Tensor.from_torch("t", torch.arange(4, dtype=torch.float32))
    before = t.data.clone()
    assert pl.no_dep(t) is t
    warm = pl.prefetch.make_context()
    assert pl.prefetch.async_prefetch(t, warm) is None
    assert torch.equal(t.data, before) and bool(t.written.all())
    with pytest.raises(KernelError, match="not a tensor"):
        pl.prefetch.async_prefetch(3, warm)


def test_at_accepts_optimisation_requests_and_gives_a_task_id(ctx):
    out = Tensor("out", [1, 2], pl.INT32)
    for opts in ([pl.auto_chunk], [pl.split(pl.SplitMode.UP_DOWN)], [pl.cross_core_slot(slot_num=2)],
                 [pl.split(pl.SplitMode.NONE, slot_num=2)]):
        with pl.at(level=pl.Level.CORE_GROUP, optimizations=opts, name_hint="x") as tid:
            pl.write(out, [0, 0], 5)
        assert tid is not None
    assert out.data[0, 0].item() == 5 and not ctx.findings


def test_program_functions_inline_and_incore_are_plain_calls(tmp_path):
    src = tmp_path / "k.py"
    src.write_text(textwrap.dedent("""
        import pypto.language as pl

        @pl.inline
        def twice(v):
            return v * 2

        @pl.jit.incore
        def bump(out: pl.InOut[pl.Tensor[[1, 2], pl.INT32]], i: pl.Scalar[pl.INDEX]):
            pl.write(out, [0, i], twice(i) + 1)
            return out

        def build():
            @pl.program
            class Prog:
                @pl.function(type=pl.FunctionType.Opaque)
                def main(self, out: pl.Out[pl.Tensor[[1, 2], pl.INT32]]):
                    for i in pl.unroll(2):
                        out = self.step(out, i)
                    return out

                @pl.function(type=pl.FunctionType.InCore)
                def step(self, out, i):
                    with pl.manual_scope():
                        return bump(out, i)
            return Prog
        """))
    build = load_kernel(str(src), "build")
    with running(RunContext(Options(seed=1))) as ctx:
        out = Tensor("out", [1, 2], pl.INT32)
        assert build().main(out) is out
    assert out.data.tolist() == [[1, 3]] and not ctx.findings


def test_extern_kernels_are_a_named_gap_when_called(tmp_path):
    src = tmp_path / "k.py"
    src.write_text(textwrap.dedent("""
        import pypto.language as pl

        @pl.jit.extern(core_type="aiv", source="kernel/tiling.cpp", include_dirs=[])
        def tiling(seq_lens: pl.Tensor, metadata: pl.Out[pl.Tensor]):
            pass

        def entry(seq_lens, metadata):
            tiling(seq_lens, metadata)
        """))
    fn = load_kernel(str(src), "entry")
    with running(RunContext(Options(seed=1))):
        with pytest.raises(UnsupportedOpError, match=r"pl.jit.extern kernel tiling.*tiling.cpp"):
            fn(None, None)


def test_hint_names_are_in_the_table():
    for name in ("scope", "manual_scope", "unroll", "auto_chunk", "prefetch.async_prefetch",
                 "prefetch.make_context", "no_dep", "yield_", "program", "function", "FunctionType.Opaque",
                 "inline", "jit.incore", "jit.extern", "cross_core_slot", "split", "SplitMode.UP_DOWN"):
        assert pl.covers(name), name
    assert not pl.covers("prefetch.no_such_thing")


def test_pipeline_init_values_carry_what_yield_returns_to_the_next_iteration(ctx):
    # acc_{k+1} = 3 * acc_k + k, integer arithmetic checked against a Python loop.
    a, b = 1, 100
    for k, (a_it, b_it) in pl.pipeline(2, 11, 3, stage=2, init_values=(a, b)):
        a, b = pl.yield_(3 * a_it + k, b_it - k)
    ref_a, ref_b = 1, 100
    for k in range(2, 11, 3):
        ref_a, ref_b = 3 * ref_a + k, ref_b - k
    assert (a, b) == (ref_a, ref_b)
    # Without yield_ the carried values stay the initial ones.
    seen = [v for _, (v,) in pl.range(3, init_values=(7,))]
    assert seen == [7, 7, 7]
    with pytest.raises(KernelError, match="carrying 2"):
        for _, _vals in pl.range(1, init_values=(1, 2)):
            pl.yield_(1)


def test_parallel_chunks_are_blocks_and_iterations_inside_a_chunk_do_not_race(ctx):
    out = Tensor("out", [4], pl.INT32)
    order = []
    for i in pl.parallel(0, 8, chunk=2, name_hint="ch"):
        order.append(i)
        pl.write(out, [i // 2], i)          # both iterations of a chunk write one element
    assert not [f for f in ctx.findings.values() if f.kind == "race"]
    assert out.data.tolist() == [1, 3, 5, 7] and sorted(order) == list(range(8))
    chunks = [n.block for n in ctx.nodes.values() if n.name == "ch"]
    assert sorted(chunks) == [0, 1, 2, 3]
    assert order == [v for c in chunks for v in (2 * c, 2 * c + 1)]
    for i in pl.parallel(0, 4, name_hint="nochunk"):
        pl.write(out, [0], i)               # without chunks the iterations race
    assert len([f for f in ctx.findings.values() if f.kind == "race"]) == 1
