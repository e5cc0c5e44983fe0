"""moe.combine shared + routed reduction, retiled (pypto-lib a8cdc047, PR #672).

T blocks, one token each.
"""

from equiv import tile as pl


def combine(sh: pl.Tensor, routed_y_buf: pl.Tensor, num_tokens: int, ffn_out: pl.Tensor, cfg) -> None:
    T, TOPK = cfg.T, cfg.TOPK
    active_tokens = pl.cast(num_tokens, pl.INDEX)
    if active_tokens < 0:
        active_tokens = pl.cast(0, pl.INDEX)
    if active_tokens > T:
        active_tokens = pl.cast(T, pl.INDEX)
    for t in pl.spmd(T, name_hint="shared_routed"):
        if t < active_tokens:
            acc = pl.cast(sh[t:t + 1, :], target_type=pl.FP32)
            for k in pl.range(TOPK):
                r = t * TOPK + k
                acc = pl.add(acc, pl.cast(routed_y_buf[r:r + 1, :], target_type=pl.FP32))
            ffn_out[t:t + 1, :] = pl.cast(acc, target_type=pl.BF16, mode="rint")
        else:
            ffn_out[t:t + 1, :] = sh[t:t + 1, :]
