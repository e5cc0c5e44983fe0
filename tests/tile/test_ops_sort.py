"""sort32 and mrgsort against independent Python sorts and merges (sorted() with an explicit
key, heapq.merge), on heavy ties, -0/+0, infinities and partial blocks; pair-tile index bits
read back through the mask-form gather."""

import heapq
import random
import struct

import pytest
import torch

from equiv import tile as pl
from equiv.tile.errors import KernelError


def f32(values):
    return [struct.unpack("<f", struct.pack("<f", v))[0] for v in values]


def ftile(rows):
    return pl.Tile(torch.tensor(rows, dtype=torch.float64), pl.FP32)


def utile(rows):
    return pl.Tile(torch.tensor(rows, dtype=torch.int64), pl.UINT32)


def split_pairs(pairs: pl.Tile):
    vals = pl.gather(pairs, mask_pattern=pl.tile.MaskPattern.P0101)
    idx = pl.gather(pairs, mask_pattern=pl.tile.MaskPattern.P1010, output_dtype=pl.UINT32)
    return vals.data.tolist(), idx.data.tolist()


def ref_sort32(values, index):
    """Blocks of 32, value descending, equal values by ascending index (Python's sort)."""
    out_v, out_i = [], []
    for b in range(0, len(values), 32):
        blk = sorted(zip(values[b:b + 32], index[b:b + 32]), key=lambda p: (-p[0], p[1]))
        out_v += [p[0] for p in blk]
        out_i += [p[1] for p in blk]
    return out_v, out_i


def tie_values(n, seed):
    rnd = random.Random(seed)
    pool = f32([0.0, -0.0, 1.0, -1.0, 0.5, 3.25, float("inf"), float("-inf"), 2.0 ** -149, 1e-3])
    return [rnd.choice(pool) for _ in range(n)]


def test_sort32_descending_ties_by_index_with_signed_zeros(ctx):
    vals = tie_values(64, 1)
    index = list(range(64))
    random.Random(2).shuffle(index)  # ties must go by the index value, not the position
    pairs = pl.sort32(ftile([vals]), utile([index]))
    assert pairs.shape == [1, 128] and pairs.dtype is pl.FP32
    got_v, got_i = split_pairs(pairs)
    want_v, want_i = ref_sort32(vals, index)
    assert got_i[0] == want_i
    assert [struct.pack("<f", v) for v in got_v[0]] == [struct.pack("<f", v) for v in want_v]


def test_sort32_index_lane_holds_uint32_bits(ctx):
    # Indices far above the fp32 subnormal range keep their bits too.
    index = [0, 1, 2**23 - 1, 2**23, 2**23 + 5, 0x3F800000, 0x7F7FFFFF, 0x80000000] * 4
    vals = [float(i % 7) for i in range(32)]
    pairs = pl.sort32(ftile([vals]), utile([index]))
    _, got_i = split_pairs(pairs)
    want_v, want_i = ref_sort32(vals, index)
    assert got_i[0] == want_i
    as_int32 = pl.gather(pairs, mask_pattern=pl.tile.MaskPattern.P1010, output_dtype=pl.INT32).data.tolist()[0]
    assert as_int32 == [i - 2**32 if i >= 2**31 else i for i in want_i]


def test_sort32_partial_block_pads_with_minus_inf(ctx):
    vals = [5.0, -1.0, 7.0] + [0.0] * 29
    t = pl.Tile(torch.tensor([vals], dtype=torch.float64), pl.FP32, [1, 3])
    pairs = pl.sort32(t, utile([list(range(32))]))
    got_v, got_i = split_pairs(pairs)
    assert got_v[0][:3] == [7.0, 5.0, -1.0] and got_i[0][:3] == [2, 0, 1]
    assert got_v[0][3:] == [float("-inf")] * 29


def test_sort32_equal_values_go_by_index_not_position(ctx):
    index = list(range(31, -1, -1))
    _, got_i = split_pairs(pl.sort32(ftile([[1.0] * 32]), utile([index])))
    assert got_i[0] == list(range(32))  # a position-stable sort would keep 31, 30, ...


def test_sort32_nan_model_sorts_first(ctx):
    vals = [1.0, float("nan"), float("inf")] + [0.0] * 29
    got_v, got_i = split_pairs(pl.sort32(ftile([vals]), utile([list(range(32))])))
    assert got_v[0][0] != got_v[0][0] and got_i[0][:3] == [1, 2, 0]


def ref_merge(runs):
    """Descending merge; on equal values the earlier run first (heapq.merge is stable)."""
    return list(heapq.merge(*runs, key=lambda p: p[0], reverse=True))


def pair_tile(pairs_rows):
    flat = []
    for row in pairs_rows:
        vals = [v for v, _ in row]
        bits = [struct.unpack("<f", struct.pack("<I", i))[0] for _, i in row]
        flat.append([x for pair in zip(vals, bits) for x in pair])
    return ftile(flat)


@pytest.mark.parametrize("seed", [0, 1])
def test_mrgsort_format1_matches_stable_merge_of_four_runs(ctx, seed):
    rnd = random.Random(seed)
    runs = []
    for r in range(8):  # two groups of four runs of 32 pairs (block_len=64 columns)
        vals = tie_values(32, seed * 10 + r)
        runs.append(sorted(zip(vals, [rnd.randrange(1000) for _ in range(32)]), key=lambda p: -p[0]))
    merged = pl.mrgsort(pair_tile([[p for run in runs for p in run]]), block_len=64)
    got_v, got_i = split_pairs(merged)
    want = ref_merge(runs[:4]) + ref_merge(runs[4:])
    assert got_i[0] == [i for _, i in want]
    assert [struct.pack("<f", v) for v in got_v[0]] == [struct.pack("<f", v) for v, _ in want]


def test_mrgsort_unsorted_runs_merge_step_by_step(ctx):
    # Runs that are not sorted: the hardware picks the strictly greatest head each step.
    runs = [[(1.0, 0), (5.0, 1)], [(2.0, 2), (0.0, 3)], [(1.0, 4), (9.0, 5)], [(0.5, 6), (0.25, 7)]]
    runs = [r * 16 for r in runs]  # 32 pairs per run
    merged = pl.mrgsort(pair_tile([[p for run in runs for p in run]]), block_len=64)
    _, got_i = split_pairs(merged)
    pos, want = [0, 0, 0, 0], []
    for _ in range(128):
        best = max((r for r in range(4) if pos[r] < 32), key=lambda r: (runs[r][pos[r]][0], -r))
        want.append(runs[best][pos[best]][1])
        pos[best] += 1
    assert got_i[0] == want


def test_mrgsort_format2_two_to_four_sources_and_uneven_lengths(ctx):
    rnd = random.Random(7)
    runs = [sorted(zip(tie_values(n, n), [rnd.randrange(99) for _ in range(n)]), key=lambda p: -p[0])
            for n in (32, 32, 16, 8)]
    for k in (2, 3, 4):
        out = pl.mrgsort(*[pair_tile([r]) for r in runs[:k]])
        _, got_i = split_pairs(out)
        assert got_i[0] == [i for _, i in ref_merge(runs[:k])]


def test_mrgsort_exhausted_stops_at_first_empty_source(ctx):
    a = [(9.0, 0), (8.0, 1)]
    b = [(7.0, 2), (1.0, 3)]
    out = pl.mrgsort(pair_tile([a]), pair_tile([b]), exhausted=True)
    vals = out.data[0, 0::2].tolist()
    assert vals[:2] == [9.0, 8.0]
    # a ran out after two outputs: the rest is left unwritten (poison, NaN by default)
    assert all(v != v for v in vals[2:])


def test_mrgsort_rejects_widths_off_the_group_size(ctx):
    with pytest.raises(KernelError, match="multiple of"):
        pl.mrgsort(ftile([[0.0] * 192]), block_len=64)
    with pytest.raises(KernelError, match="multiple of 64"):
        pl.mrgsort(ftile([[0.0] * 256]), block_len=32)


def test_sort_pipeline_is_a_stable_descending_argsort(ctx):
    """sort32 -> mrgsort 64 -> 256 -> 1024 -> P1010 indices == stable torch argsort."""
    vals = tie_values(2048, 11)
    scores = ftile([vals])
    idx = pl.arange(0, [1, 2048], dtype=pl.UINT32)
    pairs = pl.sort32(scores, idx)
    for block_len in (64, 256, 1024):
        pairs = pl.mrgsort(pairs, block_len=block_len)
    got = pl.gather(pairs, mask_pattern=pl.tile.MaskPattern.P1010, output_dtype=pl.INT32).data[0].tolist()
    want = sorted(range(2048), key=lambda i: (-vals[i], i))
    assert got == want
