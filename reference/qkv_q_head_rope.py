"""Float64 reference of qkv.q_head_rope (spec §7).

Per token t and head h, x = q_proj_fp32[t, 512h : 512h + 512]:
inv = 1 / sqrt(mean(x²) + 1e-6); NOPE part x[:448]·inv; RoPE part rotates the interleaved pairs
(x[448+2i], x[449+2i]) by (cos[t, i], sin[t, i]), i < 32, and scales by inv. Unrounded.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

HEAD_DIM = 512
ROPE_DIM = 64
NOPE_DIM = HEAD_DIM - ROPE_DIM
EPS = 1e-6


def q_head_rope(inputs: Mapping[str, Any], cfg) -> dict[str, torch.Tensor]:
    T, H = cfg.T, cfg.H
    x = inputs["q_proj_fp32"].to(torch.float64)[:T].reshape(T, H, HEAD_DIM)
    c = inputs["rope_cos"].to(torch.float64)[:T, : ROPE_DIM // 2].unsqueeze(1)
    s = inputs["rope_sin"].to(torch.float64)[:T, : ROPE_DIM // 2].unsqueeze(1)
    inv = 1.0 / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + EPS)
    a = x[..., NOPE_DIM::2]
    b = x[..., NOPE_DIM + 1::2]
    rot = torch.stack([a * c - b * s, a * s + b * c], dim=-1).flatten(-2)
    out = torch.cat([x[..., :NOPE_DIM], rot], dim=-1) * inv
    return {"q": out.reshape(T, H * HEAD_DIM)}
