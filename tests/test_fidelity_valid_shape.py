"""Bounds are checked on what the device writes: a tile's valid shape, not its full window.

A 16-row tile whose valid shape is 8 rows, stored into an 8-row tensor, writes 8 rows on the
device; reporting `oob-write` for it is a false hazard. Every valid-shape form is covered:
``valid_shape=`` on loads and slices, ``set_validshape``, the tensor-window store and
``pl.assemble`` (plain and atomic); a store whose *valid* rows pass the edge is still caught.
"""

from __future__ import annotations

import pytest
import torch

import equiv.tile as pl
from equiv.tile.context import RunContext, running
from equiv.tile.memory import Tensor
from equiv.options import Options
from tests.test_pairfree import FILE, check, commit, kernel, repo  # noqa: F401 (fixture)


@pytest.fixture
def ctx():
    with running(RunContext(Options(seed=3))) as c:
        yield c


def _kinds(ctx, kind: str) -> list:
    return [f for f in ctx.findings.values() if f.kind == kind]


def _edge_tile(valid_rows: int = 8):
    x = Tensor.from_torch("x", torch.arange(32.0).reshape(8, 4))
    t = pl.load(x, [0, 0], [16, 4], valid_shape=[8, 4])
    return pl.tile.set_validshape(t, valid_rows, 4) if valid_rows != 8 else t


@pytest.mark.parametrize("form", ["setitem", "assemble", "atomic", "store", "slice"])
def test_a_valid_shape_store_at_the_tensor_edge_is_in_range(ctx, form):
    out = Tensor("out", [8, 4], pl.FP32)
    t = _edge_tile()
    if form == "setitem":
        out[0:16, :] = t
    elif form == "assemble":
        pl.assemble(out, t, [0, 0])
    elif form == "atomic":
        out = Tensor("out", [8, 4], pl.FP32, torch.zeros(8, 4), written=True)
        pl.assemble(out, t, [0, 0], atomic=pl.AtomicType.Add)
    elif form == "store":
        pl.store(t, [0, 0], out)
    else:
        pl.store(pl.slice(pl.tile.full([16, 4], dtype=pl.FP32, value=1.0), [16, 4], [0, 0],
                          valid_shape=[8, 4]), [0, 0], out)
    assert not ctx.findings
    assert bool(out.written.all())


@pytest.mark.parametrize("form", ["setitem", "assemble", "atomic", "store"])
def test_valid_rows_past_the_edge_are_still_out_of_range(ctx, form):
    out = Tensor("out", [8, 4], pl.FP32, torch.zeros(8, 4), written=True)
    t = _edge_tile(valid_rows=9)  # row 8 is valid and lies past the 8-row tensor
    if form == "setitem":
        out[0:16, :] = t
    elif form == "assemble":
        pl.assemble(out, t, [0, 0])
    elif form == "atomic":
        pl.assemble(out, t, [0, 0], atomic=pl.AtomicType.Add)
    else:
        pl.store(t, [0, 0], out)
    (f,) = _kinds(ctx, "oob-write")
    assert f.tensor == "out" and f.count == 4  # the one valid row past the edge, not 8 rows


def test_fillpad_literal_pad_values_are_pypto_sugar(ctx):
    t = _edge_tile()
    assert float(pl.tile.fillpad(t, pad_value=0.0).data[12, 0]) == 0.0
    assert float(pl.tile.fillpad(t, pad_value=float("-inf")).data[12, 0]) == float("-inf")
    with pytest.raises(Exception, match="pad value"):
        pl.tile.fillpad(t, pad_value=1.5)


EDGE = ("w = pl.load(x, [0, 0], [2 * T, D], valid_shape=[T, D])\n"
        "        pl.assemble(y, pl.mul(w, 2.0), [0, 0])")


def test_model_file_storing_a_valid_shape_tile_at_the_edge_is_equivalent(repo, capsys):
    a = commit(repo, {FILE: kernel(tile=4)})
    b = commit(repo, {FILE: kernel(blocks="1", body=EDGE)})
    assert check(repo, FILE, a, b) == 0
    out = capsys.readouterr().out
    assert "scale_test: EQUIVALENT" in out and "oob-write" not in out


def test_model_file_whose_valid_rows_pass_the_edge_is_a_regression(repo, capsys):
    a = commit(repo, {FILE: kernel(tile=4)})
    broken = EDGE.replace("pl.mul(w, 2.0)", "pl.tile.set_validshape(pl.mul(w, 2.0), T + 1, D)")
    b = commit(repo, {FILE: kernel(blocks="1", body=broken)})
    assert check(repo, FILE, a, b) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "oob-write" in out
