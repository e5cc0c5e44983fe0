"""Cache-line races: scalar writes of different blocks of one stage into one line."""

from __future__ import annotations


import torch

import equiv
from equiv.dtypes import INT32
from equiv.tile.context import RunContext, running
from equiv.tile.memory import Tensor
from equiv.observe.cachelines import CacheLineObserver
from equiv.options import Options
from equiv.pair import KernelPair
from equiv.shapes import Dim, Shape, ShapeSpace
from tests import observe_kernels as K


def _run(kernel, B: int, line_bytes: int = 64):
    ctx = RunContext(Options(cache_line_bytes=line_bytes))
    ctx.attach(CacheLineObserver(line_bytes))
    with running(ctx):
        x = Tensor.from_torch("x", torch.zeros(1))
        flags = Tensor("flags", (16 * B,), INT32)
        kernel(x=x, flags=flags, cfg=Shape(B=B))
    return [f for f in ctx.findings.values()], flags


def test_adjacent_scalar_flags_of_two_blocks_share_a_line():
    found, flags = _run(K.flags_adjacent, 2)
    lines = [f for f in found if f.kind == "cacheline-race"]
    assert len(lines) == 1 and lines[0].tensor == "flags"
    assert "64-byte cache line" in lines[0].detail and "observe_kernels.py" in lines[0].site
    assert not [f for f in found if f.kind == "race"]  # different elements: no element race
    assert flags.data[:2].tolist() == [1, 1]


def test_flags_one_line_apart_and_tile_stores_are_clean():
    found, _ = _run(K.flags_per_line, 4)
    assert not found
    found, _ = _run(K.flags_tile_store, 4)
    assert not [f for f in found if f.kind == "cacheline-race"]  # DMA bypasses the data cache


def test_line_size_is_an_option():
    # 16 int32 apart is 64 bytes: two blocks share a 128-byte line
    found, _ = _run(K.flags_per_line, 2, line_bytes=128)
    assert [f.kind for f in found] == ["cacheline-race"]


def _flags_pair(retiled):
    return KernelPair(
        name="test.flags", pre=K.flags_per_line, retiled=retiled,
        reference=lambda inputs, cfg: {},
        outputs=lambda cfg: {"flags": ((16 * cfg.B,), INT32)},
        recipes={"realistic": lambda cfg, gen: {"x": torch.zeros(1)}},
        shapes=ShapeSpace(dims={"B": Dim(2, 4)}, presets={"nominal": [dict(B=4)]}))


def test_check_reports_a_retiled_cache_line_race_as_regression():
    bad = equiv.check(_flags_pair(K.flags_adjacent), shapes="nominal")
    assert bad.failed
    reasons = [x for r in bad.results for o in r.outputs.values() for x in o.reasons]
    assert any(x.startswith("retiled cacheline-race on flags") for x in reasons)
    good = equiv.check(_flags_pair(K.flags_per_line), shapes="nominal")
    assert not [h for r in good.results for hs in r.hazards.values() for h in hs]
