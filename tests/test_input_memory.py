"""Memory of a case's inputs: what each run copies, what it shares, and what the reference holds.

Pro-size weights (GBs of int8) must fit a 24 GiB machine, so inputs that are only read do not get
a written-mask, discovery keeps no spec values, the reference runs on one copy, and float64
promotion has a budget. None of that may change what a run sees: a kernel that writes its own
input still leaves the caller's inputs (and so the next run, and the other version) untouched.
"""

from __future__ import annotations

import sys
import types

import torch

from equiv.dtypes import FP32
from equiv.tile.context import RunContext, running
from equiv.tile.memory import Tensor
from equiv.options import Options
from equiv.pair import KernelPair
from equiv.pairfree import reference, specs
from equiv.pairfree import discovery
from equiv.pairfree import golden as golden_stub
from equiv.results import Case
from equiv.runner import run_case, run_side
from equiv.shapes import Dim, Shape, ShapeSpace
from equiv import tile as pl


def doubles_its_input(x, y, cfg):
    """Writes x in place (x = x + x), then copies it out: y = 2 x when x starts as given."""
    t = x[0:2, 0:cfg.C]
    x[0:2, 0:cfg.C] = pl.add(t, t)
    y[0:2, 0:cfg.C] = x[0:2, 0:cfg.C]


def copies(x, y, cfg):
    y[0:2, 0:cfg.C] = x[0:2, 0:cfg.C]


def _pair(pre, retiled, factor: float) -> KernelPair:
    return KernelPair(
        name="test.input_memory", pre=pre, retiled=retiled,
        reference=lambda inputs, cfg: {"y": inputs["x"].double() * factor},
        outputs=lambda cfg: {"y": ((2, cfg.C), FP32)},
        recipes={"realistic": lambda cfg, gen: {"x": torch.randn(2, cfg.C, generator=gen)}},
        shapes=ShapeSpace(dims={"C": Dim(4, 64, step=4)}, presets={"nominal": [dict(C=8)]}))


def test_a_kernel_writing_its_input_does_not_change_the_next_run_or_the_other_side():
    pair = _pair(doubles_its_input, doubles_its_input, 2.0)
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], [-1.0] * 8])
    inputs = {"x": x}
    before = x.clone()
    case = Case(Shape({"C": 8}), "realistic", 0)
    pre = run_side(pair, "pre", case, inputs, Options())
    ret = run_side(pair, "retiled", case, inputs, Options())
    assert torch.equal(x, before)  # the caller's input: unchanged by both runs of both sides
    for run in (pre, ret):
        # Both runs (NaN and pattern poison) saw the original x: 2x, written, not poison-dependent.
        assert torch.equal(run.outputs["y"], 2 * before)
        assert bool(run.written["y"].all()) and not bool(run.poisoned["y"].any())
    r = run_case(pair, case)
    assert r.verdicts == {"y": "equivalent"}


def test_the_check_catches_a_version_that_reads_the_written_input_differently():
    # The harness still tells them apart: y = 2x (pre) against y = x (retiled) is a regression.
    r = run_case(_pair(doubles_its_input, copies, 2.0), Case(Shape({"C": 8}), "realistic", 0))
    assert r.verdicts == {"y": "regression"}


def test_read_only_inputs_get_no_written_mask_and_written_inputs_keep_their_semantics():
    with running(RunContext(Options())):
        x = Tensor.from_torch("x", torch.ones(2, 8))
        w = Tensor.from_torch("w", torch.ones(2, 8))
        y = Tensor("y", (2, 8), FP32)
        copies(x, y, Shape({"C": 8}))
        doubles_its_input(w, Tensor("z", (2, 8), FP32), Shape({"C": 8}))
    assert not x.written_allocated  # read only: no mask was made (1 byte an element saved)
    assert w.written_allocated and bool(w.written.all())  # made at the first store, all written
    assert not bool(y.written[:, :].any()) or bool(y.written.all())
    assert torch.equal(w.to_torch(), torch.full((2, 8), 2.0))
    # a view (reshape) of a read-only input still sees every element written
    assert bool(x.written.all()) and x.written.dtype == torch.bool


def test_the_reference_gets_the_inputs_without_a_copy_of_its_own_and_may_not_leak_writes(monkeypatch):
    seen = {}

    def ref(inputs, cfg):
        seen["x"] = inputs["x"].data_ptr()
        return {"y": inputs["x"].double() * 2.0}

    pair = _pair(doubles_its_input, doubles_its_input, 2.0)
    made = {}

    def recipe(cfg, gen):
        made["x"] = torch.randn(2, cfg.C, generator=gen)
        return dict(made)

    import dataclasses

    pair = dataclasses.replace(pair, reference=ref, recipes={"realistic": recipe})
    r = run_case(pair, Case(Shape({"C": 8}), "realistic", 0))
    assert r.verdicts == {"y": "equivalent"}
    assert seen["x"] == made["x"].data_ptr()  # the case's own tensor: the reference is its last user


def _golden_copy(tensors):
    tensors["y"][:] = tensors["x"] * 2


def _call(shape):
    return golden_stub.RunCall(fn=copies, golden_fn=_golden_copy, specs=[
        golden_stub.TensorSpec("x", shape, torch.float32, init_value=torch.randn),
        golden_stub.TensorSpec("y", shape, torch.float32, is_output=True)])


def test_float64_promotion_falls_back_to_as_written_over_the_budget_and_says_why(monkeypatch):
    small = reference.reference_for(_call([4, 4]))
    assert small.how == "float64"
    # 2 tensors of 1024 x 1024 floats promoted: 16 MiB; a 0.01 GB budget is ~10 MiB
    assert reference.promoted_bytes(_call([1024, 1024])) == 2 * 1024 * 1024 * 8
    monkeypatch.setenv("EQUIV_FLOAT64_BUDGET_GB", "0.01")
    big = reference.reference_for(_call([1024, 1024]))
    assert big.how == "as written"
    assert "would need 16 MB, over the 10 MB budget" in big.why and "EQUIV_FLOAT64_BUDGET_GB" in big.why
    x = torch.randn(4, 4)
    out = big(_call([4, 4]), {"x": x})
    assert out["y"].dtype == torch.float64 and torch.equal(out["y"], (x * 2).double())


MAIN = '''
import torch
WEIGHTS = None

def build_specs():
    from golden import TensorSpec
    w = torch.arange(12.0).reshape(3, 4)
    cache = torch.ones(3, 4)
    return [TensorSpec("w", [3, 4], torch.float32, init_value=lambda: w),
            TensorSpec("cache", [3, 4], torch.float32, init_value=cache, is_output=True)]

def entry(w, cache):
    pass

if __name__ == "__main__":
    from golden import run_jit
    specs = build_specs()
    run_jit(fn=entry, specs=specs, golden_fn=None)
'''


def test_discovery_keeps_no_spec_values_but_knows_the_in_out_outputs(monkeypatch):
    monkeypatch.setitem(sys.modules, "golden", golden_stub.make_module())
    mod = types.ModuleType("fixture_main")
    mod.__file__ = "fixture_main.py"
    exec(compile(MAIN, "fixture_main.py", "exec"), mod.__dict__)
    plan = discovery.discover(mod, MAIN)
    call = plan.found[0].call
    assert all(s.init_value is discovery.DROPPED for s in call.specs)  # no closure over the tensors
    assert "specs" not in mod.__dict__  # the block's list of specs is not kept in the module
    params = {p.name: p for p in specs.interface(call)}
    assert params["cache"].initial and not params["w"].output
    # a case still gets the values, made from its seed
    made = discovery.materialized(mod, MAIN, (), "entry", 0, seed=3)
    assert torch.equal(made.materialized["w"], torch.arange(12.0).reshape(3, 4))
    assert torch.equal(made.materialized["cache"], torch.ones(3, 4))


def test_a_same_revision_check_builds_the_files_specs_once_not_once_per_side_and_recipe(tmp_path, monkeypatch):
    """Building a Pro file's specs takes minutes and GBs: discovery once for both sides of a
    same-revision check, keeping the first case's inputs, which every recipe of it reuses."""
    from tests.test_pairfree import FILE, commit, kernel, make_repo

    from equiv.cli import main

    r = make_repo(tmp_path)
    counter = tmp_path / "builds.txt"
    monkeypatch.setenv("EQUIV_TEST_BUILD_COUNTER", str(counter))
    # (the sizing run on the meta device builds nothing: not counted)
    text = kernel().replace("    return [\n        TensorSpec(\"x\"",
                            "    import os\n    if torch.empty(0).device.type != 'meta':\n"
                            "        open(os.environ['EQUIV_TEST_BUILD_COUNTER'], 'a').write('x')\n"
                            "    return [\n        TensorSpec(\"x\"")
    assert "EQUIV_TEST_BUILD_COUNTER" in text
    a = commit(r, {FILE: text})
    rc = main(["check", "--source", FILE, "--pre-rev", a, "--retiled-rev", a, "--repo", str(r), "--pair-free",
               "--shapes", "nominal"])
    assert rc == 0
    # 1 discovery (both sides), whose inputs the case's recipes (realistic + adversarial) reuse
    assert counter.read_text() == "x"


def test_inputs_kept_by_discovery_are_dropped_before_a_case_at_other_shapes_builds_its_own(tmp_path):
    """A check at shapes of its own (``--shapes T=4``) never takes the nominal first-case inputs
    its discovery kept: they are let go before the case builds, so a Pro file's inputs are
    never held twice."""
    import gc
    import weakref

    from tests.test_pairfree import FILE, commit, kernel, make_repo

    from equiv.pairfree.pair import Revisions, entries_of
    from equiv.shapes import Shape
    from equiv.source import SourceRef

    r = make_repo(tmp_path)
    a = commit(r, {FILE: kernel()})
    ref = SourceRef(FILE, "", a, str(r))
    revisions = Revisions(ref, ref, fuzz_dims=("TOKENS",))
    (entry,) = entries_of(revisions, "pre")
    plan = revisions.plan("pre")
    (kept,) = plan.inputs.values()
    watched = weakref.ref(kept.materialized["x"])
    del kept
    other = entry.materialized("pre", Shape({"TOKENS": 4}), seed=123)
    gc.collect()
    assert not plan.inputs and watched() is None  # the nominal inputs are gone
    assert list(other.materialized["x"].shape) == [4, 16]


def test_an_observed_run_gives_site_maps_to_outputs_and_to_inputs_only_when_stored():
    from equiv.tile.sites import SITES
    from equiv.observe import Observer

    ctx = RunContext(Options())
    ctx.attach(Observer())  # an observed run keeps per-element writer sites
    with running(ctx):
        x = Tensor.from_torch("x", torch.ones(2, 8))
        w = Tensor.from_torch("w", torch.ones(2, 8))
        y = Tensor("y", (2, 8), FP32)
        copies(x, y, Shape({"C": 8}))
        doubles_its_input(w, Tensor("z", (2, 8), FP32), Shape({"C": 8}))
    assert "site_ids" not in x.__dict__  # only read: no 4-byte-an-element site map
    assert "site_ids" in y.__dict__ and bool((y.site_ids >= 0).all())
    # the input that was stored into records its writer's line, as an output does
    assert "site_ids" in w.__dict__
    assert all(SITES[i].endswith(f"test_input_memory.py:{doubles_its_input.__code__.co_firstlineno + 3}")
               for i in w.site_ids.flatten().tolist())


def test_a_same_revision_check_runs_the_program_once_per_case_and_a_two_revision_check_twice(tmp_path, monkeypatch,
                                                                                               capsys):
    from tests.test_pairfree import FILE, commit, kernel, make_repo

    from equiv.cli import main
    from equiv.pairfree import pair as pf_pair

    r = make_repo(tmp_path)
    a = commit(r, {FILE: kernel()})
    b = commit(r, {FILE: kernel(tile=2)})
    calls = []
    real = pf_pair.FreeKernel.__call__

    def counting(self, cfg=None, **args):
        calls.append(self.side)
        return real(self, cfg, **args)

    monkeypatch.setattr(pf_pair.FreeKernel, "__call__", counting)
    args = ["--repo", str(r), "--pair-free", "--recipe", "realistic", "--shapes", "nominal"]
    assert main(["check", "--source", FILE, "--pre-rev", a, "--retiled-rev", a, *args]) == 0
    assert calls == ["pre", "pre"]  # two poison runs of one program; retiled reuses them
    assert "runs the program once for both" in capsys.readouterr().out
    calls.clear()
    assert main(["check", "--source", FILE, "--pre-rev", a, "--retiled-rev", b, *args]) == 0
    assert calls == ["pre", "pre", "retiled", "retiled"]
    # a hole in one revision is still found against the other (the shortcut is same-revision only)
    c = commit(r, {FILE: kernel(blocks="T // T_TILE - 1")})
    assert main(["check", "--source", FILE, "--pre-rev", a, "--retiled-rev", c, *args]) == 1


def test_views_of_inputs_make_no_maps_until_written_and_then_share_the_inputs_maps():
    # A reshape or rank view of a Pro weight must not make the weight's written-mask and
    # last-writer map (5 bytes an element); a write through a view is seen by the base.
    from equiv.tile.distributed import world

    with running(RunContext(Options())) as ctx:
        w = Tensor.from_torch("w", torch.arange(24.0).reshape(2, 3, 4))
        flat = pl.reshape(w, [2, 12])
        ranks = world.RankIndexed.__new__(world.RankIndexed)
        ranks.__dict__.update(w.__dict__)
        rank1 = ranks[1]
        assert torch.equal(pl.load(flat, [1, 0], [1, 12]).data, torch.arange(12.0, 24.0).reshape(1, 12).double())
        assert torch.equal(pl.load(rank1, [0, 0], [3, 4]).data, torch.arange(12.0, 24.0).reshape(3, 4).double())
        assert not w.written_allocated and not Tensor.writer.made(w)
        assert not flat.written_allocated and not rank1.written_allocated
        out = Tensor("o", (3, 4), FP32)
        out.store(((0, 3), (0, 4)), torch.zeros(3, 4, dtype=torch.float64))
        rank1.store(((0, 1), (0, 4)), torch.full((1, 4), -1.0, dtype=torch.float64))  # write through the view
        assert Tensor.writer.made(w) and Tensor.writer.made(flat)  # one map, seen from every view
        token = ctx.current.token
        assert w.writer[1, 0].tolist() == [token] * 4 and int(w.writer[0, 0, 0]) == -1
        assert flat.writer[1, :4].tolist() == [token] * 4 and flat.writer.data_ptr() == w.writer.data_ptr()
        assert w.data[1, 0].tolist() == [-1.0] * 4 and bool(w.written.all())
