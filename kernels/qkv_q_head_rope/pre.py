"""qkv.q_head_rope before the retile (pypto-lib 774c39f1, qkv_proj_rope.py, q_head_rms_nope_rope).

Per head: sum of squares as eight [8, 64] row sums folded in order, NOPE written back in seven
[8, 64] chunks, RoPE chunk re-read and rotated. `q` is the [T, H·HEAD_DIM] view of q[T, H, HEAD_DIM].
"""

from equiv import tile as pl

HEAD_DIM = 512
ROPE_DIM = 64
NOPE_DIM = HEAD_DIM - ROPE_DIM
EPS = 1e-6
HEAD_TILE = 64
Q_ROPE_T_TILE = 8


def q_head_rope(q_proj_fp32: pl.Tensor, rope_cos: pl.Tensor, rope_sin: pl.Tensor, q: pl.Tensor, cfg) -> None:
    t_dim, H = cfg.T, cfg.H
    for hg_idx in pl.spmd(H // 2, name_hint="q_head_rms_nope_rope"):
        hg = hg_idx * 2
        # Index / sign tiles from an integer ramp j = 0..63.
        q_ones = pl.full([Q_ROPE_T_TILE, ROPE_DIM], dtype=pl.FP32, value=1.0)
        q_col = pl.col_expand_mul(q_ones, pl.cast(pl.arange(0, [1, ROPE_DIM], dtype=pl.INT32), target_type=pl.FP32))
        q_dup_f = pl.cast(pl.cast(pl.mul(q_col, 0.5), target_type=pl.INT32, mode="trunc"), target_type=pl.FP32)
        q_dup_idx = pl.cast(q_dup_f, target_type=pl.INT32)
        q_lane = pl.sub(q_col, pl.mul(q_dup_f, 2.0))
        q_swap_idx = pl.cast(pl.sub(pl.add(q_col, 1.0), pl.mul(q_lane, 2.0)), target_type=pl.INT32)
        q_sign = pl.sub(pl.mul(q_lane, 2.0), 1.0)
        for tg_idx in pl.range(t_dim // Q_ROPE_T_TILE):
            tg = tg_idx * Q_ROPE_T_TILE
            q_cos_il = pl.gather(pl.cast(rope_cos[tg : tg + Q_ROPE_T_TILE, :], target_type=pl.FP32), dim=-1, index=q_dup_idx)
            q_sin_il = pl.gather(pl.cast(rope_sin[tg : tg + Q_ROPE_T_TILE, :], target_type=pl.FP32), dim=-1, index=q_dup_idx)
            for h_inner in pl.range(2):
                h = hg + h_inner
                h0 = h * HEAD_DIM
                # Sum of squares: one row sum per 64-column chunk, accumulated chunk by chunk.
                q_head_sq_sum = pl.full([1, Q_ROPE_T_TILE], dtype=pl.FP32, value=0.0)
                for db in pl.pipeline(HEAD_DIM // HEAD_TILE, stage=2):
                    d0 = h0 + db * HEAD_TILE
                    q_head_chunk = q_proj_fp32[tg : tg + Q_ROPE_T_TILE, d0 : d0 + HEAD_TILE]
                    q_head_sq_sum = pl.add(
                        q_head_sq_sum,
                        pl.reshape(pl.row_sum(pl.mul(q_head_chunk, q_head_chunk)), [1, Q_ROPE_T_TILE]),
                    )
                q_head_inv_rms = pl.recip(pl.sqrt(pl.add(pl.mul(q_head_sq_sum, 1.0 / HEAD_DIM), EPS)))
                q_head_inv_rms_t = pl.reshape(q_head_inv_rms, [Q_ROPE_T_TILE, 1])

                # NOPE columns, re-read in 64-column chunks.
                for nb in pl.pipeline(NOPE_DIM // HEAD_TILE, stage=2):
                    n0 = nb * HEAD_TILE
                    q_nope_chunk = q_proj_fp32[tg : tg + Q_ROPE_T_TILE, h0 + n0 : h0 + n0 + HEAD_TILE]
                    q_normed = pl.row_expand_mul(q_nope_chunk, q_head_inv_rms_t)
                    q[tg : tg + Q_ROPE_T_TILE, h0 + n0 : h0 + n0 + HEAD_TILE] = pl.cast(
                        q_normed, target_type=pl.BF16, mode="rint"
                    )

                # RoPE columns: rotate interleaved pairs, then scale by inv_rms.
                q_rope_chunk = q_proj_fp32[tg : tg + Q_ROPE_T_TILE, h0 + NOPE_DIM : h0 + NOPE_DIM + ROPE_DIM]
                q_rope_swapped = pl.gather(q_rope_chunk, dim=-1, index=q_swap_idx)
                q_rope_rot = pl.add(pl.mul(q_rope_chunk, q_cos_il), pl.mul(pl.mul(q_rope_swapped, q_sign), q_sin_il))
                q[tg : tg + Q_ROPE_T_TILE, h0 + NOPE_DIM : h0 + NOPE_DIM + ROPE_DIM] = pl.cast(
                    pl.row_expand_mul(q_rope_rot, q_head_inv_rms_t), target_type=pl.BF16, mode="rint"
                )
