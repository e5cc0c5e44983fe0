"""Sorting and merging of (value, index) pairs: ``sort32`` and ``mrgsort``, exact and stable
as the hardware is (pto-isa TSORT32 / TMRGSORT).

A *pair tile* is FP32 ``[.., rows, 2n]``: column ``2k`` holds a value, column ``2k + 1`` the
UINT32 bits of its index stored in FP32 memory (bit reinterpretation, not conversion); read
the indices back with ``pl.gather(pairs, mask_pattern=P1010, output_dtype=pl.UINT32/INT32)``.

* ``sort32`` sorts each block of 32 pairs by value, descending; equal values (-0 equals +0)
  are ordered by ascending index.
* ``mrgsort`` merges descending runs: the output takes, at each step, the head with the
  strictly greatest value; on equal heads the run listed first wins. For sorted runs this is
  the stable sort of the runs' concatenation, which is how it is computed; runs that are not
  sorted are merged step by step exactly as the hardware would.
* NaN values: the hardware comparators do not order them; the model puts a NaN above +inf in
  sort32 (first in its block), and in mrgsort a NaN head is never strictly greater than
  another head (and nothing is greater than a NaN head that is already picked).
"""

from __future__ import annotations

import torch

from equiv.dtypes import FP32, DType
from equiv.tile.errors import KernelError, UnsupportedOpError
from equiv.tile.context import current

from equiv.tile.movement import bits_float, float_bits
from equiv.tile.values import Tile
from equiv.tile.elementwise import tensor_operands

BLOCK = 32


def _pair_dtype(dtype: DType, op: str) -> None:
    if dtype is not FP32:
        # FP16 pairs are [value, 0, index lo, index hi] in four half slots: not modelled.
        raise UnsupportedOpError(f"{op} of {dtype!r} values", detail="FP32 pairs only")


def _pairs(values: torch.Tensor, index_bits: torch.Tensor) -> torch.Tensor:
    """Interleave values and index bits into ``[.., 2n]`` pair columns."""
    out = torch.stack([values, bits_float(index_bits, FP32)], dim=-1)
    return out.reshape(*values.shape[:-1], 2 * values.shape[-1])


@tensor_operands
def sort32(src: Tile, idx: Tile) -> Tile:
    """Sort every 32-element block of each row of ``src`` (descending), carrying ``idx``'s
    UINT32 values along; returns the pair tile (last axis doubled). A partial last block is
    padded with -inf (the hardware's tail path), so it sorts to the end of its block."""
    _pair_dtype(src.dtype, "sort32")
    if idx.dtype.is_float:
        raise KernelError(f"sort32 index tile of {idx.dtype!r}; expected UINT32")
    cols = src.data.shape[-1]
    index = idx.data.expand_as(src.data) if idx.data.shape[-2] == 1 else idx.data
    if index.shape != src.data.shape:
        raise KernelError(f"sort32 of a {src.shape} tile with a {idx.shape} index tile")
    valid = src.valid[-1]
    padded = -(-valid // BLOCK) * BLOCK
    if padded > cols:
        raise KernelError(f"sort32: {valid} valid columns need {padded} (a multiple of 32); the tile has {cols}")
    vals = src.data[..., :padded].clone()
    vals[..., valid:] = float("-inf")
    keys = index[..., :padded] & 0xFFFFFFFF
    blocks = vals.reshape(*vals.shape[:-1], padded // BLOCK, BLOCK)
    kblocks = keys.reshape(blocks.shape)
    current().decision("sort32", {"nan": torch.isnan(blocks)})
    # Stable lexicographic order: by index ascending first, then a stable sort by value
    # descending keeps equal values in index order. torch.sort puts NaN first when descending.
    by_index = torch.argsort(kblocks, dim=-1, stable=True)
    v1 = torch.gather(blocks, -1, by_index)
    by_value = torch.argsort(v1, dim=-1, descending=True, stable=True)
    perm = torch.gather(by_index, -1, by_value)
    out_v = torch.gather(blocks, -1, perm).reshape(vals.shape)
    out_k = torch.gather(kblocks, -1, perm).reshape(vals.shape)
    out = _pairs(out_v, out_k)
    if padded < cols:
        tail = current().poison((*out.shape[:-1], 2 * (cols - padded)), FP32, into="sort32's columns past its sorted blocks")
        out = torch.cat([out, tail], dim=-1)
    return Tile(out, FP32, [*src.valid[:-1], 2 * padded])


def _split(pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return pairs[..., 0::2], float_bits(pairs[..., 1::2], FP32)


def _runs_sorted(values: torch.Tensor) -> bool:
    """True when every run (last axis) is non-increasing and NaN-free."""
    if values.shape[-1] == 0:
        return True
    ok = ~torch.isnan(values).any(dim=-1)
    if values.shape[-1] > 1:
        ok &= (values[..., 1:] <= values[..., :-1]).all(dim=-1)
    return bool(ok.all())


def _merge_step_by_step(runs: list[list[tuple[float, int]]], limit: int, exhausted: bool) -> list[tuple[float, int]]:
    """The hardware's merge, one output at a time: strictly greatest head, first run on ties."""
    pos = [0] * len(runs)
    out: list[tuple[float, int]] = []
    while len(out) < limit:
        pick = -1
        for r, run in enumerate(runs):
            if pos[r] < len(run) and (pick < 0 or run[pos[r]][0] > runs[pick][pos[pick]][0]):
                pick = r
        if pick < 0:
            break
        out.append(runs[pick][pos[pick]])
        pos[pick] += 1
        if exhausted and any(p == len(run) for p, run in zip(pos, runs)):
            break
    return out


def _merge(values: torch.Tensor, keys: torch.Tensor, exhausted: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Merge the runs on axis -2 (``[.., runs, n]``) of every leading row into ``[.., runs*n]``.
    Returns values, index bits and a mask of the positions the merge wrote."""
    lead, (nruns, n) = values.shape[:-2], values.shape[-2:]
    flat_v = values.reshape(*lead, nruns * n)
    flat_k = keys.reshape(*lead, nruns * n)
    written = torch.ones(flat_v.shape, dtype=torch.bool, device=values.device)
    if _runs_sorted(values) and not exhausted:
        order = torch.argsort(flat_v, dim=-1, descending=True, stable=True)
        return torch.gather(flat_v, -1, order), torch.gather(flat_k, -1, order), written
    # Exact step-by-step merge (unsorted runs, or a merge that stops at the first exhausted run).
    v_rows = flat_v.reshape(-1, nruns, n).cpu().tolist()
    k_rows = flat_k.reshape(-1, nruns, n).cpu().tolist()
    out_v = torch.zeros(len(v_rows), nruns * n, dtype=torch.float64)
    out_k = torch.zeros(len(v_rows), nruns * n, dtype=torch.int64)
    done = torch.zeros(len(v_rows), nruns * n, dtype=torch.bool)
    for row, (vr, kr) in enumerate(zip(v_rows, k_rows)):
        runs = [list(zip(v, k)) for v, k in zip(vr, kr)]
        merged = _merge_step_by_step(runs, nruns * n, exhausted)
        if merged:
            out_v[row, : len(merged)] = torch.tensor([m[0] for m in merged], dtype=torch.float64)
            out_k[row, : len(merged)] = torch.tensor([m[1] for m in merged], dtype=torch.int64)
            done[row, : len(merged)] = True
    dev = values.device
    return (out_v.reshape(flat_v.shape).to(dev), out_k.reshape(flat_k.shape).to(dev),
            done.reshape(flat_v.shape).to(dev))


@tensor_operands
def mrgsort(src0: Tile, src1: Tile | None = None, src2: Tile | None = None, src3: Tile | None = None,
            tmp: Tile | None = None, exhausted: bool = False, *, block_len: int | None = None) -> Tile:
    """Format 1 (``block_len=``): each group of 4 consecutive runs of ``block_len`` columns
    (``block_len / 2`` pairs) of a pair tile is merged into one run. Format 2
    (``src0, src1[, src2[, src3]]``): 2 to 4 sorted pair tiles merged into one; with
    ``exhausted=True`` the merge stops when the first input runs out (the rest of the output
    is left unwritten: poison)."""
    if block_len is not None:
        if any(t is not None for t in (src1, src2, src3, tmp)) or exhausted:
            raise KernelError("mrgsort: block_len= (format 1) excludes further sources, tmp and exhausted")
        return _mrgsort_blocks(src0, int(block_len))
    sources = [t for t in (src0, src1, src2, src3) if t is not None]
    if len(sources) < 2:
        raise KernelError("mrgsort needs block_len= or at least two sorted sources")
    for t in sources:
        _pair_dtype(t.dtype, "mrgsort")
        if t.data.shape[:-1] != src0.data.shape[:-1]:
            raise KernelError(f"mrgsort of pair tiles {[s.shape for s in sources]}: leading shapes differ")
        if t.valid[-1] % 2:
            raise KernelError(f"mrgsort source with {t.valid[-1]} valid columns: pairs need an even count")
    vals, keys, lengths = [], [], []
    for t in sources:
        v, k = _split(t.data[..., : t.valid[-1]])
        lengths.append(v.shape[-1])
        vals.append(v)
        keys.append(k)
    total = sum(lengths)
    if len(set(lengths)) == 1:
        mv, mk, done = _merge(torch.stack(vals, dim=-2), torch.stack(keys, dim=-2), bool(exhausted))
    else:
        mv, mk, done = _merge_uneven(vals, keys, bool(exhausted))
    out = _pairs(mv[..., :total], mk[..., :total])
    written = done[..., :total].repeat_interleave(2, dim=-1)
    if not bool(written.all()):
        out = torch.where(written, out, current().poison(out.shape, FP32, into="mrgsort's output past an exhausted source"))
    return Tile(out, FP32, [*src0.valid[:-1], 2 * total])


def _merge_uneven(vals: list[torch.Tensor], keys: list[torch.Tensor], exhausted: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Merge runs of different lengths (step by step when not all sorted)."""
    flat_v = torch.cat(vals, dim=-1)
    flat_k = torch.cat(keys, dim=-1)
    written = torch.ones(flat_v.shape, dtype=torch.bool, device=flat_v.device)
    if all(_runs_sorted(v) for v in vals) and not exhausted:
        order = torch.argsort(flat_v, dim=-1, descending=True, stable=True)
        return torch.gather(flat_v, -1, order), torch.gather(flat_k, -1, order), written
    rows_v = [v.reshape(-1, v.shape[-1]).cpu().tolist() for v in vals]
    rows_k = [k.reshape(-1, k.shape[-1]).cpu().tolist() for k in keys]
    nrows, total = len(rows_v[0]), flat_v.shape[-1]
    out_v = torch.zeros(nrows, total, dtype=torch.float64)
    out_k = torch.zeros(nrows, total, dtype=torch.int64)
    done = torch.zeros(nrows, total, dtype=torch.bool)
    for row in range(nrows):
        runs = [list(zip(rv[row], rk[row])) for rv, rk in zip(rows_v, rows_k)]
        merged = _merge_step_by_step(runs, total, exhausted)
        if merged:
            out_v[row, : len(merged)] = torch.tensor([m[0] for m in merged], dtype=torch.float64)
            out_k[row, : len(merged)] = torch.tensor([m[1] for m in merged], dtype=torch.int64)
            done[row, : len(merged)] = True
    dev = flat_v.device
    return (out_v.reshape(flat_v.shape).to(dev), out_k.reshape(flat_k.shape).to(dev),
            done.reshape(flat_v.shape).to(dev))


def _mrgsort_blocks(src: Tile, block_len: int) -> Tile:
    _pair_dtype(src.dtype, "mrgsort")
    if block_len <= 0 or block_len % 64:
        raise KernelError(f"mrgsort block_len={block_len}: must be a positive multiple of 64")
    width = src.valid[-1]
    group = 4 * block_len
    if width % group or width == 0:
        raise KernelError(f"mrgsort block_len={block_len}: {width} valid columns are not a multiple of "
                          f"4 * block_len = {group} (the TMRGSORT single-list constraint)")
    pairs = src.data[..., :width]
    v, k = _split(pairs)
    n = block_len // 2
    lead = v.shape[:-1]
    groups = width // group
    mv, mk, _ = _merge(v.reshape(*lead, groups, 4, n), k.reshape(*lead, groups, 4, n))
    out = _pairs(mv.reshape(*lead, groups * 4 * n), mk.reshape(*lead, groups * 4 * n))
    if width < src.data.shape[-1]:
        out = torch.cat([out, src.data[..., width:]], dim=-1)
    return Tile(out, FP32, src.valid)

