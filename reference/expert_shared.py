"""Float64 reference of expert_shared (spec §7): the W8A8 shared-expert FFN.

gate/up projections of the dequantised operands, clamped SwiGLU, the per-token int8 requant
of h (round half to even of h·(127/amax), amax floored at 1e-4; part of the algorithm), and
the down projection, all in float64. The result is not rounded to bf16.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

INT8_SCALE_MAX = 127.0
INT8_AMAX_EPS = 1e-4


def expert_shared(inputs: Mapping[str, Any], cfg) -> dict[str, torch.Tensor]:
    f64 = torch.float64
    L = float(cfg.L)
    x_i8, xs = inputs["x_local_i8"].to(f64), inputs["x_local_scale_dq"].to(f64)      # [T, D], [T, 1]
    s1, s3, s2 = (inputs[k].to(f64)[None, :] for k in ("shared_w1_scale", "shared_w3_scale", "shared_w2_scale"))
    # Integer dot products first (exact in float64: |sum| < 2^53), then the scales: the same
    # math as dequantising the operands, without float64 rounding inside the sums (an exactly
    # cancelling row of sh stays exactly 0).
    gate = (x_i8 @ inputs["shared_w1"].to(f64).T) * xs * s1                             # [T, I]
    up = (x_i8 @ inputs["shared_w3"].to(f64).T) * xs * s3
    if L > 0:
        gate = gate.clamp(max=L)
        up = up.clamp(-L, L)
    h = gate * torch.sigmoid(gate) * up
    amax = h.abs().amax(dim=1, keepdim=True).clamp_min(INT8_AMAX_EPS)
    sq = INT8_SCALE_MAX / amax
    q = torch.round(h * sq)  # half to even; |q| <= 127
    sh = (q @ inputs["shared_w2"].to(f64).T) * (1.0 / sq) * s2                          # [T, D]
    return {"sh": sh}
