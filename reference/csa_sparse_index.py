"""Reference of the CSA sparse-index build: the closed form of the spec (pure integer logic).

Per token t = b·S + s with position p:
* window column k: -1 if k > p; else WIN + o for the largest o <= s whose token b·S + o sits in
  ring slot k (position mod WIN), if any; else k;
* compressed column c: raw = idx_topk[t, c] if WIN+S <= raw < WIN+S + (p+1)//4, else -1;
* valid_block_mask[t, 0] = 1; block sb >= 1 is 1 iff a compressed column of
  [(sb-1)·128, sb·128) was kept.
Returned as float64 tensors holding the exact integers.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

WIN = 128
ATTN_K_TILE = 128
COMPRESS_RATIO = 4


def sparse_index(inputs: Mapping[str, Any], cfg) -> dict[str, torch.Tensor]:
    B, S, IDX_TOPK = cfg.B, cfg.S, cfg.IDX_TOPK
    T = B * S
    sparse_blocks = max(2, -(-(WIN + IDX_TOPK) // ATTN_K_TILE))
    pos = [int(p) for p in inputs["position_ids"].reshape(T).tolist()]
    raw = inputs["idx_topk_full"].reshape(T, -1)[:, :IDX_TOPK].to(torch.int64)

    window = torch.full((T, WIN), -1, dtype=torch.int64)
    for t in range(T):
        b, s = divmod(t, S)
        p = pos[t]
        for k in range(min(WIN, p + 1)):
            window[t, k] = k
        for o in range(s + 1):  # ascending, so the largest matching o wins
            slot = pos[b * S + o] % WIN
            if slot <= p:
                window[t, slot] = WIN + o

    lo = WIN + S
    hi = torch.tensor([lo + (p + 1) // COMPRESS_RATIO for p in pos], dtype=torch.int64).unsqueeze(1)
    keep = (raw >= lo) & (raw < hi)
    compressed = torch.where(keep, raw, torch.full_like(raw, -1))

    mask = torch.zeros((T, sparse_blocks), dtype=torch.int64)
    mask[:, 0] = 1
    for sb in range(1, sparse_blocks):
        c0 = (sb - 1) * ATTN_K_TILE
        mask[:, sb] = keep[:, c0 : c0 + ATTN_K_TILE].any(dim=1).to(torch.int64)

    return {"cmp_sparse_indices": torch.cat([window, compressed], dim=1).to(torch.float64),
            "valid_block_mask": mask.to(torch.float64)}
