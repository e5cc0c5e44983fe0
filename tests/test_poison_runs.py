"""One emulated run per version where a second cannot differ: a version's patterned-poison run
is left out when its NaN-poison run raised nothing, the case has one schedule, and the run
read no uninitialised memory (`RunContext.uninitialised`). Every path that reads memory
that starts as poison must say so, batched and block by block; a run left out must change
nothing but the record of it."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import equiv
from equiv import runner, summary
from equiv.dtypes import FP32, INT32
from equiv.options import Options
from equiv.pair import KernelPair
from equiv.results import Case
from equiv.shapes import Dim, Shape, ShapeSpace
from tests import poison_kernels as K

R, C = K.R, K.C


def _pair(kernel, dtype=FP32, retiled=None) -> KernelPair:
    return KernelPair(
        name=f"test.poison.{kernel.__name__}", pre=kernel, retiled=retiled or kernel,
        reference=lambda inputs, cfg: {"y": torch.zeros(R, C, dtype=torch.float64)},
        outputs=lambda cfg: {"y": ((R, C), dtype)},
        recipes={"realistic": lambda cfg, gen: {"x": torch.randn(R, C, generator=gen)}},
        shapes=ShapeSpace(dims={"N": Dim(1, 1)}, presets={"nominal": [dict(N=1)]}))


CASE = Case(Shape({"N": 1}), "realistic", 0)

# kernel, output type, what the reason names, whether its reading stage runs batched
UNINITIALISED = [
    (K.window, FP32, "a read of scratch[4, 16][", True),
    (K.element, INT32, "a read of scratch[4, 16][", True),
    (K.atomic, INT32, "a read of y[", False),
    (K.padding, FP32, "the unread part of a [1, 16] tile of x", True),
    (K.new_tile, FP32, "an uninitialised [1, 16] tile", True),
    (K.past_the_edge, FP32, "a read past the edge of x", False),
]
CLEAN = {K.window: K.window_written, K.element: K.element_written, K.atomic: K.atomic_zeroed}


def _stages(pair: KernelPair, options: Options) -> dict[str, int]:
    stages: dict[str, int] = {}
    inputs = runner.make_inputs(pair, CASE)
    runner._run_once(pair.kernel("pre"), pair, CASE, inputs, options, "pre", stages=stages)
    return stages


# Each kernel block by block, and batched where its stage can run batched (an atomic add or a
# read past a tensor never does).
READ_PATHS = [(k, d, w, batch) for k, d, w, batchable in UNINITIALISED for batch in (False, True)
              if batchable or not batch]


@pytest.mark.parametrize("kernel,dtype,what,batch", READ_PATHS,
                         ids=[f"{k[0].__name__}-{'batched' if k[3] else 'one-by-one'}" for k in READ_PATHS])
def test_a_read_of_uninitialised_memory_keeps_the_poison_run(kernel, dtype, what, batch):
    pair = _pair(kernel, dtype)
    options = Options(schedules=1, batch_blocks=batch)
    if batch:
        # The read happens in a batched stage, on the lane path this test covers.
        assert _stages(pair, options).get("batched", 0) >= 1
    r = runner.run_case(pair, CASE, options)
    for side in ("pre", "retiled"):
        assert r.poison_runs[side]["ran"], r.poison_runs[side]
        assert what in r.poison_runs[side]["why"], r.poison_runs[side]["why"]
        # ... and the patterned run shows what NaN could not: the output depends on it.
        assert r.outputs["y"].poisoned[side]["count"] > 0
    assert any("uninitialised memory" in reason for reason in r.outputs["y"].reasons)


@pytest.mark.parametrize("batch", [False, True], ids=["one-by-one", "batched"])
@pytest.mark.parametrize("kernel", list(CLEAN), ids=[k.__name__ for k in CLEAN])
def test_the_correct_version_reads_nothing_uninitialised(kernel, batch):
    good = CLEAN[kernel]
    dtype = next(d for k, d, _, _ in UNINITIALISED if k is kernel)
    r = runner.run_case(_pair(good, dtype), CASE, Options(schedules=1, batch_blocks=batch))
    assert not r.poison_runs["pre"]["ran"], r.poison_runs["pre"]
    assert "read no uninitialised memory" in r.poison_runs["pre"]["why"]
    assert not r.outputs["y"].poisoned


def test_the_broken_version_is_a_regression_against_the_correct_one():
    r = runner.run_case(_pair(K.window_written, FP32, retiled=K.window), CASE, Options(schedules=1))
    assert r.outputs["y"].verdict == "regression"
    assert r.poison_runs == {
        "pre": {"ran": False, "why": "the NaN-poison run read no uninitialised memory: "
                                      "a patterned-poison run gives the same bits"},
        "retiled": {"ran": True, "why": r.poison_runs["retiled"]["why"]}}
    assert "retiled output" in " ".join(r.outputs["y"].reasons)


def _counting(monkeypatch) -> list[str]:
    seen: list[str] = []
    real = runner._run_once

    def counted(kernel, pair, case, inputs, options, side, *a, **kw):
        if kw.get("tracer") is None:  # a run of the case, not one observing a finding's cause
            seen.append(f"{side}:{options.poison}")
        return real(kernel, pair, case, inputs, options, side, *a, **kw)

    monkeypatch.setattr(runner, "_run_once", counted)
    return seen


def _raw(run) -> dict:
    return {f: getattr(run, f) for f in ("outputs", "written", "poisoned", "nondeterministic", "spread",
                                         "order_free", "order_ops", "hazards", "error", "gap", "rejected")}


def _same(a, b, path="") -> None:
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        if a.dtype.is_floating_point:  # bit for bit (NaN included)
            bits = {8: torch.int64, 4: torch.int32, 2: torch.int16}[a.element_size()]
            a, b = a.view(bits), b.view(bits)
        assert torch.equal(a, b), path
        return
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _same(a[k], b[k], f"{path}.{k}")
        return
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]")
        return
    assert a == b, path


@pytest.mark.parametrize("kernel,dtype", [(K.clean, FP32), (K.clean_half, FP32), (K.element_written, INT32)],
                         ids=["clean", "half-unwritten", "integer"])
def test_a_clean_version_runs_once_with_the_results_of_two_runs(monkeypatch, kernel, dtype):
    pair = _pair(kernel, dtype)
    seen = _counting(monkeypatch)
    auto = runner.run_case(pair, CASE, Options(schedules=1), keep_runs=True)
    assert seen == ["pre:nan", "retiled:nan"]
    seen.clear()
    always = runner.run_case(pair, CASE, Options(schedules=1, second_poison_run="always"), keep_runs=True)
    assert seen == ["pre:nan", "pre:pattern", "retiled:nan", "retiled:pattern"]
    assert {s: p["ran"] for s, p in always.poison_runs.items()} == {"pre": True, "retiled": True}
    assert always.poison_runs["pre"]["why"] == "second_poison_run=always"
    a, b = auto.to_dict(), always.to_dict()
    for d in (a, b):
        d.pop("poison_runs"), d.pop("seconds")
    assert a == b
    for side in ("pre", "retiled"):
        _same(_raw(auto.runs[side]), _raw(always.runs[side]), side)
    if kernel is K.clean_half:
        # The unwritten column differs between the poison runs today: it still does.
        assert bool(auto.runs["pre"].poisoned["y"][:, C - 1].all())
        assert not bool(auto.runs["pre"].poisoned["y"][:, : C - 1].any())


def test_other_schedules_keep_their_rule(monkeypatch):
    seen = _counting(monkeypatch)
    r = runner.run_case(_pair(K.clean), CASE, Options(schedules=2))
    assert seen == ["pre:nan", "pre:pattern", "retiled:nan", "retiled:pattern"]  # first and schedule 1
    assert r.poison_runs["pre"] == {"ran": False, "why": "outputs agree between schedules: nothing to separate"}


def test_options_and_console_say_what_happened():
    with pytest.raises(ValueError, match="second_poison_run"):
        Options(second_poison_run="never")
    assert "second_poison_run" not in Options().to_dict()
    assert Options(second_poison_run="always").to_dict()["second_poison_run"] == "always"
    result = equiv.check(_pair(K.window_written, FP32, retiled=K.window), shapes="nominal",
                         options=Options(schedules=1))
    text = summary.render(result, max_width=1000)
    assert "Patterned-poison runs:" in text
    assert "ran in 1 version run (first retiled at N=1): the NaN-poison run read uninitialised memory: " \
           "a read of scratch[4, 16][" in text
    assert "left out in 1 version run (first pre at N=1): the NaN-poison run read no uninitialised memory" in text


def _same_results():
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "same_results.py")
    spec = importlib.util.spec_from_file_location("same_results", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", equiv.registry.names())
def test_every_registered_pair_gives_the_same_results_either_way(name):
    """One case per registered pair (its first nominal shape and recipe): `auto` and `always`
    agree field by field but the record of the poison run and timings, and bit for bit in
    the raw runs. (docs/performance.md runs every preset through the CLI.)"""
    pair = equiv.registry.get(name)
    case = Case(Shape(pair.shapes.presets["nominal"][0]), next(iter(pair.recipes)), 0)
    got = {mode: runner.run_case(pair, case, Options(schedules=1, second_poison_run=mode), keep_runs=True)
           for mode in ("auto", "always")}
    same = _same_results()
    assert same.first_difference(got["auto"].to_dict(), got["always"].to_dict(),
                                 ignore=frozenset({"poison_runs"})) is None
    assert got["auto"].decisions == got["always"].decisions
    assert all(p["ran"] for p in got["always"].poison_runs.values())
    for side in ("pre", "retiled"):
        _same(_raw(got["auto"].runs[side]), _raw(got["always"].runs[side]), f"{name}:{side}")


def test_the_html_report_lists_the_poison_runs(tmp_path):
    from equiv import report

    result = equiv.check(_pair(K.window_written, FP32, retiled=K.window), shapes="nominal",
                         options=Options(schedules=1))
    doc = result.to_dict()
    assert doc["results"][0]["poison_runs"]["pre"]["ran"] is False
    assert doc["results"][0]["poison_runs"]["retiled"]["ran"] is True
    html = report.render([doc])
    assert "Patterned-poison runs (ran 1, left out 1)" in html
    assert "the NaN-poison run read uninitialised memory: a read of scratch[4, 16][" in html


def test_a_same_revision_pair_free_check_runs_its_program_once(tmp_path, monkeypatch, capsys):
    """A model file checked against itself under one schedule: one emulated run in all where it
    reads nothing uninitialised, two where it does, and the record says which and where."""
    from tests.test_pairfree import FILE, check, commit, kernel, make_repo

    repo = make_repo(tmp_path)
    seen = _counting(monkeypatch)
    widened = ("pl.store(pl.mul(pl.set_validshape(pl.load(x, [b * T_TILE, 0], [T_TILE, D], "
               "valid_shape=[T_TILE, D // 2]), T_TILE, D), 2.0), [b * T_TILE, 0], y)")
    for body, runs in ((None, ["pre:nan"]), (widened, ["pre:nan", "pre:pattern"])):
        rev = commit(repo, {FILE: kernel(tile=4) if body is None else kernel(tile=4, body=body)})
        seen.clear()
        out = tmp_path / "r.json"
        check(repo, FILE, rev, rev, "--schedules", "1", "--json", str(out))
        # (A file with a defect then has its golden audited: runs of its own, after the case's.)
        assert seen == runs if body is None else seen[:2] == runs and "pre:pattern" not in seen[2:]
        import json

        doc = json.loads(out.read_text())
        result = doc["entries"][0]["result"]["results"][0] if "entries" in doc else doc["checks"][0]["results"][0]
        pre, retiled = result["poison_runs"]["pre"], result["poison_runs"]["retiled"]
        assert pre["ran"] == (body is not None) and retiled == {**pre, "runs_of": "pre"}
        if body is not None:
            assert "the unread part of a [4, 16] tile of x (valid [4, 8])" in pre["why"] and "scale.py:" in pre["why"]
        text = capsys.readouterr().out
        assert ("ran in 1 version run" if body else "left out in 1 version run") in text
