"""Detectors are clients of one event stream (equiv.tile.events): each declares the events it
needs and receives only those; the hazard detectors (element races, out-of-range, cross-rank
races) leave the batched fast path running; `Options.detectors` chooses which run, and a name
nobody registered is an error that lists the known ones."""

from __future__ import annotations

import pytest
import torch

from equiv.observe import clients
from equiv.observe.events import DECISION, STORE, STORED, Observer
from equiv.options import Options
from equiv.results import Case
from equiv.runner import run_case
from equiv.shapes import Shape
from equiv.tile import rewrite
from equiv.tile.context import RunContext, running
from equiv.tile.memory import Tensor
from tests.test_observer_clients import _pair
from tests import observe_kernels as K
from tests.tile.test_batch import N, OUT, overlapping_writes, out_of_range, reads_block_data, scale_rows, x_values


class Counts(Observer):
    """Counts every hook it is called on, whatever it declared."""

    def __init__(self, events: frozenset[str], per_element: bool = True) -> None:
        self.events, self.per_element = events, per_element
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def on_decision(self, ctx, site, op, outcomes) -> None:
        self._count(DECISION)

    def on_store(self, ctx, tensor, window, mask, scalar) -> None:
        self._count(STORE)

    def on_stored(self, ctx, tensor, window, mask, scalar) -> None:
        self._count(STORED)


def _run(kernel, options: Options, *extra: Observer):
    ctx = RunContext(options)
    ctx.attach(*extra)
    with running(ctx):
        x = Tensor.from_torch("x", x_values().to(torch.bfloat16))
        outs = {k: Tensor(k, shape, dt) for k, (shape, dt) in OUT.items()}
        rewrite.batched_kernel(kernel)(x=x, **outs)
    return ctx, outs["out"]


def test_each_event_goes_only_to_the_clients_that_declared_it():
    deciding, storing = Counts(frozenset({DECISION})), Counts(frozenset({STORE}))
    _run(reads_block_data, Options(seed=5), deciding, storing)
    assert deciding.calls.get(DECISION, 0) > 0 and set(deciding.calls) == {DECISION}
    assert storing.calls.get(STORE, 0) > 0 and set(storing.calls) == {STORE}


def test_a_client_declares_the_events_whose_hooks_it_overrides_unless_it_says_so():
    class Stores(Observer):
        def on_stored(self, ctx, tensor, window, mask, scalar) -> None:
            pass

    assert Stores.events == frozenset({STORED})
    with pytest.raises(TypeError, match="not events of the stream"):
        type("Bad", (Observer,), {"events": frozenset({"stores"})})


def test_the_hazard_detectors_keep_the_batched_path_and_still_find_the_race():
    ctx, _ = _run(overlapping_writes, Options(seed=5))
    assert ctx.batch_stats == {"batched": 1} and not ctx.observed
    assert [f.kind for f in ctx.findings.values()] == ["race"]


def test_a_clean_stage_stores_at_once_unless_a_client_needs_every_store():
    # A store client that is not per-element (like the race detector) lets a clean batched
    # stage write all its blocks at once; a per-element one gets every block's store.
    quiet = Counts(frozenset({STORE}), per_element=False)
    ctx, out_quiet = _run(scale_rows, Options(seed=5), quiet)
    assert ctx.batch_stats == {"batched": 1} and quiet.calls == {}
    every = Counts(frozenset({STORE}))
    ctx, out_every = _run(scale_rows, Options(seed=5), every)
    assert every.calls == {STORE: N}
    assert torch.equal(out_quiet.data, out_every.data)


@pytest.mark.parametrize("kernel, kinds, detector", [
    (overlapping_writes, ["race"], "races"),
    (out_of_range, ["oob-read", "oob-write"], "out-of-range"),
])
def test_a_detector_left_out_reports_nothing_and_changes_no_value(kernel, kinds, detector):
    every, out_every = _run(kernel, Options(seed=5))
    assert sorted(f.kind for f in every.findings.values()) == kinds
    others = tuple(n for n in clients.names() if n != detector)
    fewer, out_fewer = _run(kernel, Options(seed=5, detectors=others))
    assert not fewer.findings
    assert torch.equal(out_fewer.data.nan_to_num(7.25), out_every.data.nan_to_num(7.25))
    assert torch.equal(out_fewer.written, out_every.written)


def test_out_of_range_raises_through_its_detector_when_asked():
    from equiv.tile.errors import OutOfBoundsError

    with pytest.raises(OutOfBoundsError, match=r"test_batch.py:\d+: read of x\[22:26, 0:8\] but x has shape \[24, 8\]"):
        _run(out_of_range, Options(seed=5, out_of_bounds="raise"))
    # without the detector the access is clipped all the same, and nothing stops the kernel
    ctx, _ = _run(out_of_range, Options(seed=5, out_of_bounds="raise", detectors=("races",)))
    assert not ctx.findings


def test_a_check_runs_the_detectors_options_name():
    pair, case = _pair(K.flags_adjacent), Case(Shape(B=4), "realistic", 0)
    every = run_case(pair, case)
    # retiled's flags share a cache line: found by the cache-line detector, absent without it
    assert any("cacheline-race" in reason for reason in every.outputs["flags"].reasons)
    without = run_case(pair, case, Options(detectors=("races", "out-of-range", "decisions", "attribution")))
    assert not any("cacheline-race" in reason for reason in without.outputs["flags"].reasons)


def test_an_unknown_detector_is_an_error_that_lists_the_known_ones():
    with pytest.raises(ValueError) as err:
        run_case(_pair(K.flags_adjacent), Case(Shape(B=4), "realistic", 0), Options(detectors=("race",)))
    assert "'race'" in str(err.value)
    for name in ("races", "rank-races", "out-of-range", "decisions", "cache-lines", "attribution"):
        assert name in str(err.value)
    with pytest.raises(ValueError, match="tuple of detector names"):
        Options(detectors="races")


def test_the_default_detectors_leave_documents_as_they_were_and_a_choice_round_trips():
    assert "detectors" not in Options().to_dict()
    chosen = Options(detectors=("races",))
    assert Options(**chosen.to_dict()) == chosen
