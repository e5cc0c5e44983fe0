"""Detectors are clients of the observed run's event stream, registered in one list
(`equiv.observe.clients.REGISTRY`): a client added there receives the events of the observed
run of each version and leaves what it found on that version's run record."""

from __future__ import annotations

import torch

from equiv.dtypes import INT32
from equiv.observe import clients
from equiv.observe.events import Observer
from equiv.pair import KernelPair
from equiv.results import Case
from equiv.runner import run_case
from equiv.shapes import Dim, Shape, ShapeSpace
from tests import observe_kernels as K


class ScalarWrites(Observer):
    """Counts the one-element writes (``pl.write``) of each tensor."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}

    def on_store(self, ctx, tensor, window, mask, scalar: bool) -> None:
        if scalar:
            self.count[tensor.name] = self.count.get(tensor.name, 0) + 1

    def on_run_end(self, ctx, outputs, record) -> None:
        record.scalar_writes = dict(self.count)


def _pair(retiled):
    return KernelPair(
        name="test.flags", pre=K.flags_per_line, retiled=retiled,
        reference=lambda inputs, cfg: {},
        outputs=lambda cfg: {"flags": ((16 * cfg.B,), INT32)},
        recipes={"realistic": lambda cfg, gen: {"x": torch.zeros(1)}},
        shapes=ShapeSpace(dims={"B": Dim(2, 4)}, presets={"nominal": [dict(B=4)]}))


def test_a_registered_client_sees_each_versions_observed_run(monkeypatch):
    monkeypatch.setitem(clients.REGISTRY, "scalar-writes", clients.Detector(lambda options: ScalarWrites()))
    r = run_case(_pair(K.flags_adjacent), Case(Shape(B=4), "realistic", 0), keep_runs=True)
    assert r.runs["pre"].scalar_writes == {"flags": 4}      # one flag per block
    assert r.runs["retiled"].scalar_writes == {"flags": 4}
    # the built-in clients still run next to it: retiled's adjacent flags share a cache line
    assert r.verdicts["flags"] == "regression"
    assert any("cacheline-race" in reason for reason in r.outputs["flags"].reasons)


def test_an_unregistered_client_sees_nothing():
    r = run_case(_pair(K.flags_per_line), Case(Shape(B=4), "realistic", 0), keep_runs=True)
    assert not hasattr(r.runs["pre"], "scalar_writes")
    assert not any("cacheline-race" in reason for reason in r.outputs["flags"].reasons)
