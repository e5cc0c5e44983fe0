"""Deliberately broken retiled moe.combine kernels, one per check the harness makes.

Each differs from kernels/moe_combine/retiled.py in one way; the tests swap it in with
``dataclasses.replace(pair, retiled=...)`` and expect a ``regression`` with the right evidence.
"""

from equiv import tile as pl


def _active(num_tokens: int, T: int) -> int:
    a = pl.cast(num_tokens, pl.INDEX)
    return 0 if a < 0 else (T if a > T else a)


def reversed_sum(sh, routed_y_buf, num_tokens, ffn_out, cfg):
    """Adds the routed rows in reverse order: fp32 rounding differs on spread-out inputs."""
    T, TOPK = cfg.T, cfg.TOPK
    active = _active(num_tokens, T)
    for t in pl.spmd(T):
        if t < active:
            acc = pl.cast(sh[t:t + 1, :], target_type=pl.FP32)
            for k in pl.range(TOPK - 1, -1, -1):
                acc = pl.add(acc, pl.cast(routed_y_buf[t * TOPK + k:t * TOPK + k + 1, :], target_type=pl.FP32))
            ffn_out[t:t + 1, :] = pl.cast(acc, target_type=pl.BF16, mode="rint")
        else:
            ffn_out[t:t + 1, :] = sh[t:t + 1, :]


def _sum_row(sh, routed_y_buf, t, TOPK):
    acc = pl.cast(sh[t:t + 1, :], target_type=pl.FP32)
    for k in pl.range(TOPK):
        acc = pl.add(acc, pl.cast(routed_y_buf[t * TOPK + k:t * TOPK + k + 1, :], target_type=pl.FP32))
    return acc


def round_toward_zero(sh, routed_y_buf, num_tokens, ffn_out, cfg):
    """Final cast truncates instead of rounding to nearest: a one-bit difference."""
    T, TOPK = cfg.T, cfg.TOPK
    active = _active(num_tokens, T)
    for t in pl.spmd(T):
        if t < active:
            ffn_out[t:t + 1, :] = pl.cast(_sum_row(sh, routed_y_buf, t, TOPK), target_type=pl.BF16, mode="trunc")
        else:
            ffn_out[t:t + 1, :] = sh[t:t + 1, :]


def bf16_accumulate(sh, routed_y_buf, num_tokens, ffn_out, cfg):
    """Accumulates in bf16 (rounding after every add): several ULP less accurate."""
    T, TOPK = cfg.T, cfg.TOPK
    active = _active(num_tokens, T)
    for t in pl.spmd(T):
        if t < active:
            acc = sh[t:t + 1, :]
            for k in pl.range(TOPK):
                acc = pl.add(acc, routed_y_buf[t * TOPK + k:t * TOPK + k + 1, :])
            ffn_out[t:t + 1, :] = acc
        else:
            ffn_out[t:t + 1, :] = sh[t:t + 1, :]


def scaled(factor: float):
    """Multiplies each active fp32 sum by `factor` before the final cast (a controlled drift)."""
    def kernel(sh, routed_y_buf, num_tokens, ffn_out, cfg):
        T, TOPK = cfg.T, cfg.TOPK
        active = _active(num_tokens, T)
        for t in pl.spmd(T):
            if t < active:
                acc = pl.mul(_sum_row(sh, routed_y_buf, t, TOPK), factor)
                ffn_out[t:t + 1, :] = pl.cast(acc, target_type=pl.BF16, mode="rint")
            else:
                ffn_out[t:t + 1, :] = sh[t:t + 1, :]
    kernel.__name__ = f"scaled_by_{factor}"
    return kernel


def drops_tail(sh, routed_y_buf, num_tokens, ffn_out, cfg):
    """Runs T - 1 blocks: the last token's row is never written."""
    T, TOPK = cfg.T, cfg.TOPK
    active = _active(num_tokens, T)
    for t in pl.spmd(T - 1):
        if t < active:
            ffn_out[t:t + 1, :] = pl.cast(_sum_row(sh, routed_y_buf, t, TOPK), target_type=pl.BF16, mode="rint")
        else:
            ffn_out[t:t + 1, :] = sh[t:t + 1, :]


def reads_scratch(sh, routed_y_buf, num_tokens, ffn_out, cfg):
    """Adds a scratch row nobody wrote into token 0's sum: output depends on uninitialised memory."""
    T, TOPK = cfg.T, cfg.TOPK
    active = _active(num_tokens, T)
    scratch = pl.create_tensor([1, cfg.D], dtype=pl.FP32)
    for t in pl.spmd(T):
        if t < active:
            acc = _sum_row(sh, routed_y_buf, t, TOPK)
            if t == 0:
                acc = pl.add(acc, scratch[0:1, :])
            ffn_out[t:t + 1, :] = pl.cast(acc, target_type=pl.BF16, mode="rint")
        else:
            ffn_out[t:t + 1, :] = sh[t:t + 1, :]


def writes_past_end(sh, routed_y_buf, num_tokens, ffn_out, cfg):
    """The last block also stores its row one row further down, past the end of ffn_out."""
    T, TOPK = cfg.T, cfg.TOPK
    active = _active(num_tokens, T)
    for t in pl.spmd(T):
        if t < active:
            row = pl.cast(_sum_row(sh, routed_y_buf, t, TOPK), target_type=pl.BF16, mode="rint")
        else:
            row = sh[t:t + 1, :]
        ffn_out[t:t + 1, :] = row
        if t == T - 1:
            ffn_out[t + 1:t + 2, :] = row


def racing_blocks(sh, routed_y_buf, num_tokens, ffn_out, cfg):
    """Every block also writes its neighbour's row: two blocks of one stage write one element."""
    T, TOPK = cfg.T, cfg.TOPK
    active = _active(num_tokens, T)
    for t in pl.spmd(T):
        for u in (t, (t + 1) % T):
            if u < active:
                ffn_out[u:u + 1, :] = pl.cast(_sum_row(sh, routed_y_buf, u, TOPK), target_type=pl.BF16,
                                              mode="rint")
            else:
                ffn_out[u:u + 1, :] = sh[u:u + 1, :]


def raises(sh, routed_y_buf, num_tokens, ffn_out, cfg):
    """Stores an fp32 tile into the bf16 output: the emulator rejects it at this line."""
    for t in pl.spmd(cfg.T):
        ffn_out[t:t + 1, :] = pl.cast(sh[t:t + 1, :], target_type=pl.FP32)
