"""Data movement within and into tiles: gathers (by index, by flat index, by hardware mask
pattern), the mask-pattern scatter, concatenation, transposes, the per-row GM gather into an
on-chip accumulator, and bit reinterpretation between types of one width. Nothing here
rounds: every value moves unchanged (or as the same bits under another type)."""

from __future__ import annotations

from typing import Sequence

import torch

from equiv import rounding
from equiv.dtypes import BF16, FP16, FP32, DType
from equiv.tile.errors import KernelError
from equiv.tile.memory import Tensor
from equiv.tile.context import current

from equiv.tile.values import Tile
from equiv.tile.elementwise import tensor_operands

_slice = slice


# ----------------------------------------------------------------------------------------
# Bits of a value: exact integer arithmetic for subnormals, so flush-to-zero never matters
# ----------------------------------------------------------------------------------------
# dtype -> (exponent bits, mantissa bits, integer view type, float view type)
_FLOAT_LAYOUT = {
    FP32: (8, 23, torch.int32, torch.float32),
    BF16: (8, 7, torch.int16, torch.bfloat16),
    FP16: (5, 10, torch.int16, torch.float16),
}


def float_bits(x: torch.Tensor, dtype: DType) -> torch.Tensor:
    """Unsigned bit patterns (int64) of the ``dtype`` values held in container ``x``."""
    x = x.to(torch.float64)  # (the subnormal scale below overflows float32)
    ebits, mbits, ity, fty = _FLOAT_LAYOUT[dtype]
    width = 1 + ebits + mbits
    min_exp = 2 - 2 ** (ebits - 1)                       # exponent of the smallest normal
    tiny = 2.0 ** min_exp
    scale = 2.0 ** (mbits - min_exp)                     # subnormal value -> mantissa integer
    mag = x.abs()
    sign = torch.signbit(x).to(torch.int64) << (width - 1)
    sub_bits = (mag * scale).to(torch.int64) | sign
    nrm_bits = x.to(fty).view(ity).to(torch.int64) & ((1 << width) - 1)
    return torch.where(mag < tiny, sub_bits, nrm_bits)


def bits_float(bits: torch.Tensor, dtype: DType) -> torch.Tensor:
    """Float64 values of the ``dtype`` numbers with unsigned bit patterns ``bits``."""
    ebits, mbits, ity, fty = _FLOAT_LAYOUT[dtype]
    width = 1 + ebits + mbits
    bits = bits & ((1 << width) - 1)
    exp_field = (bits >> mbits) & ((1 << ebits) - 1)
    mant = (bits & ((1 << mbits) - 1)).to(torch.float64)
    sign = torch.where((bits >> (width - 1)) == 1, -1.0, 1.0).to(torch.float64)
    sub = sign * mant * 2.0 ** (2 - 2 ** (ebits - 1) - mbits)
    signed = torch.where(bits >= 1 << (width - 1), bits - (1 << width), bits)
    nrm = signed.to(ity).view(fty).to(torch.float64)
    return torch.where(exp_field == 0, sub, nrm)


def reinterpret(data: torch.Tensor, src: DType, dst: DType) -> torch.Tensor:
    """The same bits, read as ``dst`` (both types of one width)."""
    if src.bits != dst.bits:
        raise KernelError(f"bit reinterpretation of {src!r} as {dst!r}: widths differ")
    if src == dst:
        return data
    bits = float_bits(data, src) if src.is_float else data & ((1 << src.bits) - 1)
    if dst.is_float:
        return bits_float(bits, dst)
    return rounding.wrap_int(bits, dst)


# ----------------------------------------------------------------------------------------
# Out-of-range indices: recorded (or raised) like slices, and read as poison
# ----------------------------------------------------------------------------------------
def _index_guard(idx: torch.Tensor, n: int, what: str, dtype: DType) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Clamped indices and the out-of-range mask (None when all are inside ``[0, n)``)."""
    bad = (idx < 0) | (idx >= n)
    if not bool(bad.any()):
        return idx, None
    ctx = current()
    hit = bad.nonzero()
    first = hit[0].tolist()
    detail = f"{what} index {int(idx[tuple(first)])} at {first} outside [0, {n})"
    region = [(int(hit[:, d].min()), int(hit[:, d].max()) + 1) for d in range(hit.shape[1])]
    if not ctx.fan.out_of_range and ctx.batch is not None:
        ctx.batch.stop(f"a oob-read finding on {what} source")  # replayed block by block all the same
    ctx.out_of_range("oob-read", f"{what} source", detail, region, count=int(hit.shape[0]))
    return idx.clamp(0, max(n - 1, 0)), bad


def _poison_where(out: torch.Tensor, bad: torch.Tensor | None, dtype: DType) -> torch.Tensor:
    if bad is None:
        return out
    return torch.where(bad, current().poison(out.shape, dtype, into="an element read at an out-of-range index"), out)


# ----------------------------------------------------------------------------------------
# Gathers
# ----------------------------------------------------------------------------------------
class MaskPattern:
    """Hardware mask patterns of the mask-form gather/scatter (pypto's codes 1..7); the
    pattern is read right to left: P0101 selects columns 0, 2, 4, ..."""

    P0101 = 1
    P1010 = 2
    P0001 = 3
    P0010 = 4
    P0100 = 5
    P1000 = 6
    P1111 = 7


# code -> (first selected column, stride)
_PATTERNS = {1: (0, 2), 2: (1, 2), 3: (0, 4), 4: (1, 4), 5: (2, 4), 6: (3, 4), 7: (0, 1)}


def _pattern(mask_pattern: int) -> tuple[int, int]:
    code = int(mask_pattern)
    if code not in _PATTERNS:
        raise KernelError(f"mask_pattern {mask_pattern!r}; expected 1..7 (pl.tile.MaskPattern)")
    return _PATTERNS[code]


@tensor_operands
def gather_mask(src: Tile, mask_pattern: int, *, output_dtype: DType | None = None) -> Tile:
    """The columns a hardware mask pattern selects, row by row; ``output_dtype`` (same width)
    reads their bits as another type (sort32 pairs: P0101 values, P1010 UINT32 indices)."""
    first, stride = _pattern(mask_pattern)
    data = src.data[..., first::stride]
    valid_cols = max(0, -(-(src.valid[-1] - first) // stride))
    dtype = output_dtype or src.dtype
    if dtype != src.dtype:
        data = reinterpret(data, src.dtype, dtype)
    return Tile(data.clone(), dtype, [*src.valid[:-1], valid_cols])


@tensor_operands
def gather(x: Tile, dim: int | None = None, index: Tile | None = None, *, mask_pattern: int | None = None,
           output_dtype: DType | None = None, **compare_form) -> Tile:
    """``pl.gather``: index form ``out[.., r, k] = x[.., r, index[.., r, k]]`` (last axis), or
    the mask form (``mask_pattern=``, optional ``output_dtype=``, see `gather_mask`)."""
    if compare_form:
        from equiv.tile.errors import UnsupportedOpError
        raise UnsupportedOpError("gather compare form", detail=", ".join(sorted(compare_form)))
    if mask_pattern is not None:
        if dim is not None or index is not None:
            raise KernelError("gather: the index form (dim, index) and mask_pattern= exclude each other")
        return gather_mask(x, mask_pattern, output_dtype=output_dtype)
    if output_dtype is not None:
        raise KernelError("gather: output_dtype= belongs to the mask form (mask_pattern=)")
    if index is None or index.dtype.is_float:
        raise KernelError("gather needs an integer index tile")
    if dim not in (-1, len(x.valid) - 1):  # len(valid) is the tile's own (logical) rank
        raise KernelError("gather is supported along the last axis only")
    idx = index.data
    if tuple(idx.shape[:-1]) != tuple(x.data.shape[:-1]):
        raise KernelError(f"gather index shape {index.shape} does not match source {x.shape} "
                          f"outside the last axis")
    n = x.data.shape[-1]
    safe, bad = _index_guard(idx, n, "gather", x.dtype)
    out = torch.gather(x.data, -1, safe)
    return Tile(_poison_where(out, bad, x.dtype), x.dtype, index.valid)


@tensor_operands
def tile_gather(src: Tile, indices: Tile, tmp: Tile | None = None) -> Tile:
    """``pl.tile.gather``: ``out[r, c] = src.flat[indices[r, c]]``, a flat row-major index
    into the whole ``[rows, cols]`` source tile (``tmp`` is the hardware's scratch)."""
    if indices.dtype.is_float:
        raise KernelError("tile.gather needs an integer index tile")
    flat = src.data.reshape(*src.data.shape[:-2], -1)
    idx = indices.data
    lead = idx.shape[:-2]
    safe, bad = _index_guard(idx, flat.shape[-1], "tile.gather", src.dtype)
    out = torch.gather(flat, -1, safe.reshape(*lead, -1)).reshape(idx.shape)
    return Tile(_poison_where(out, bad, src.dtype), src.dtype, indices.valid)


@tensor_operands
def scatter(input: Tile, dim: int | None = None, index: Tile | None = None, src: Tile | None = None,  # noqa: A002
            *, mask_pattern: int | None = None, dst: Tile | None = None) -> Tile:
    """``pl.tensor.scatter``: the mask form writes ``input``'s columns into the columns of
    ``dst`` the pattern selects (the inverse of `gather_mask`); the index form writes
    ``src[.., r, k]`` to column ``index[.., r, k]`` of a copy of ``input``."""
    if mask_pattern is not None:
        if dst is None:
            raise KernelError("scatter mask form needs dst=")
        first, stride = _pattern(mask_pattern)
        cols = dst.data.shape[-1]
        if input.data.shape[-1] * stride != cols or input.data.shape[:-1] != dst.data.shape[:-1]:
            raise KernelError(f"scatter of a {input.shape} tile into {dst.shape} with stride {stride}")
        if input.dtype != dst.dtype:
            raise KernelError(f"scatter of {input.dtype!r} into {dst.dtype!r}")
        out = dst.data.clone()
        out[..., first::stride] = input.data
        return Tile(out, dst.dtype, dst.valid)
    if index is None or src is None or dim not in (-1, len(input.valid) - 1):
        raise KernelError("scatter index form needs dim=-1, index and src")
    safe, bad = _index_guard(index.data, input.data.shape[-1], "scatter", input.dtype)
    if bad is not None:
        # Out-of-range destinations are dropped (recorded above), never wrapped.
        safe = torch.where(bad, torch.full_like(safe, input.data.shape[-1]), safe)
        wide = torch.cat([input.data, input.data[..., :1]], dim=-1)
        return Tile(wide.scatter(-1, safe, src.data)[..., :-1], input.dtype, input.valid)
    return Tile(input.data.scatter(-1, safe, src.data), input.dtype, input.valid)


# ----------------------------------------------------------------------------------------
# Concatenation and transposes
# ----------------------------------------------------------------------------------------
@tensor_operands
def concat(a: Tile, b: Tile) -> Tile:
    """``[a | b]`` along the last axis (same type, same leading shape)."""
    if a.dtype != b.dtype:
        raise KernelError(f"concat of {a.dtype!r} and {b.dtype!r}; cast one first")
    if a.data.shape[:-1] != b.data.shape[:-1]:
        raise KernelError(f"concat of {a.shape} and {b.shape}: leading shapes differ")
    data = torch.cat([a.data, b.data], dim=-1)
    lead = [min(p, q) for p, q in zip(a.valid[:-1], b.valid[:-1])]
    # b's valid columns follow a's only when a is valid to its last column.
    cols = a.valid[-1] + b.valid[-1] if a.valid[-1] == a.data.shape[-1] else a.valid[-1]
    return Tile(data, a.dtype, [*lead, cols])


@tensor_operands
def transpose(x: Tile, axis1: int, axis2: int, tmp: Tile | None = None) -> Tile:
    """Swap two axes (negative axes count from the end)."""
    rank = len(x.valid)
    a1, a2 = int(axis1), int(axis2)
    for a in (a1, a2):
        if not -rank <= a < rank:
            raise KernelError(f"transpose axis {a} of a {rank}-d tile")
    a1, a2 = a1 % rank - rank, a2 % rank - rank
    valid = list(x.valid)
    valid[a1], valid[a2] = valid[a2], valid[a1]
    return Tile(x.data.transpose(a1, a2).contiguous(), x.dtype, valid)


@tensor_operands
def transpose_view(x: Tile) -> Tile:
    """The layout view that swaps the last two axes (a transpose of the values)."""
    return transpose(x, -2, -1)


# ----------------------------------------------------------------------------------------
# Per-row gather from global memory into an on-chip accumulator
# ----------------------------------------------------------------------------------------
def gather_row(acc: Tile | Tensor, src: Tensor | Tile, dst_offset: Sequence[int], src_offset: Sequence[int],
               shapes: Sequence[int], transpose: bool = False, *,
               valid_shape: Sequence[int] | None = None) -> Tile:
    """``acc`` with the ``shapes`` window of ``src`` at ``src_offset`` written at
    ``dst_offset`` (placed as ``[c, r]`` when ``transpose``), in place. Only ``valid_shape`` of the
    window is transferred; the rest of ``acc`` keeps its values. Reads outside ``src`` are
    recorded like any out-of-range slice and read as poison."""
    shape = [int(s) for s in shapes]
    moved = [int(v) for v in (valid_shape if valid_shape is not None else shape)]
    if transpose and valid_shape is not None:
        raise KernelError("gather_row: valid_shape= is not supported together with transpose=True")
    if len(shape) != 2 or len(moved) != 2 or len(src_offset) != 2 or len(dst_offset) != 2:
        raise KernelError("gather_row takes 2-d offsets and shapes")
    if any(m < 0 or m > s for m, s in zip(moved, shape)):
        raise KernelError(f"gather_row: valid_shape {moved} outside the window {shape}")
    if src.dtype != acc.dtype:
        raise KernelError(f"gather_row of {src.dtype!r} rows into a {acc.dtype!r} accumulator")
    (r0, c0), (d0, d1) = [int(o) for o in src_offset], [int(o) for o in dst_offset]
    key = (_slice(r0, r0 + moved[0]), _slice(c0, c0 + moved[1]))
    if isinstance(src, Tile):
        values = src[key].data
    else:
        values = src.load(src.window(key))
    if transpose:
        values = values.transpose(-1, -2)
    h, w = values.shape[-2:]
    rows, cols = acc.data.shape[-2:]
    if d0 < 0 or d1 < 0 or d0 + h > rows or d1 + w > cols:
        raise KernelError(f"gather_row writes [{d0}:{d0 + h}, {d1}:{d1 + w}] of a [{rows}, {cols}] "
                          f"accumulator")
    if isinstance(acc, Tensor):
        # A tensor-typed accumulator: the write goes through the memory model (written-mask,
        # last writer, races) like any store.
        acc.store(acc.window((_slice(d0, d0 + h), _slice(d1, d1 + w))), values)
        return acc
    # The op writes the accumulator in place (the DSL returns an alias of ``acc``).
    from equiv.tile.access import _in_place

    _in_place(acc)
    acc.data[..., d0:d0 + h, d1:d1 + w] = values
    return Tile(acc.data, acc.dtype, acc.valid)
