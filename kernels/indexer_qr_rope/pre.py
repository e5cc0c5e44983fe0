"""Indexer query RoPE (qr_rope stage of decode_indexer), before the retile (pypto-lib 774c39f1).

One SPMD task per batch (S·IDX_N_HEADS rows); index/sign and interleaved cos/sin tiles are built
once per task and reused over its 32-row tiles; the sign multiplies the swapped query.
"""

from equiv import tile as pl

IDX_N_HEADS = 64           # index_n_heads (every preset)
IDX_HEAD_DIM = 128         # index_head_dim
ROPE_HEAD_DIM = 64         # qk_rope_head_dim
IDX_NOPE_HEAD_DIM = IDX_HEAD_DIM - ROPE_HEAD_DIM
ROPE_ROW_TILE = 32


def qr_rope(qr_proj: pl.Tensor, cos: pl.Tensor, sin: pl.Tensor, qr_rope_out: pl.Tensor, cfg) -> None:
    B, S = cfg.B, cfg.S
    T = B * S
    ROPE_ROW_BLOCK = S * IDX_N_HEADS

    qr_proj_flat = pl.reshape(qr_proj, [T * IDX_N_HEADS, IDX_HEAD_DIM])
    for idx in pl.spmd(T * IDX_N_HEADS // ROPE_ROW_BLOCK, name_hint="qr_rope"):
        o0 = idx * ROPE_ROW_BLOCK
        batch_idx = idx
        # out[j] = x[j]*cos_il[j] + x[j^1]*sign[j]*sin_il[j], indices and sign built from a ramp.
        cos_b = cos[batch_idx : batch_idx + 1, 0 : ROPE_HEAD_DIM // 2]
        sin_b = sin[batch_idx : batch_idx + 1, 0 : ROPE_HEAD_DIM // 2]
        rope_ones = pl.full([ROPE_ROW_TILE, ROPE_HEAD_DIM], dtype=pl.FP32, value=1.0)
        rope_col = pl.col_expand_mul(rope_ones, pl.cast(pl.arange(0, [1, ROPE_HEAD_DIM], dtype=pl.INT32), target_type=pl.FP32))
        rope_dup_f = pl.cast(pl.cast(pl.mul(rope_col, 0.5), target_type=pl.INT32, mode="trunc"), target_type=pl.FP32)
        rope_dup_idx = pl.cast(rope_dup_f, target_type=pl.INT32)                                       # j >> 1
        rope_lane = pl.sub(rope_col, pl.mul(rope_dup_f, 2.0))                                          # j % 2
        rope_swap_idx = pl.cast(pl.sub(pl.add(rope_col, 1.0), pl.mul(rope_lane, 2.0)), target_type=pl.INT32)  # j ^ 1
        rope_sign = pl.sub(pl.mul(rope_lane, 2.0), 1.0)                                                # -1, +1, ...
        cos_b32 = pl.col_expand_mul(pl.full([ROPE_ROW_TILE, ROPE_HEAD_DIM // 2], dtype=pl.FP32, value=1.0), cos_b)
        sin_b32 = pl.col_expand_mul(pl.full([ROPE_ROW_TILE, ROPE_HEAD_DIM // 2], dtype=pl.FP32, value=1.0), sin_b)
        cos_il = pl.gather(cos_b32, dim=-1, index=rope_dup_idx)
        sin_il = pl.gather(sin_b32, dim=-1, index=rope_dup_idx)
        for ro in pl.range(0, ROPE_ROW_BLOCK, ROPE_ROW_TILE):
            r0 = o0 + ro
            qr_rope_slice = qr_proj_flat[r0 : r0 + ROPE_ROW_TILE, IDX_NOPE_HEAD_DIM : IDX_HEAD_DIM]
            qr_swapped = pl.gather(qr_rope_slice, dim=-1, index=rope_swap_idx)
            rope_rot = pl.add(pl.mul(qr_rope_slice, cos_il), pl.mul(pl.mul(qr_swapped, rope_sign), sin_il))
            qr_rope_out[r0 : r0 + ROPE_ROW_TILE, :] = pl.cast(rope_rot, target_type=pl.BF16, mode="rint")
