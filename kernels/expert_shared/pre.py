"""expert_shared W8A8 shared-expert FFN, before the retile (pypto-lib 774c39f1).

Four stages through padded GM scratch: gate+up GEMM with the SwiGLU epilogue, per-token int8
requant of h in 8-row groups (T div 8 blocks), down GEMM with dequant into a bf16 pad, and a
16-row window copy of the pad into ``sh``.
"""

from equiv import tile as pl

INT8_SCALE_MAX = 127.0
INT8_AMAX_EPS = 1e-4

T_TILE = 8
SH_M_TILE = 16
K_TILE = 512
INTER_K = 512
SH_INTER_TILE = 64
SH_D_OUT_TILE = 64
QUANT_TILE = 256


def expert_shared(
    x_local_i8: pl.Tensor,
    x_local_scale_dq: pl.Tensor,
    shared_w1: pl.Tensor,
    shared_w1_scale: pl.Tensor,
    shared_w3: pl.Tensor,
    shared_w3_scale: pl.Tensor,
    shared_w2: pl.Tensor,
    shared_w2_scale: pl.Tensor,
    sh: pl.Tensor,
    cfg,
) -> None:
    T, D, MOE_INTER, SWIGLU_LIMIT = cfg.T, cfg.D, cfg.I, float(cfg.L)
    T_PAD = ((T + SH_M_TILE - 1) // SH_M_TILE) * SH_M_TILE
    assert T <= SH_M_TILE or T % SH_M_TILE == 0, "T <= SH_M_TILE or T % SH_M_TILE == 0"
    SH_VALID_M = T if T < SH_M_TILE else SH_M_TILE

    sh_tile_fp32 = pl.create_tensor([T_PAD, MOE_INTER], dtype=pl.FP32, name="sh_tile_fp32")
    sh_tile_i8 = pl.create_tensor([T_PAD, MOE_INTER], dtype=pl.INT8, name="sh_tile_i8")
    sh_tile_scale_dq = pl.create_tensor([T_PAD, 1], dtype=pl.FP32, name="sh_tile_scale_dq")
    sh_pad = pl.create_tensor([T_PAD, D], dtype=pl.BF16, name="sh_pad")

    # gate + up GEMM (int8 x int8 -> int32) with the dequant + clamped SwiGLU epilogue.
    for gu_block in pl.spmd((T_PAD // SH_M_TILE) * (MOE_INTER // (8 * SH_INTER_TILE)), name_hint="sh_gate_up"):
        gu_tb = gu_block // (MOE_INTER // (8 * SH_INTER_TILE))
        gu_nb = gu_block - gu_tb * (MOE_INTER // (8 * SH_INTER_TILE))
        ts0 = gu_tb * SH_M_TILE
        n_base = gu_nb * (8 * SH_INTER_TILE)
        x_local_scale_dq_tile = pl.slice(x_local_scale_dq, [SH_M_TILE, 1], [ts0, 0], valid_shape=[SH_VALID_M, 1])
        for ng in pl.range(8):
            n0 = n_base + ng * SH_INTER_TILE
            sh_gate_acc = pl.create_tensor([SH_M_TILE, SH_INTER_TILE], dtype=pl.INT32)
            sh_up_acc = pl.create_tensor([SH_M_TILE, SH_INTER_TILE], dtype=pl.INT32)
            for kb in pl.pipeline(0, D // K_TILE, stage=2):
                k0 = kb * K_TILE
                xs_k = pl.slice(x_local_i8, [SH_M_TILE, K_TILE], [ts0, k0], valid_shape=[SH_VALID_M, K_TILE])
                sw1_k = shared_w1[n0 : n0 + SH_INTER_TILE, k0 : k0 + K_TILE]
                sw3_k = shared_w3[n0 : n0 + SH_INTER_TILE, k0 : k0 + K_TILE]
                if k0 == 0:
                    sh_gate_acc = pl.matmul(xs_k, sw1_k, b_trans=True, out_dtype=pl.INT32)
                    sh_up_acc = pl.matmul(xs_k, sw3_k, b_trans=True, out_dtype=pl.INT32)
                else:
                    sh_gate_acc = pl.matmul_acc(sh_gate_acc, xs_k, sw1_k, b_trans=True)
                    sh_up_acc = pl.matmul_acc(sh_up_acc, xs_k, sw3_k, b_trans=True)

            sw1_scale_chunk = pl.reshape(shared_w1_scale[n0 : n0 + SH_INTER_TILE], [1, SH_INTER_TILE])
            sw3_scale_chunk = pl.reshape(shared_w3_scale[n0 : n0 + SH_INTER_TILE], [1, SH_INTER_TILE])
            sh_gate = pl.cast(sh_gate_acc, target_type=pl.FP32, mode="none")
            sh_up = pl.cast(sh_up_acc, target_type=pl.FP32, mode="none")
            sh_gate = pl.col_expand_mul(pl.row_expand_mul(sh_gate, x_local_scale_dq_tile), sw1_scale_chunk)
            sh_up = pl.col_expand_mul(pl.row_expand_mul(sh_up, x_local_scale_dq_tile), sw3_scale_chunk)
            if SWIGLU_LIMIT > 0.0:
                sh_gate = pl.minimum(sh_gate, SWIGLU_LIMIT)
                sh_up = pl.maximum(pl.minimum(sh_up, SWIGLU_LIMIT), -SWIGLU_LIMIT)
            sh_sigmoid = pl.recip(pl.add(pl.exp(pl.neg(sh_gate)), 1.0))
            sh_silu = pl.mul(sh_gate, sh_sigmoid)
            sh_gated = pl.mul(sh_silu, sh_up)
            sh_tile_fp32[ts0 : ts0 + SH_M_TILE, n0 : n0 + SH_INTER_TILE] = sh_gated

    # Per-token int8 requant of h, 8 token rows per block.
    for q_tb in pl.spmd(T // T_TILE, name_hint="sh_h_q"):
        ts0 = q_tb * T_TILE
        shq_amax = pl.full([1, T_TILE], dtype=pl.FP32, value=INT8_AMAX_EPS)
        for k0 in pl.range(0, MOE_INTER, QUANT_TILE):
            shq_a_f32 = sh_tile_fp32[ts0 : ts0 + T_TILE, k0 : k0 + QUANT_TILE]
            shq_a_abs = pl.maximum(shq_a_f32, pl.neg(shq_a_f32))
            shq_a_max = pl.reshape(pl.row_max(shq_a_abs), [1, T_TILE])
            shq_amax = pl.maximum(shq_amax, shq_a_max)
        shq_sq_row = pl.div(pl.full([1, T_TILE], dtype=pl.FP32, value=INT8_SCALE_MAX), shq_amax)
        sh_tile_scale_dq[ts0 : ts0 + T_TILE, 0:1] = pl.reshape(pl.recip(shq_sq_row), [T_TILE, 1])
        shq_sq_col = pl.reshape(shq_sq_row, [T_TILE, 1])
        for k1 in pl.range(0, MOE_INTER, QUANT_TILE):
            shq_q_f32 = sh_tile_fp32[ts0 : ts0 + T_TILE, k1 : k1 + QUANT_TILE]
            shq_q_scaled = pl.row_expand_mul(shq_q_f32, shq_sq_col)
            shq_q_i32 = pl.cast(shq_q_scaled, target_type=pl.INT32, mode="rint")
            shq_q_half = pl.cast(shq_q_i32, target_type=pl.FP16, mode="round")
            sh_tile_i8[ts0 : ts0 + T_TILE, k1 : k1 + QUANT_TILE] = pl.cast(shq_q_half, target_type=pl.INT8, mode="trunc")

    # down GEMM with the per-row h scale and per-channel w2 scale, into the bf16 pad.
    for w2_block in pl.spmd((T_PAD // SH_M_TILE) * (D // (16 * SH_D_OUT_TILE)), name_hint="sh_w2"):
        w2_tb = w2_block // (D // (16 * SH_D_OUT_TILE))
        w2_db = w2_block - w2_tb * (D // (16 * SH_D_OUT_TILE))
        ts0 = w2_tb * SH_M_TILE
        d_base = w2_db * (16 * SH_D_OUT_TILE)
        sh_tile_scale_dq_tile = sh_tile_scale_dq[ts0 : ts0 + SH_M_TILE, 0:1]
        for dg in pl.range(16):
            d0 = d_base + dg * SH_D_OUT_TILE
            hs_init = sh_tile_i8[ts0 : ts0 + SH_M_TILE, 0:INTER_K]
            sw2_init = shared_w2[d0 : d0 + SH_D_OUT_TILE, 0:INTER_K]
            sh_y_acc = pl.matmul(hs_init, sw2_init, b_trans=True, out_dtype=pl.INT32)
            for k0 in pl.range(INTER_K, MOE_INTER, INTER_K):
                hs_k = sh_tile_i8[ts0 : ts0 + SH_M_TILE, k0 : k0 + INTER_K]
                sw2_k = shared_w2[d0 : d0 + SH_D_OUT_TILE, k0 : k0 + INTER_K]
                sh_y_acc = pl.matmul_acc(sh_y_acc, hs_k, sw2_k, b_trans=True)

            sw2_scale_chunk = pl.reshape(shared_w2_scale[d0 : d0 + SH_D_OUT_TILE], [1, SH_D_OUT_TILE])
            sh_y = pl.cast(sh_y_acc, target_type=pl.FP32, mode="none")
            sh_y = pl.col_expand_mul(pl.row_expand_mul(sh_y, sh_tile_scale_dq_tile), sw2_scale_chunk)
            sh_pad[ts0 : ts0 + SH_M_TILE, d0 : d0 + SH_D_OUT_TILE] = pl.cast(sh_y, target_type=pl.BF16, mode="rint")

    # Copy the pad out in 16-row x 512-column windows.
    with pl.at(level=pl.Level.CORE_GROUP, name_hint="sh_output"):
        for t0 in pl.range(0, T, SH_M_TILE):
            for d0 in pl.pipeline(0, D, K_TILE, stage=2):
                sh[t0 : t0 + SH_M_TILE, d0 : d0 + K_TILE] = sh_pad[t0 : t0 + SH_M_TILE, d0 : d0 + K_TILE]
