"""Per-block scratch tensors never share cache lines.

Two blocks' scratch tensors (and one block's two scratch tensors) are distinct allocations on
the device. The emulator frees a block's scratch when the block is done and torch may hand
the address to the next block's; the cache-line observer must not take that for one line.
"""

from __future__ import annotations

import os

import pytest

from equiv.dtypes import INT32
from equiv.tile.context import RunContext, running
from equiv.tile.memory import Tensor
from equiv.observe.cachelines import CacheLineObserver
from equiv.options import Options
from equiv.source import load_kernel

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "scratch", "per_block_scratch.py")


def _findings(entry: str, seed: int) -> list:
    fn = load_kernel(FIXTURE, entry)
    ctx = RunContext(Options(seed=seed))
    ctx.attach(CacheLineObserver(64))
    with running(ctx):
        fn(flags=Tensor("flags", (128,), INT32))
    return [f for f in ctx.findings.values()]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_two_per_block_scratch_tensors_are_no_cache_line_race(seed):
    assert _findings("scratch_per_block", seed) == []


@pytest.mark.parametrize("seed", [0, 1])
def test_flags_of_two_blocks_in_one_line_are_still_a_race(seed):
    found = _findings("flags_sharing_a_line", seed)
    assert [f.tensor for f in found if f.kind == "cacheline-race"] == ["flags"]
