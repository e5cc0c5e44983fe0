"""``pl.assemble(target, source_tensor, offset)``: pypto's tensor form copies a whole global
tensor (scratch made by ``pl.create_tensor``) into a window of another."""

from __future__ import annotations

import torch

from equiv import tile as pl
from equiv.dtypes import BF16
from equiv.tile.context import RunContext, running
from equiv.tile.memory import Tensor
from equiv.options import Options


def _run(fill_rows: int):
    with running(RunContext(Options(poison="nan"))):
        src = Tensor.from_torch("src", torch.arange(12.0).reshape(3, 4))
        out = Tensor("out", (5, 4), BF16)
        scratch = pl.create_tensor([2, 4], dtype=pl.BF16)
        scratch[0:fill_rows, 0:4] = pl.cast(src[0:fill_rows, 0:4], target_type=pl.BF16, mode="rint")
        out = pl.assemble(out, scratch, [2, 0])
    return out


def test_a_tensor_source_is_copied_into_the_window():
    out = _run(2)
    assert torch.equal(out.to_torch()[2:4], torch.arange(8.0).reshape(2, 4))
    assert bool(out.written[2:4].all()) and not bool(out.written[0:2].any()) and not bool(out.written[4].any())


def test_unwritten_source_elements_arrive_as_poison():
    out = _run(1)
    assert torch.equal(out.to_torch()[2], torch.arange(4.0))
    assert bool(torch.isnan(out.to_torch()[3]).all())  # the scratch row never written: NaN poison
    assert BF16.is_float


def test_slice_assignment_of_a_tensor_copies_it():
    # lm_head's `sampled_ids[row : row + 1, :] = sampled_row` (sampled_row from pl.create_tensor)
    with running(RunContext(Options(poison="nan"))):
        dst = Tensor("dst", (3, 4), BF16)
        row = pl.create_tensor([1, 4], dtype=pl.BF16)
        row[0:1, 0:4] = pl.cast(Tensor.from_torch("s", torch.tensor([[1.0, 2.0, 3.0, 4.0]]))[0:1, 0:4],
                                target_type=pl.BF16, mode="rint")
        dst[1:2, :] = row
    assert torch.equal(dst.to_torch()[1], torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert bool(dst.written[1].all()) and not bool(dst.written[0].any()) and not bool(dst.written[2].any())
