"""Data movement: mask-pattern gathers and scatters against Python slicing, bit
reinterpretation against struct, flat-index tile.gather, concat and transposes with valid
shapes, and gather_row from a global tensor: an out-of-range source row is caught (recorded
with the kernel line, or raised) and an in-range one passes with no finding."""

import struct

import pytest
import torch

from equiv import rounding
from equiv import tile as pl
from equiv.tile.errors import KernelError, OutOfBoundsError
from equiv.tile.context import RunContext, running
from equiv.tile.memory import Tensor
from equiv.options import Options


def tile(values, dtype=pl.FP32, valid=None):
    data = torch.tensor(values, dtype=torch.float64)
    data = rounding.convert(data, dtype, "rint") if dtype.is_float else data.long()
    return pl.Tile(data, dtype, valid)


PATTERNS = {"P0101": (0, 2), "P1010": (1, 2), "P0001": (0, 4), "P0010": (1, 4), "P0100": (2, 4),
            "P1000": (3, 4), "P1111": (0, 1)}


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_gather_mask_patterns_select_columns(ctx, name):
    rows = [[float(10 * r + c) for c in range(8)] for r in range(2)]
    out = pl.gather(tile(rows), mask_pattern=getattr(pl.tile.MaskPattern, name))
    first, stride = PATTERNS[name]
    assert out.data.tolist() == [row[first::stride] for row in rows]


EDGE = [0.0, -0.0, 1.0, -2.5, 2.0 ** -149, 2.0 ** -126 - 2.0 ** -149, 3.4028234663852886e38,
        float("inf"), float("-inf")]


def test_gather_mask_output_dtype_reinterprets_bits(ctx):
    x = tile([[v for v in EDGE for _ in range(2)]])
    as_i32 = pl.gather(x, mask_pattern=pl.tile.MaskPattern.P0101, output_dtype=pl.INT32)
    as_u32 = pl.gather(x, mask_pattern=pl.tile.MaskPattern.P1010, output_dtype=pl.UINT32)
    assert as_i32.dtype is pl.INT32 and as_u32.dtype is pl.UINT32
    assert as_i32.data[0].tolist() == [struct.unpack("<i", struct.pack("<f", v))[0] for v in EDGE]
    assert as_u32.data[0].tolist() == [struct.unpack("<I", struct.pack("<f", v))[0] for v in EDGE]
    with pytest.raises(KernelError, match="widths differ"):
        pl.gather(x, mask_pattern=1, output_dtype=pl.INT16)


def test_scatter_mask_is_the_inverse_of_gather_mask(ctx):
    dst = tile([[0.0] * 8])
    even = tile([[1.0, 2.0, 3.0, 4.0]])
    odd = tile([[5.0, 6.0, 7.0, 8.0]])
    out = pl.tensor.scatter(even, mask_pattern=pl.tile.MaskPattern.P0101, dst=dst)
    out = pl.tensor.scatter(odd, mask_pattern=pl.tile.MaskPattern.P1010, dst=out)
    assert out.data.tolist() == [[1.0, 5.0, 2.0, 6.0, 3.0, 7.0, 4.0, 8.0]]


def test_tile_gather_uses_flat_indices_and_records_out_of_range(ctx):
    src = tile([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    idx = tile([[5, 0], [3, 1]], pl.INT32)
    assert pl.tile.gather(src, idx, idx).data.tolist() == [[5.0, 0.0], [3.0, 1.0]]
    assert not ctx.findings
    bad = tile([[6, 0]], pl.INT32)
    out = pl.tile.gather(src, bad, bad)
    (finding,) = ctx.findings.values()
    assert finding.kind == "oob-read" and "test_ops_movement.py" in finding.site
    assert out.data[0, 1].item() == 0.0 and out.data[0, 0].item() != out.data[0, 0].item()  # poison
    with running(RunContext(Options(out_of_bounds="raise"))):
        with pytest.raises(OutOfBoundsError):
            pl.tile.gather(src, bad, bad)


def test_index_gather_along_last_axis(ctx):
    src = tile([[10.0, 11.0, 12.0], [20.0, 21.0, 22.0]])
    idx = tile([[2, 2, 0], [1, 0, 1]], pl.INT32)
    assert pl.gather(src, dim=-1, index=idx).data.tolist() == [[12.0, 12.0, 10.0], [21.0, 20.0, 21.0]]


def test_concat_and_transposes_keep_valid_shapes(ctx):
    a = tile([[1.0, 2.0], [3.0, 4.0]])
    b = tile([[5.0], [6.0]], valid=[2, 1])
    c = pl.concat(a, b)
    assert c.data.tolist() == [[1.0, 2.0, 5.0], [3.0, 4.0, 6.0]] and c.valid == (2, 3)
    t = pl.transpose(tile([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], valid=[2, 2]), axis1=0, axis2=1)
    assert t.data.tolist() == [[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]] and t.valid == (2, 2)
    assert pl.tile.transpose_view(a).data.tolist() == [[1.0, 3.0], [2.0, 4.0]]
    with pytest.raises(KernelError, match="cast one first"):
        pl.concat(a, tile([[1], [2]], pl.INT32))


def _pool(rows=4, cols=3):
    data = torch.arange(rows * cols, dtype=torch.float64).reshape(rows, cols)
    return Tensor("kv_pool", [rows, cols], pl.FP32, data, written=True)


def test_gather_row_copies_rows_into_the_accumulator(ctx):
    pool = _pool()
    acc = pl.full([2, 3], pl.FP32, -1.0)
    acc = pl.gather_row(acc, pool, [0, 0], [3, 0], [1, 3])
    acc = pl.gather_row(acc, pool, [1, 0], [1, 0], [1, 3], valid_shape=[1, 2])
    assert acc.data.tolist() == [[9.0, 10.0, 11.0], [3.0, 4.0, -1.0]]
    t = pl.gather_row(pl.full([3, 2], pl.FP32, 0.0), pool, [0, 1], [2, 0], [1, 3], True)
    assert t.data.tolist() == [[0.0, 6.0], [0.0, 7.0], [0.0, 8.0]]
    assert not ctx.findings


def test_gather_row_into_a_tensor_accumulator_marks_it_written(ctx):
    acc = Tensor("acc", [2, 3], pl.FP32)
    out = pl.gather_row(acc, _pool(), [1, 0], [2, 0], [1, 3])
    assert out is acc and acc.written.tolist() == [[False] * 3, [True] * 3]
    assert acc.data[1].tolist() == [6.0, 7.0, 8.0]


def test_gather_row_out_of_range_source_row_is_caught(ctx):
    pool = _pool()
    acc = pl.gather_row(pl.full([1, 3], pl.FP32, 0.0), pool, [0, 0], [4, 0], [1, 3])  # row 4 of 4
    (finding,) = ctx.findings.values()
    assert finding.kind == "oob-read" and finding.tensor == "kv_pool"
    assert "test_ops_movement.py" in finding.site
    assert all(v != v for v in acc.data[0].tolist())  # poison (NaN by default)
    with running(RunContext(Options(out_of_bounds="raise"))):
        with pytest.raises(OutOfBoundsError):
            pl.gather_row(pl.full([1, 3], pl.FP32, 0.0), _pool(), [0, 0], [4, 0], [1, 3])
    with pytest.raises(KernelError, match="accumulator"):
        pl.gather_row(pl.full([1, 3], pl.FP32, 0.0), pool, [1, 0], [0, 0], [1, 3])
