"""csa.sparse_index (pypto-lib models/deepseek/v4/decode_attention_csa.py, function attention_csa,
the sparse-index build between the indexer and sparse_attn).

Spec: shared/spec/kernels/csa_sparse_index.md. The PR claims bit-exact (integer outputs).

The stage has no assert of its own. The composed decode module only builds for T in {8, 16}
(asserts of the modules it imports); the standalone stage is declared for any T = B·S so that
PRE's coverage gap at T mod 8 != 0 (spec §6.2) is visible. Those imported asserts are not
modelled as preconditions.
"""

from __future__ import annotations

import torch

from equiv.dtypes import INT32
from equiv.inputs import with_adversarial
from equiv.observe.decisions import declare_unreachable
from equiv.pair import BIT_EXACT, KernelPair
from equiv.shapes import Dim, Shape, ShapeSpace
from kernels.csa_sparse_index import pre, retiled
from reference import csa_sparse_index as reference

WIN = pre.WIN
ATTN_K_TILE = pre.ATTN_K_TILE


def sparse_blocks(cfg: Shape) -> int:
    return max(2, (WIN + cfg.IDX_TOPK + ATTN_K_TILE - 1) // ATTN_K_TILE)


def _randint(lo: int, hi: int, gen: torch.Generator) -> int:
    """Uniform integer in [lo, hi]."""
    return lo + int(torch.randint(0, hi - lo + 1, (1,), generator=gen))


def _topk_rows(positions: list[int], kv_lens: list[int], cfg: Shape, gen: torch.Generator) -> torch.Tensor:
    """Indexer-like top-k: per token min(IDX_TOPK, kv_len//4) distinct slots + (WIN+S), then -1."""
    T, S = cfg.B * cfg.S, cfg.S
    out = torch.full((T, cfg.MAX_SEQ_LEN // 4), -1, dtype=torch.int32)
    for t in range(T):
        cache_len = kv_lens[t // S] // 4
        k = min(cfg.IDX_TOPK, cache_len)
        if k:
            out[t, :k] = (torch.randperm(cache_len, generator=gen)[:k] + WIN + S).to(torch.int32)
    return out


def realistic(cfg: Shape, gen: torch.Generator) -> dict:
    """Spec §8: per-batch starts from the default pattern (or one --start-pos N for every batch),
    position_ids[b·S+s] = start_b + s, kv_seq_lens[b] = start_b + S, and idx_topk_full as the
    indexer writes it: the first min(IDX_TOPK, kv_len//4) columns a permutation of distinct
    compressed slots + (WIN + S), the rest -1."""
    B, S = cfg.B, cfg.S
    if float(torch.rand(1, generator=gen)) < 0.6:
        pattern = [10, 4 - S, 3, 4, 8 - S, 11, WIN - S, WIN - 1, WIN]
        starts = [pattern[b % len(pattern)] for b in range(B)]
    else:
        starts = [_randint(0, cfg.MAX_SEQ_LEN - S, gen)] * B
    positions = [starts[b] + s for b in range(B) for s in range(S)]
    kv_lens = [st + S for st in starts]
    topk = _topk_rows(positions, kv_lens, cfg, gen)
    return {"position_ids": torch.tensor(positions, dtype=torch.int32),
            "idx_topk_full": topk.reshape(B, S, cfg.MAX_SEQ_LEN // 4)}


INTERESTING_STARTS = (0, 1, 2, 3, 4, 126, 127, 128, 129, 130, 254, 255, 256, 300, 511, 512, 515, 516,
                      1000, 4000, 4095, 8191, 65535, 1048574)


def codes(cfg: Shape, gen: torch.Generator) -> dict:
    """Adversarial positions and top-k codes.

    Positions: starts >= WIN with p mod WIN != WIN-1, the spec's S=2 layout [0, 126, 127, 300],
    cache lengths past 128 (blocks 2.. light up), the top of the position domain, and sometimes
    unrelated positions within one batch (two tokens in the same ring slot). Codes, per 128-wide
    block of every row: empty, boundary-only or dense mixes of -1, 0..WIN+S-1, exactly WIN+S,
    exactly the upper bound and its neighbours, 10^6, 2^24±1, 2^31-1 and very negative values.
    """
    B, S, K = cfg.B, cfg.S, cfg.IDX_TOPK
    T, top = B * S, cfg.MAX_SEQ_LEN - S
    fixed = [v for v in INTERESTING_STARTS if v <= top] + [top]
    layout = float(torch.rand(1, generator=gen))
    if layout < 0.2:
        starts = [(0, 126, 127, 300)[b % 4] for b in range(B)]
    else:
        starts = [fixed[_randint(0, len(fixed) - 1, gen)] if float(torch.rand(1, generator=gen)) < 0.7
                  else _randint(0, top, gen) for _ in range(B)]
    positions = [starts[b] + s for b in range(B) for s in range(S)]
    if layout > 0.85:  # positions of one batch unrelated to each other
        positions = [p if float(torch.rand(1, generator=gen)) < 0.5 else
                     min(cfg.MAX_SEQ_LEN - 1, (p + WIN * _randint(1, 3, gen)) if p + WIN < cfg.MAX_SEQ_LEN else p // 2)
                     for p in positions]

    lo = WIN + S
    raw = torch.full((T, cfg.MAX_SEQ_LEN // 4), lo, dtype=torch.int64)  # never read beyond IDX_TOPK
    for t in range(T):
        hi = lo + (positions[t] + 1) // 4
        junk = torch.tensor([-1, 0, 1, WIN - 1, WIN, lo - 1, hi, hi + 1, 10**6, 2**24 - 1, 2**24, 2**24 + 1,
                             2**31 - 1, -(2**31), -(10**6), -(2**24 + 1)], dtype=torch.int64)
        edge = torch.tensor([lo, hi - 1, hi, lo - 1], dtype=torch.int64)
        row = junk[torch.randint(0, len(junk), (K,), generator=gen)]
        small = torch.randint(-1, lo + 1, (K,), generator=gen)
        row = torch.where(torch.rand(K, generator=gen) < 0.3, small, row)
        for c0 in range(0, K, ATTN_K_TILE):
            mode = int(torch.randint(0, 4, (1,), generator=gen))
            n = min(ATTN_K_TILE, K - c0)
            if mode == 1:  # boundary codes only, in a few random columns
                cols = torch.randint(0, n, (3,), generator=gen) + c0
                row[cols] = edge[torch.randint(0, len(edge), (3,), generator=gen)]
            elif mode == 2 and hi > lo:  # dense valid codes
                valid = torch.randint(lo, hi, (n,), generator=gen)
                pick = torch.rand(n, generator=gen) < 0.7
                row[c0 : c0 + n] = torch.where(pick, valid, row[c0 : c0 + n])
            elif mode == 3:  # a random integer anywhere in int32
                row[c0 : c0 + n] = torch.randint(-(2**31), 2**31, (n,), generator=gen)
        raw[t, :K] = row
    return {"position_ids": torch.tensor(positions, dtype=torch.int32),
            "idx_topk_full": raw.to(torch.int32).reshape(B, S, cfg.MAX_SEQ_LEN // 4)}


SHAPES = ShapeSpace(
    dims={
        "B": Dim(1, 16, tiles=(4, 8), favour=(8, 4), doc="DECODE_BATCH"),
        "S": Dim(1, 2, favour=(1, 2), doc="DECODE_SEQ (MTP tokens per request)"),
        "IDX_TOPK": Dim(128, 1024, tiles=(512,), favour=(512, 1024), step=128, doc="index_topk"),
        "MAX_SEQ_LEN": Dim(4096, 1048576, favour=(4096, 8192, 1048576), step=4096,
                           doc="max_position_embeddings (position domain; INDEXER_SCORE_LEN = //4)"),
    },
    presets={
        "nominal": [dict(B=8, S=1, IDX_TOPK=512, MAX_SEQ_LEN=8192),
                    dict(B=4, S=2, IDX_TOPK=512, MAX_SEQ_LEN=8192)],
        "demo": [dict(B=8, S=1, IDX_TOPK=512, MAX_SEQ_LEN=4096)],
        "flash": [dict(B=8, S=1, IDX_TOPK=512, MAX_SEQ_LEN=8192)],
        "pro": [dict(B=8, S=1, IDX_TOPK=1024, MAX_SEQ_LEN=1048576)],
    },
)

PAIR = KernelPair(
    name="csa.sparse_index",
    pre=pre.sparse_index,
    retiled=retiled.sparse_index,
    reference=reference.sparse_index,
    outputs=lambda cfg: {"cmp_sparse_indices": ((cfg.B * cfg.S, WIN + cfg.IDX_TOPK), INT32),
                         "valid_block_mask": ((cfg.B * cfg.S, sparse_blocks(cfg)), INT32)},
    recipes=with_adversarial(realistic, free_inputs=(), kinds=(), extra={"codes": codes}),
    shapes=SHAPES,
    contract=BIT_EXACT,
    sources=("kernels/csa_sparse_index", "reference/csa_sparse_index.py"),
    description="CSA sparse KV index list + block-validity mask (T/8 tasks × 8 tokens → T tasks + one scope)",
)

# Decision sites no input of this pair's domain can drive both ways (decision coverage lists
# them with the reason instead of as unexercised; keys are kernel file:line).
UNREACHABLE = {
    'retiled.py:50': 'cast of (position + 1) / 4 to INT32: positions are below MAX_SEQ_LEN (at most 2^20), far inside the INT32 range',
    'retiled.py:57': 'cast of the kept index or -1 to INT32: indices are below MAX_SEQ_LEN (at most 2^20), far inside the INT32 range',
    'pre.py:54': 'cast of (position + 1) / 4 to INT32: positions are below MAX_SEQ_LEN (at most 2^20)',
    'pre.py:61': 'cast of the kept index or -1 to INT32: indices are below MAX_SEQ_LEN (at most 2^20)',
}
declare_unreachable(PAIR.name, UNREACHABLE)
