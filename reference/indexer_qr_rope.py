"""Float64 reference of the indexer query RoPE: rotate each interleaved pair of the RoPE half.

Row ρ = t·IDX_N_HEADS + h of the flattened query belongs to batch ⌊ρ / (S·IDX_N_HEADS)⌋; with
x0, x1 = its RoPE columns 2i, 2i+1 and c, s = cos/sin[batch, i]:
    out[ρ, 2i] = x0·c − x1·s,   out[ρ, 2i+1] = x0·s + x1·c   (not rounded).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

IDX_N_HEADS = 64
IDX_HEAD_DIM = 128
ROPE_HEAD_DIM = 64


def qr_rope(inputs: Mapping[str, Any], cfg) -> dict[str, torch.Tensor]:
    B, S = cfg.B, cfg.S
    rows = B * S * IDX_N_HEADS
    x = inputs["qr_proj"].to(torch.float64).reshape(rows, IDX_HEAD_DIM)[:, IDX_HEAD_DIM - ROPE_HEAD_DIM:]
    x0, x1 = x[:, 0::2], x[:, 1::2]
    batch = torch.arange(rows) // (S * IDX_N_HEADS)
    c = inputs["cos"].to(torch.float64)[batch]
    s = inputs["sin"].to(torch.float64)[batch]
    out = torch.empty(rows, ROPE_HEAD_DIM, dtype=torch.float64)
    out[:, 0::2] = x0 * c - x1 * s
    out[:, 1::2] = x0 * s + x1 * c
    return {"qr_rope_out": out}
