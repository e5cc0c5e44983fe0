"""Float64 reference of hc_post: y[t, o] = x[t]·post[t, o] + Σ_i residual[t, i]·comb[t, 4i + o].

Exact in float64 (every bf16·fp32 product is exact, and the five-term sum is rounded at most
once per addition at 53 bits); the final bf16 rounding is left to the harness.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

HC_MULT = 4


def hc_post(inputs: Mapping[str, Any], cfg) -> dict[str, torch.Tensor]:
    T, D = cfg.T, cfg.D
    x = inputs["x"].to(torch.float64)                               # [T, D]
    residual = inputs["residual"].to(torch.float64)                 # [T, HC, D]
    post = inputs["post"].to(torch.float64)                         # [T, HC]
    comb = inputs["comb"].to(torch.float64).reshape(T, HC_MULT, HC_MULT)  # [T, in, out]
    y = x[:, None, :] * post[:, :, None] + torch.einsum("tid,tio->tod", residual, comb)
    return {"y": y.reshape(T, HC_MULT, D)}
