"""qkv.q_head_rope (pypto-lib models/deepseek/v4/qkv_proj_rope.py, SPMD stage q_head_rms_nope_rope).

Spec: shared/spec/kernels/qkv_q_head_rope.md. Per-head RMS norm (no gain) of the dequantised
query projection, NOPE writeback and interleaved RoPE. The PR reorders the fp32 sum of squares
(eight RS_64 folded in sequence → RS_448 ⊕ RS_64), so the claim is ≤ 1 bf16 ULP, not bit-exact;
every case runs under each `row_sum` order model.

Interface: q_proj_fp32 fp32 [T, H·512], rope_cos / rope_sin bf16 [T, 64] → q bf16 [T, H·512]
(the [T, H·HEAD_DIM] view `q_flat` through which upstream writes q[T, H, HEAD_DIM]).
Dimensions: T (runtime token count; rows [8⌊T/8⌋, T) are a coverage hole of both versions) and
H (heads; even). HEAD_DIM 512 / ROPE_DIM 64 are fixed. This stage has no hidden dimension:
hidden_size (4096 FLASH/DEMO, 7168 PRO) only enters through the realistic input recipe, which
runs the upstream q_proj chain x[T, D] → wq_a → rms·gamma → int8 → wq_b to make q_proj_fp32.
The fuzz domain keeps H to 2..8 (besides 64 and 128) and T to 1..32 so that cases stay fast;
prefill T = 128 (16 row tiles of the same loop) is left out for run time, T = 16 covers the loop.

Per-model numbers: ``per_model(equiv.check(PAIR, shapes="flash"))`` → {row_sum order: cases,
compared, differing elements, max ULP, max error vs reference per side, verdict counts}.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import torch

from equiv.dtypes import BF16
from equiv.inputs import with_adversarial
from equiv.options import ROW_SUM_ORDERS
from equiv.observe.decisions import declare_unreachable
from equiv.pair import KernelPair, within_ulp
from equiv.shapes import Dim, Shape, ShapeSpace
from kernels.qkv_q_head_rope import pre, retiled
from reference import qkv_q_head_rope as reference

HEAD_DIM = 512
ROPE_DIM = 64
NOPE_DIM = HEAD_DIM - ROPE_DIM
INT8_SCALE_MAX = 127.0
INT8_AMAX_EPS = 1e-4
EPS = 1e-6


def chain_dims(cfg: Shape) -> tuple[int, int]:
    """(hidden_size D, q_lora_rank) of the q_proj chain: PRO for H ≥ 128, else FLASH/DEMO."""
    return (7168, 1536) if cfg.H >= 128 else (4096, 1024)


def _uniform(shape, lo, hi, gen) -> torch.Tensor:
    u = torch.rand(shape, generator=gen, dtype=torch.float32)
    return (u * (hi - lo) + lo).to(torch.bfloat16)


W_BLOCK = 1024  # wq_b is drawn and quantised in column blocks of this width (memory, speed)
K_EXACT = 512  # int8 dot products over ≤ 512 terms stay below 2^24: exact in fp32 in any order


def _q_proj_chain(T: int, H: int, D: int, Q_LORA: int, gen: torch.Generator) -> torch.Tensor:
    """Spec §8: q_proj_fp32 = (f32(qr_i8 · wq_b_i8) ⊗ qr_scale[t]) ⊗ wq_b_scale[n].

    x @ wq_a and the qr RMS norm run in float64 and are rounded to fp32 once (a different BLAS
    order could only flip a result lying within ~2^-29 of an fp32 rounding boundary), and the
    int8 dot products are exact, so the inputs do not depend on the thread count.
    """
    N = H * HEAD_DIM
    x = _uniform((T, D), -1.0, 1.0, gen).double()
    wq_a = _uniform((D, Q_LORA), -0.1, 0.1, gen).double()
    gamma = _uniform((Q_LORA,), -1.0, 1.0, gen).double()
    # qr = rms_norm(x @ wq_a) · gamma, then int8 per row (round half even), scale amax/127.
    qa = (x @ wq_a).float().double()
    qr = (qa * torch.rsqrt((qa * qa).mean(dim=-1, keepdim=True) + EPS) * gamma).float()
    r_sq = INT8_SCALE_MAX / qr.abs().amax(dim=-1, keepdim=True).clamp_min(INT8_AMAX_EPS)
    qr_i8 = torch.round(qr * r_sq)
    qr_scale = 1.0 / r_sq
    out = torch.empty(T, N, dtype=torch.float32)
    for c0 in range(0, N, W_BLOCK):
        n = min(W_BLOCK, N - c0)
        # wq_b ~ U(-0.1, 0.1) bf16, int8 per output column (round half even), scale amax/127.
        w = _uniform((Q_LORA, n), -0.1, 0.1, gen).float()
        w_sq = INT8_SCALE_MAX / w.abs().amax(dim=0).clamp_min(INT8_AMAX_EPS)
        w_i8 = torch.clamp(torch.round(w * w_sq), -INT8_SCALE_MAX, INT8_SCALE_MAX)
        acc = torch.zeros(T, n, dtype=torch.float64)
        for k0 in range(0, Q_LORA, K_EXACT):
            acc += (qr_i8[:, k0:k0 + K_EXACT] @ w_i8[k0:k0 + K_EXACT]).double()
        out[:, c0:c0 + n] = (acc.float() * qr_scale) * (1.0 / w_sq)
    return out


_CACHE: "OrderedDict[tuple, tuple[dict, torch.Tensor]]" = OrderedDict()


def realistic(cfg: Shape, gen: torch.Generator) -> dict:
    """Spec §8: q_proj_fp32 from the upstream q_proj chain (bf16 U(-1,1) x, U(-0.1,0.1) wq_a / wq_b,
    U(-1,1) gamma, int8 quantisation) at the full upstream sizes, hidden_size D = 7168 and
    q_lora_rank 1536 for H = 128 (PRO), else 4096 and 1024; rope_cos / rope_sin independent bf16
    U(-1, 1) [T, 64] (not trigonometric, halves not duplicated, as upstream).

    The draws are a pure function of (shape, generator state); the last few are memoised (with the
    generator's state afterwards), since each case is re-run under every row_sum model.
    """
    T, H = cfg.T, cfg.H
    key = (T, H, hashlib.sha1(gen.get_state().numpy().tobytes()).hexdigest())
    hit = _CACHE.get(key)
    if hit is None:
        D, Q_LORA = chain_dims(cfg)
        q_proj = _q_proj_chain(T, H, D, Q_LORA, gen)
        cos = _uniform((T, ROPE_DIM), -1.0, 1.0, gen)
        sin = _uniform((T, ROPE_DIM), -1.0, 1.0, gen)
        hit = ({"q_proj_fp32": q_proj, "rope_cos": cos, "rope_sin": sin}, gen.get_state())
        _CACHE[key] = hit
        while len(_CACHE) > 8:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
        gen.set_state(hit[1])
    return {k: v.clone() for k, v in hit[0].items()}


def _rope_tables(T: int, gen: torch.Generator) -> dict:
    return {"rope_cos": _uniform((T, ROPE_DIM), -1.0, 1.0, gen),
            "rope_sin": _uniform((T, ROPE_DIM), -1.0, 1.0, gen)}


def _heads(cfg: Shape, x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float32).reshape(cfg.T, cfg.H * HEAD_DIM)


def wide_range(cfg: Shape, gen: torch.Generator) -> dict:
    """Spec §8 extra: x = N(0,1)·e^{3·N(0,1)} per element, so a few squares dominate each head."""
    shape = (cfg.T, cfg.H, HEAD_DIM)
    x = torch.randn(shape, generator=gen, dtype=torch.float64) \
        * torch.exp(3.0 * torch.randn(shape, generator=gen, dtype=torch.float64))
    return {"q_proj_fp32": _heads(cfg, x), **_rope_tables(cfg.T, gen)}


def tiny_rows(cfg: Shape, gen: torch.Generator) -> dict:
    """Spec §8 extra: heads of N(0,1)·10^u, u ~ U(-5, -2), so mean(x²) is below, near or just
    above EPS = 1e-6 (EPS-dominated normalisation)."""
    x = torch.randn((cfg.T, cfg.H, HEAD_DIM), generator=gen, dtype=torch.float64)
    u = torch.rand((cfg.T, cfg.H, 1), generator=gen, dtype=torch.float64) * 3.0 - 5.0
    return {"q_proj_fp32": _heads(cfg, x * torch.pow(10.0, u)), **_rope_tables(cfg.T, gen)}


def split_magnitude(cfg: Shape, gen: torch.Generator) -> dict:
    """Spec §8 extra: per head, the NOPE part, the RoPE part and one random 64-column chunk get
    independent scales 2^k, k ~ U{-20..20}, so one chunk's squares dominate the head's sum."""
    T, H = cfg.T, cfg.H
    x = torch.randn((T, H, HEAD_DIM), generator=gen, dtype=torch.float64)
    k = torch.randint(-20, 21, (T, H, 3), generator=gen).to(torch.float64)
    chunk = torch.randint(0, HEAD_DIM // 64, (T, H, 1), generator=gen)
    col = torch.arange(HEAD_DIM).view(1, 1, -1)
    scale = torch.where(col < NOPE_DIM, torch.exp2(k[..., 0:1]), torch.exp2(k[..., 1:2]))
    scale = torch.where(col // 64 == chunk, scale * torch.exp2(k[..., 2:3]), scale)
    return {"q_proj_fp32": _heads(cfg, x * scale), **_rope_tables(T, gen)}


EXTRA_RECIPES = {"wide_range": wide_range, "tiny_rows": tiny_rows, "split_magnitude": split_magnitude}


SHAPES = ShapeSpace(
    dims={
        "T": Dim(1, 32, tiles=(8,), favour=(8, 16), doc="T_DYN tokens (decode 8; prefill 128 is out of range)"),
        "H": Dim(2, 128, favour=(2, 4, 8), step=2, doc="num_attention_heads (64 FLASH/DEMO, 128 PRO)"),
    },
    constraints=(("H <= 8 or H in (64, 128)", lambda s: s.H <= 8 or s.H in (64, 128)),),
    presets={
        "nominal": [dict(T=8, H=64), dict(T=16, H=64)],
        "demo": [dict(T=8, H=64)],
        "flash": [dict(T=8, H=64)],
        "pro": [dict(T=8, H=128)],
    },
)


def per_model(result, output: str = "q") -> dict[str, dict]:
    """Per row_sum order model: cases, compared / differing elements, max pre↔retiled ULP,
    max error vs the reference of each side, and verdict counts, from ``CheckResult.results``
    grouped by ``case.variant``."""
    table: dict[str, dict] = {}
    for r in result.results:
        o = r.outputs[output]
        key = dict(r.case.variant).get("row_sum_order", r.case.variant_label)
        row = table.setdefault(key, {"cases": 0, "compared": 0, "differing": 0, "max_ulp": 0,
                                     "pre_err": 0.0, "retiled_err": 0.0, "verdicts": {}})
        row["cases"] += 1
        row["compared"] += o.compared
        row["differing"] += o.differing
        row["max_ulp"] = max(row["max_ulp"], o.max_ulp)
        for side in ("pre", "retiled"):
            if side in o.error_vs_ref:
                row[f"{side}_err"] = max(row[f"{side}_err"], o.error_vs_ref[side]["max"])
        row["verdicts"][o.verdict] = row["verdicts"].get(o.verdict, 0) + 1
    return table


PAIR = KernelPair(
    name="qkv.q_head_rope",
    pre=pre.q_head_rope,
    retiled=retiled.q_head_rope,
    reference=reference.q_head_rope,
    outputs=lambda cfg: {"q": ((cfg.T, cfg.H * HEAD_DIM), BF16)},
    recipes=with_adversarial(realistic, free_inputs=("q_proj_fp32",), extra=EXTRA_RECIPES),
    shapes=SHAPES,
    contract=within_ulp(1, "bf16"),
    sweep={"row_sum_order": ROW_SUM_ORDERS},
    sources=("kernels/qkv_q_head_rope", "reference/qkv_q_head_rope.py"),
    description="per-head q RMS norm + NOPE + interleaved RoPE (8×64 chunks → 8×448 + 8×64 slabs)",
)

# Decision sites no input of this pair's domain can drive both ways (decision coverage lists
# them with the reason instead of as unexercised; keys are kernel file:line).
UNREACHABLE = {
    'retiled.py:24': 'lane ramp j // 2 for j < ROPE_DIM (64): a constant, never near the INT32 range',
    'retiled.py:25': 'lane ramp j // 2 for j < ROPE_DIM (64): a constant, never near the INT32 range',
    'retiled.py:27': 'lane ramp j ^ 1 for j < ROPE_DIM (64): a constant, never near the INT32 range',
    'pre.py:24': 'lane ramp j // 2 for j < ROPE_DIM (64): a constant',
    'pre.py:25': 'lane ramp j // 2 for j < ROPE_DIM (64): a constant',
    'pre.py:27': 'lane ramp j ^ 1 for j < ROPE_DIM (64): a constant',
}
declare_unreachable(PAIR.name, UNREACHABLE)
