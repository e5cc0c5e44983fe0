"""Small PyPTO-syntax kernels for the observers' tests (decisions, recipes, attribution,
cache lines). Each broken variant differs from its correct one in one way."""

from equiv import tile as pl

AMAX_EPS = 1e-4


def _rowquant(x, row_scale, col_scale, y, cfg, eps):
    R, C = cfg.R, cfg.C
    t = pl.col_expand_mul(pl.row_expand_mul(x[0:R, 0:C], row_scale[0:R, 0:1]), col_scale[0:1, 0:C])
    a = pl.maximum(t, pl.neg(t))
    amax = pl.maximum(pl.row_max(a), eps)
    y[0:R, 0:C] = pl.row_expand_div(t, amax)


def rowquant(x, row_scale, col_scale, y, cfg):
    """Per-row normalisation by the row's |max|, floored at AMAX_EPS (the expert_shared requant)."""
    _rowquant(x, row_scale, col_scale, y, cfg, AMAX_EPS)


def rowquant_copy(x, row_scale, col_scale, y, cfg):
    """The same program (a correct retile)."""
    _rowquant(x, row_scale, col_scale, y, cfg, AMAX_EPS)


def rowquant_floor_x10(x, row_scale, col_scale, y, cfg):
    """Broken: the clamp floor raised tenfold; only rows of |max| below 1e-3 see it."""
    _rowquant(x, row_scale, col_scale, y, cfg, AMAX_EPS * 10)


def scalar_if(flags, out, cfg):
    """One scalar `if` on a value read from a tensor, one index guard, one saturating cast."""
    for i in pl.range(cfg.N):
        v = pl.read(flags, [i])
        if v > 0:
            pl.write(out, [i], 1.0)
        else:
            pl.write(out, [i], 2.0)
    n = pl.min(cfg.N, 4)
    q = pl.cast(flags[0:n], target_type=pl.INT8, mode="round")
    return q


# -- writer attribution: 2 column blocks of 64 ---------------------------------------------
def copy_blocks(x, y, cfg):
    C = cfg.C
    for b in pl.spmd(C // 64, name_hint="copy_cols"):
        y[:, b * 64:(b + 1) * 64] = x[:, b * 64:(b + 1) * 64]


def copy_one_block(x, y, cfg):
    """Broken: the block count computed as C // 128, so only the first 64 columns are written."""
    C = cfg.C
    for b in pl.spmd(C // 128, name_hint="copy_cols"):
        y[:, b * 64:(b + 1) * 64] = x[:, b * 64:(b + 1) * 64]


# -- cache lines ---------------------------------------------------------------------------
def flags_per_line(x, flags, cfg):
    """Each block writes its flag 16 int32 (64 bytes) apart: one cache line per block."""
    for b in pl.spmd(cfg.B, name_hint="flags"):
        pl.write(flags, [b * 16], pl.cast(1, pl.INT32))


def flags_adjacent(x, flags, cfg):
    """Broken: adjacent int32 flags, four blocks share one 64-byte line."""
    for b in pl.spmd(cfg.B, name_hint="flags"):
        pl.write(flags, [b], pl.cast(1, pl.INT32))


def flags_tile_store(x, flags, cfg):
    """Adjacent elements written by a tile store (DMA) from each block: not a cache-line race."""
    for b in pl.spmd(cfg.B, name_hint="flags"):
        flags[b:b + 1] = pl.cast(pl.full([1], dtype=pl.FP32, value=1.0), target_type=pl.INT32)
