"""Float64 reference of moe.combine: ffn_out[t] = sh[t] + Σ_k routed[t·TOPK + k] for active t.

Inactive tokens (t ≥ clamp(num_tokens, 0, T)) carry sh[t] unchanged.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch


def combine(inputs: Mapping[str, Any], cfg) -> dict[str, torch.Tensor]:
    T, TOPK = cfg.T, cfg.TOPK
    sh = inputs["sh"].to(torch.float64)
    routed = inputs["routed_y_buf"].to(torch.float64).reshape(T, TOPK, -1)
    active = max(0, min(T, int(inputs["num_tokens"])))
    out = sh.clone()
    out[:active] = sh[:active] + routed[:active].sum(dim=1)
    return {"ffn_out": out}
