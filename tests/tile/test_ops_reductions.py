"""Column reductions and row_argmax against independent scans in numpy float32 / Python:
col_sum's sequential and tree orders give different bits on a chosen column; argmax ties,
NaN and signed zeros follow the first-strictly-greater scan."""

import numpy as np
import torch

from equiv import rounding
from equiv import tile as pl


def tile(values, dtype=pl.FP32, valid=None):
    data = torch.tensor(values, dtype=torch.float64)
    data = rounding.convert(data, dtype, "rint") if dtype.is_float else data.long()
    return pl.Tile(data, dtype, valid)


E = 2.0 ** -24  # half an fp32 ULP at 1.0
COLUMN = [1.0, E, E, E, E, 1.0, -1.0, E]


def seq_f32(values):
    acc = np.float32(values[0])
    for v in values[1:]:
        acc = np.float32(acc + np.float32(v))
    return float(acc)


def tree_f32(values):
    vals = [np.float32(v) for v in values]
    while len(vals) > 1:
        nxt = [np.float32(vals[i] + vals[i + 1]) for i in range(0, len(vals) - 1, 2)]
        if len(vals) % 2:
            nxt.append(vals[-1])
        vals = nxt
    return float(vals[0])


def test_col_sum_orders_sequential_and_tree(ctx):
    x = tile([[v, 2 * v] for v in COLUMN])
    seq = pl.col_sum(x)
    tree = pl.col_sum(x, pl.full([8, 2], pl.FP32, 0.0))  # a scratch tile selects the tree
    assert seq.shape == [1, 2]
    assert seq.data[0].tolist() == [seq_f32(COLUMN), seq_f32([2 * v for v in COLUMN])]
    assert tree.data[0].tolist() == [tree_f32(COLUMN), tree_f32([2 * v for v in COLUMN])]
    assert seq_f32(COLUMN) != tree_f32(COLUMN)  # the column tells the orders apart


def test_col_sum_reads_valid_rows_only_and_bf16_rounds_each_add(ctx):
    x = tile([[1.0], [2.0], [float("nan")]], valid=[2, 1])
    assert pl.col_sum(x).data.tolist() == [[3.0]]
    b = tile([[1.0], [2.0 ** -8], [2.0 ** -8]], pl.BF16)
    # bf16: 1 + 2^-8 ties to 1, twice; the exact sum 1 + 2^-7 is representable
    assert pl.col_sum(b).data.tolist() == [[1.0]]
    assert pl.col_sum(tile([[3], [-5], [7]], pl.INT32)).data.tolist() == [[5]]


def test_col_max_min_exact_with_nan_and_signed_zero(ctx):
    x = tile([[1.0, -0.0, float("nan")], [3.0, 0.0, 1.0], [-2.0, -1.0, 5.0]])
    assert pl.col_max(x).data.tolist()[0][:2] == [3.0, 0.0]
    assert np.isnan(pl.col_max(x).data[0, 2].item())
    assert pl.col_min(x).data.tolist()[0][:2] == [-2.0, -1.0]


def scan_argmax(row):
    best, at = row[0], 0
    for i, v in enumerate(row[1:], 1):
        if v > best:
            best, at = v, i
    return at


ROWS = [
    [3.0, 5.0, 5.0, 1.0],
    [float("nan"), 9.0, 1.0, 2.0],
    [1.0, float("nan"), 7.0, 7.0],
    [-0.0, 0.0, -0.0, -1.0],
    [float("-inf")] * 4,
    [float("-inf"), float("nan"), float("nan"), float("-inf")],
    [2.0, float("inf"), float("inf"), 3.0],
]


def test_row_argmax_first_strictly_greater(ctx):
    out = pl.row_argmax(tile(ROWS), pl.full([7, 4], pl.FP32, 0.0))
    assert out.dtype is pl.INT32 and out.shape == [7, 1]
    assert [r[0] for r in out.data.tolist()] == [scan_argmax(r) for r in ROWS]
    ints = tile([[4, 9, 9, -3], [-7, -7, -8, -9]], pl.INT32)
    assert pl.row_argmax(ints).data.tolist() == [[1], [0]]


def test_row_argmax_respects_valid_columns(ctx):
    x = tile([[1.0, 2.0, 99.0]], valid=[1, 2])
    assert pl.row_argmax(x).data.tolist() == [[1]]


def test_row_reductions_take_a_scratch_tile(ctx):
    x = tile([[1.0, 4.0], [3.0, 2.0]])
    tmp = pl.full([2, 2], pl.FP32, 0.0)
    assert pl.row_max(x, tmp).data.tolist() == [[4.0], [3.0]]
    assert pl.tile.row_sum(x, tmp).data.tolist() == [[5.0], [5.0]]
