"""A version's schedule runs made in forked children (equiv/forked.py): the same results as
making them in the process, for clean, nondeterministic and uninitialised-reading kernels and
every registered pair; a child that fails, hangs or is stopped for memory is made again in
the process; where a child is not used, why."""

from __future__ import annotations

import os
import threading
import time

import pytest

import equiv
from equiv import forked, runner
from equiv.dtypes import FP32, INT32
from equiv.options import Options
from equiv.results import Case
from equiv.shapes import Shape
from tests import poison_kernels as K
from tests.fixtures.schedules import splitk_pair as sp
from tests.test_poison_runs import CASE, _pair, _raw, _same, _same_results

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or equiv.machine.usable_cpus() < 2,
                                reason="forked variant runs need fork and a second CPU")


@pytest.fixture
def children(monkeypatch) -> list[int]:
    """Children are used for any input size; the list counts the children made."""
    made: list[int] = []
    real = forked.Child.__init__

    def counted(self, work):
        real(self, work)
        made.append(self.pid)

    monkeypatch.setattr(forked, "MIN_INPUT_BYTES", 0)
    monkeypatch.setattr(forked.Child, "__init__", counted)
    return made


def _both(pair, case, **options):
    return {mode: runner.run_case(pair, case, Options(variant_processes=mode, **options), keep_runs=True)
            for mode in ("off", "auto")}


def _assert_same(got, name="") -> None:
    same = _same_results()
    assert same.first_difference(got["off"].to_dict(), got["auto"].to_dict(), ignore=frozenset()) is None
    for side in ("pre", "retiled"):
        _same(_raw(got["off"].runs[side]), _raw(got["auto"].runs[side]), f"{name}:{side}")


def test_an_order_dependent_retile_is_found_by_the_schedule_run_a_child_makes(children):
    case = Case(Shape(sp.SHAPES.presets["nominal"][0]), "realistic", 0)
    got = _both(sp.PAIR, case)
    assert len(children) == 2  # one schedule run per version, each in a child
    y = got["auto"].outputs["y"]
    assert y.verdict == "regression" and set(y.nondeterministic) == {"retiled"}
    _assert_same(got, "splitk")


def test_a_fixed_order_retile_stays_equivalent_with_children(children):
    import dataclasses

    pair = dataclasses.replace(sp.PAIR, retiled=sp.fixed)
    case = Case(Shape(sp.SHAPES.presets["nominal"][0]), "realistic", 0)
    got = _both(pair, case)
    assert children and got["auto"].outputs["y"].verdict == "equivalent"
    _assert_same(got, "fixed")


@pytest.mark.parametrize("kernel,dtype", [(K.window, FP32), (K.element, INT32), (K.padding, FP32)],
                         ids=["scratch-window", "scratch-element", "tile-padding"])
def test_a_read_of_uninitialised_memory_is_found_the_same_with_children(children, kernel, dtype):
    pre = K.window_written if kernel is K.window else kernel
    got = _both(_pair(pre, dtype, retiled=kernel), CASE)
    assert children
    _assert_same(got, kernel.__name__)
    if kernel is K.window:  # the scratch read reaches y: only the poison runs together show it
        assert bool(got["auto"].runs["retiled"].poisoned["y"].any())
        assert not bool(got["auto"].runs["pre"].poisoned["y"].any())


@pytest.mark.parametrize("name", equiv.registry.names())
def test_every_registered_pair_gives_the_same_results_with_children(children, name):
    pair = equiv.registry.get(name)
    case = Case(Shape(pair.shapes.presets["nominal"][0]), next(iter(pair.recipes)), 0)
    got = _both(pair, case)
    assert children
    _assert_same(got, name)


def test_a_child_that_fails_is_made_again_in_the_process(children, monkeypatch):
    monkeypatch.setattr(forked, "portable", lambda outputs: 1 / 0)  # raises in the child only
    case = Case(Shape(sp.SHAPES.presets["nominal"][0]), "realistic", 0)
    got = _both(sp.PAIR, case)
    assert children
    assert got["auto"].outputs["y"].verdict == "regression"
    _assert_same(got, "failed child")


def test_a_child_stopped_for_memory_is_made_again_in_the_process(children, monkeypatch):
    forks = os.getpid()
    # The parent's watch sees the machine short of memory; the child itself is not affected.
    monkeypatch.setattr(forked, "available_memory_bytes",
                        lambda: 0 if os.getpid() == forks else 2**40)
    monkeypatch.setattr(forked, "reason_not_to_fork",
                        lambda options, n: "off" if options.variant_processes == "off" else None)
    stopped: list[str | None] = []
    real = forked.Child.result

    def seen(self, timeout):
        got = real(self, timeout)
        stopped.append(self.stopped)
        return got

    monkeypatch.setattr(forked.Child, "result", seen)
    case = Case(Shape(sp.SHAPES.presets["nominal"][0]), "realistic", 0)
    got = _both(sp.PAIR, case)
    assert stopped and all(s and "of memory left" in s for s in stopped)
    _assert_same(got, "stopped child")


def test_a_child_that_sends_nothing_in_time_is_stopped():
    child = forked.Child(lambda: time.sleep(30))
    t0 = time.monotonic()
    assert child.result(timeout=0.5) is None
    assert time.monotonic() - t0 < 10 and "nothing after" in child.stopped
    assert forked.Child(lambda: {"a": 1}).result(timeout=60) == {"a": 1}


def test_where_children_are_not_used_it_says_why(monkeypatch):
    big = 2 * forked.MIN_INPUT_BYTES
    monkeypatch.setattr(forked, "available_memory_bytes", lambda: 2**40)
    assert forked.reason_not_to_fork(Options(), big) is None
    assert forked.reason_not_to_fork(Options(variant_processes="off"), big) == "variant_processes=off"
    assert "small inputs" in forked.reason_not_to_fork(Options(), forked.MIN_INPUT_BYTES - 1)
    assert "large inputs" in forked.reason_not_to_fork(Options(), forked.MAX_INPUT_BYTES + 1)
    assert "cuda" in forked.reason_not_to_fork(Options(device="cuda"), big)
    monkeypatch.setattr(forked, "available_memory_bytes", lambda: big)
    assert "memory" in forked.reason_not_to_fork(Options(), big)
    monkeypatch.setattr(forked, "available_memory_bytes", lambda: 2**40)
    release = threading.Event()
    t = threading.Thread(target=release.wait)
    t.start()
    try:
        assert "other threads" in forked.reason_not_to_fork(Options(), big)
    finally:
        release.set()
        t.join()
    with pytest.raises(ValueError, match="variant_processes"):
        Options(variant_processes="always")
    assert "variant_processes" not in Options(variant_processes="off").to_dict()


def test_a_stopped_parent_stops_and_reaps_its_children(children, monkeypatch):
    """A deadline or an interrupt during the first run ends the children with it."""
    real = runner._run_once

    def first_run_stopped(kernel, pair, case, inputs, options, side, *a, **kw):
        if kw.get("observe") is not None:
            time.sleep(0.2)  # the child is running its schedule run meanwhile
            raise KeyboardInterrupt
        return real(kernel, pair, case, inputs, options, side, *a, **kw)

    monkeypatch.setattr(runner, "_run_once", first_run_stopped)
    case = Case(Shape(sp.SHAPES.presets["nominal"][0]), "realistic", 0)
    with pytest.raises(KeyboardInterrupt):
        runner.run_case(sp.PAIR, case, Options())
    assert children
    for pid in children:
        with pytest.raises(ChildProcessError):  # already waited for: no zombie, nothing running
            os.waitpid(pid, os.WNOHANG)


def test_a_parent_stopped_while_waiting_stops_the_child():
    import signal

    child = forked.Child(lambda: time.sleep(30))
    previous = signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("deadline")))
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    t0 = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            child.result(timeout=60)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - t0 < 10
    with pytest.raises(ChildProcessError):
        os.waitpid(child.pid, os.WNOHANG)


def _uncovered(x, y, cfg):
    """A correct kernel that then uses a form the emulator lacks."""
    from equiv.tile.errors import UnsupportedOpError

    K.window_written(x, y, cfg)
    raise UnsupportedOpError("pl.frobnicate")


@pytest.mark.parametrize("sides", ["retiled", "both"])
def test_an_emulator_gap_in_a_childs_run_is_cannot_judge_never_a_verdict(children, sides):
    pre = _uncovered if sides == "both" else K.window_written
    got = _both(_pair(pre, FP32, retiled=_uncovered), CASE)
    assert children
    assert got["auto"].outputs["y"].verdict == "cannot judge"
    _assert_same(got, f"gap on {sides}")
