"""CSA sparse-index build (cmp_sparse_indices + valid_block_mask), retiled (pypto-lib a8cdc047, PR #672).

T SPMD tasks of one token for the window/overlay build, then one scope holding a T-row fp32
vector tile for the compressed part and the whole block-validity mask.
"""

from equiv import tile as pl

WIN = 128                  # sliding_window (every preset)
ATTN_K_TILE = 128          # sparse_attn key-block width
COMPRESS_RATIO = 4
COMPRESS_RATIO_INV = 1.0 / COMPRESS_RATIO


def sparse_index(position_ids: pl.Tensor, idx_topk_full: pl.Tensor, cmp_sparse_indices: pl.Tensor,
                 valid_block_mask: pl.Tensor, cfg) -> None:
    B, S, IDX_TOPK, MAX_SEQ_LEN = cfg.B, cfg.S, cfg.IDX_TOPK, cfg.MAX_SEQ_LEN
    T = B * S
    INDEXER_SCORE_LEN = MAX_SEQ_LEN // 4
    SPARSE_TOPK = WIN + IDX_TOPK
    SPARSE_BLOCKS = max(2, (SPARSE_TOPK + ATTN_K_TILE - 1) // ATTN_K_TILE)
    CSA_CMP_GE_BIAS = float(1 - (WIN + S))
    CSA_CMP_WIN_S_F = float(WIN + S)

    idx_topk_flat = pl.reshape(idx_topk_full, [T, INDEXER_SCORE_LEN])
    position_ids_t1 = pl.reshape(position_ids, [T, 1])
    # Window/overlay build, one token per task.
    for t_idx in pl.spmd(T, name_hint="csa_sparse_idx_tile"):
        topk_b = t_idx // S
        topk_s = t_idx - topk_b * S
        topk_abs_pos = pl.read(position_ids, [t_idx])
        for topk_k in pl.range(WIN):
            if topk_k <= topk_abs_pos:
                topk_out = topk_k
                for topk_os in pl.range(S):
                    if topk_os <= topk_s:
                        topk_overlay_t = topk_b * S + topk_os
                        topk_overlay_pos = pl.read(position_ids, [topk_overlay_t])
                        if topk_k == topk_overlay_pos % WIN:
                            topk_out = WIN + topk_os
                pl.write(cmp_sparse_indices, [t_idx, topk_k], pl.cast(topk_out, pl.INT32))
            else:
                pl.write(cmp_sparse_indices, [t_idx, topk_k], pl.cast(-1, pl.INT32))

    # Compressed part over all T rows at once: keep raw iff WIN+S <= raw < WIN+S + (pos+1)//4,
    # as mask*(raw+1) - 1.
    with pl.at(level=pl.Level.CORE_GROUP, name_hint="csa_compressed_slots", allow_early_resolve=True):
        c_raw = pl.cast(idx_topk_flat[0 : T, 0 : IDX_TOPK], target_type=pl.FP32)
        c_pos = pl.cast(position_ids_t1[0 : T, 0 : 1], target_type=pl.FP32)
        c_pos_q = pl.cast(pl.cast(pl.mul(pl.add(c_pos, 1.0), COMPRESS_RATIO_INV), target_type=pl.INT32, mode="trunc"), target_type=pl.FP32)
        c_upper = pl.add(c_pos_q, CSA_CMP_WIN_S_F)
        c_upper_b = pl.row_expand_mul(pl.full([T, IDX_TOPK], dtype=pl.FP32, value=1.0), c_upper)
        c_ge = pl.minimum(pl.maximum(pl.add(c_raw, CSA_CMP_GE_BIAS), 0.0), 1.0)
        c_lt = pl.minimum(pl.maximum(pl.sub(c_upper_b, c_raw), 0.0), 1.0)
        c_mask = pl.mul(c_ge, c_lt)
        c_out = pl.sub(pl.mul(c_mask, pl.add(c_raw, 1.0)), 1.0)
        cmp_sparse_indices[0 : T, WIN : WIN + IDX_TOPK] = pl.cast(c_out, target_type=pl.INT32)
        # Block 0 (window/overlay) is always live; the whole mask is written here.
        for c_t0 in pl.range(T):
            pl.write(valid_block_mask, [c_t0, 0], pl.cast(1, pl.INT32))
        for c_sb in pl.range(1, SPARSE_BLOCKS):
            c_s0 = (c_sb - 1) * ATTN_K_TILE
            c_blk_valid = pl.row_max(c_mask[:, c_s0 : c_s0 + ATTN_K_TILE])
            for c_dt in pl.range(T):
                c_valid = pl.cast(pl.read(c_blk_valid, [c_dt, 0]), target_type=pl.INT32)
                pl.write(valid_block_mask, [c_dt, c_sb], c_valid)
