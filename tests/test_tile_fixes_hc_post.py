"""Emulator additions made for the hc_post / expert_shared pairs: ``pl.reshape`` of a global
tensor (a view sharing memory and write tracking) and the exact float-widening cast."""

from __future__ import annotations

import pytest
import torch

from equiv import rounding
from equiv import tile as pl
from equiv.dtypes import BF16, FP16, FP32
from equiv.tile.errors import KernelError
from equiv.tile.context import RunContext, running
from equiv.tile.memory import Tensor
from equiv.options import Options


def _ctx() -> RunContext:
    return RunContext(Options())


def test_tensor_reshape_is_a_view_that_tracks_writes_of_the_base():
    with running(_ctx()) as ctx:
        y = Tensor("y", [3, 4, 5], BF16)
        flat = pl.reshape(y, [3, 20])
        assert isinstance(flat, Tensor) and flat.name == "y" and tuple(flat.shape) == (3, 20)
        tile = pl.full([1, 5], BF16, 1.5)
        flat[1:2, 10:15] = tile                       # stream 2 of row 1
        assert bool(y.written[1, 2].all()) and int(y.written.sum()) == 5
        assert torch.equal(y.data[1, 2], torch.full((5,), 1.5, dtype=torch.float64))
        # Reads through the view see what was written through the base.
        y[0:1, 3:4, 0:5] = pl.reshape(pl.full([1, 5], BF16, -2.0), [1, 1, 5])
        assert pl.read(flat, [0, 17]) == -2.0
        assert not ctx.findings


def test_tensor_reshape_bounds_are_those_of_the_view():
    with running(_ctx()) as ctx:
        y = Tensor("y", [2, 4, 8], FP32)
        flat = pl.reshape(y, [2, 32])
        flat[1:3, 0:32] = pl.full([2, 32], FP32, 0.0)  # row 2 does not exist
        kinds = {(f.kind, f.tensor) for f in ctx.findings.values()}
        assert kinds == {("oob-write", "y")}
        assert bool(y.written[1].all()) and not bool(y.written[0].any())


def test_tensor_reshape_to_another_size_is_an_error():
    with running(_ctx()):
        y = Tensor("y", [2, 4, 8], FP32)
        with pytest.raises(KernelError, match="reshape of tensor y"):
            pl.reshape(y, [2, 33])


def test_tensor_reshape_parallel_blocks_race_through_the_view():
    with running(_ctx()) as ctx:
        y = Tensor("y", [2, 2, 4], FP32)
        flat = pl.reshape(y, [2, 8])
        for b in pl.spmd(2, name_hint="blk"):
            flat[0:1, 0:8] = pl.full([1, 8], FP32, float(b))
        assert {f.kind for f in ctx.findings.values()} == {"race"}


def _all_values(dtype) -> torch.Tensor:
    bits = torch.arange(0, 2**16, dtype=torch.int32).to(torch.int16)
    view = {BF16: torch.bfloat16, FP16: torch.float16}[dtype]
    return bits.view(view).to(torch.float64)


@pytest.mark.parametrize("src", [BF16, FP16])
@pytest.mark.parametrize("mode", rounding.CAST_MODES)
def test_widening_cast_is_exact_in_every_mode(src, mode):
    with running(_ctx()):
        values = _all_values(src).reshape(256, 256)
        out = pl.cast(pl.Tile(values, src), target_type=FP32, mode=mode)
        exact = rounding.convert(values, FP32, mode)
        assert out.dtype is FP32
        same = (out.data == exact) | (out.data.isnan() & exact.isnan())
        assert bool(same.all())
        assert torch.equal(torch.signbit(out.data), torch.signbit(exact))


def test_widening_cast_keeps_the_valid_shape_and_rejects_unknown_modes():
    with running(_ctx()):
        t = pl.Tile(torch.ones(4, 8, dtype=torch.float64), BF16, [2, 8])
        assert pl.cast(t, target_type=FP32).valid == (2, 8)
        with pytest.raises(ValueError, match="unknown cast mode"):
            pl.cast(t, target_type=FP32, mode="nearest")
