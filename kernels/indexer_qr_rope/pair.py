"""indexer.qr_rope (pypto-lib models/deepseek/v4/decode_indexer.py, function indexer, SPMD loop
"qr_rope").

Spec: shared/spec/kernels/indexer_qr_rope.md. The PR claims bit-exact: folding the ±1 sign into
sin before the product gives the same fp32 product as applying it to the swapped query.
"""

from __future__ import annotations

import math

import torch

from equiv.dtypes import BF16
from equiv.inputs import with_adversarial
from equiv.observe.decisions import declare_unreachable
from equiv.pair import BIT_EXACT, KernelPair
from equiv.shapes import Dim, Shape, ShapeSpace
from kernels.indexer_qr_rope import pre, retiled
from reference import indexer_qr_rope as reference

IDX_N_HEADS = pre.IDX_N_HEADS
IDX_HEAD_DIM = pre.IDX_HEAD_DIM
ROPE_HEAD_DIM = pre.ROPE_HEAD_DIM
HALF = ROPE_HEAD_DIM // 2
INT8_SCALE_MAX = 127.0
INT8_AMAX_EPS = 1e-4

# Model presets as the recipe needs them: compress_rope_theta, YaRN original length and factor,
# max_position_embeddings, q_lora_rank (config.py of pypto-lib).
ROPE_PRESETS = {
    0: dict(name="DEMO", theta=40000.0, original=0, factor=40.0, max_seq=4096, q_lora=1024),
    1: dict(name="FLASH", theta=160000.0, original=65536, factor=16.0, max_seq=8192, q_lora=1024),
    2: dict(name="PRO", theta=160000.0, original=65536, factor=16.0, max_seq=1048576, q_lora=1536),
}
BETA_FAST, BETA_SLOW = 32, 1


def _correction_dim(rot: int, dim: int, base: float, max_seq: int) -> float:
    return dim * math.log(max_seq / (rot * 2 * math.pi)) / (2 * math.log(base))


def rope_half_rows(positions: torch.Tensor, preset: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows `positions` of the compressed-layer cos/sin tables, first half, bf16 values as fp32.

    Same fp32 steps as rope_tables.precompute_freqs_cos_sin (inv_freq, YaRN ramp, angle =
    position · inv_freq), evaluated only at the rows needed.
    """
    dim, base = ROPE_HEAD_DIM, preset["theta"]
    inv_freq = 1.0 / (float(base) ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    if preset["original"] > 0:
        low = max(math.floor(_correction_dim(BETA_FAST, dim, base, preset["original"])), 0)
        high = min(math.ceil(_correction_dim(BETA_SLOW, dim, base, preset["original"])), dim - 1)
        if low == high:
            high += 0.001
        ramp = torch.clamp((torch.arange(HALF, dtype=torch.float32) - low) / (high - low), 0, 1)
        smooth = 1 - ramp
        inv_freq = inv_freq / float(preset["factor"]) * (1 - smooth) + inv_freq * smooth
    angles = positions.to(torch.float32).unsqueeze(1) * inv_freq.unsqueeze(0)
    return (torch.cos(angles).to(torch.bfloat16).float(), torch.sin(angles).to(torch.bfloat16).float())


def _int8_quant_per_row(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    amax = x.abs().amax(dim=-1, keepdim=True).clamp_min(INT8_AMAX_EPS)
    scale_quant = INT8_SCALE_MAX / amax
    q = torch.round(x * scale_quant).to(torch.int32).to(torch.float16).to(torch.int8)
    return q, 1.0 / scale_quant


_WEIGHTS: dict[tuple[int, bytes], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


def _rope_weights(q_lora: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 weights [RoPE-half channels, q_lora] + fp32 per-channel scale, synthesised like
    decode_indexer.gen_shared_weight (per-channel log-normal gain σ=0.56, e4m3 with 128×128
    power-of-two block scales, per-channel int8 requant, dequantised std 0.108). Only the
    RoPE-half output channels are drawn, as this stage reads nothing else.

    Memoised on the generator state (the draw is the costly part of a case; every recipe of
    one seed starts from the same state), restoring the state the draw leaves behind."""
    key = (q_lora, gen.get_state().numpy().tobytes())
    if key in _WEIGHTS:
        w_i8, scale, after = _WEIGHTS[key]
        gen.set_state(after)
        return w_i8, scale
    w_i8, scale = _draw_rope_weights(q_lora, gen)
    if len(_WEIGHTS) >= 4:
        _WEIGHTS.pop(next(iter(_WEIGHTS)))
    _WEIGHTS[key] = (w_i8, scale, gen.get_state())
    return w_i8, scale


def _draw_rope_weights(q_lora: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    out = IDX_N_HEADS * ROPE_HEAD_DIM
    w = torch.randn(out, q_lora, generator=gen) * torch.exp(0.56 * torch.randn(out, 1, generator=gen))
    wb = w.reshape(out // 128, 128, q_lora // 128, 128)
    bscale = torch.exp2(torch.ceil(torch.log2((wb.abs().amax(dim=(1, 3), keepdim=True) / 448.0).clamp_min(1e-20))))
    wq = ((wb / bscale).to(torch.float8_e4m3fn).float() * bscale).reshape(out, q_lora)
    scale = wq.abs().amax(dim=-1, keepdim=True).clamp_min(INT8_AMAX_EPS) / INT8_SCALE_MAX
    w_i8 = torch.round(wq / scale).clamp_(-INT8_SCALE_MAX, INT8_SCALE_MAX).to(torch.int8)
    scale = (scale * (0.108 / (w_i8.float() * scale).std())).squeeze(-1).float()
    return w_i8, scale


def batch_starts(cfg: Shape, gen: torch.Generator, max_seq: int) -> list[int]:
    """The indexer fixture's per-batch start pattern, or one --start-pos N for every batch."""
    B, S = cfg.B, cfg.S
    if float(torch.rand(1, generator=gen)) < 0.6:
        pattern = [0, 1, 4 - S, 3, 8 - S, 7, 4 * 32 - 1, 4 * 32 - S, 4 * 64 - S]
        return [pattern[b % len(pattern)] for b in range(B)]
    n = int(torch.randint(0, max_seq - S + 1, (1,), generator=gen))
    return [n] * B


def realistic(cfg: Shape, gen: torch.Generator) -> dict:
    """Spec §8: qr ~ U[0,1) quantised per row to int8, int8 weights on the simulated FP8 grid,
    qr_proj = (f32(qr_i8 @ wq_b) ⊗ qr_scale) ⊗ wq_b_scale; cos/sin = bf16 rows of the compressed
    RoPE tables at each batch's first position. The NOPE half of qr_proj, never read by this
    stage, is NaN."""
    B, S = cfg.B, cfg.S
    T = B * S
    preset = ROPE_PRESETS[cfg.ROPE_PRESET]
    w_i8, w_scale = _rope_weights(preset["q_lora"], gen)
    qr_i8, qr_scale = _int8_quant_per_row(torch.rand(T, preset["q_lora"], generator=gen))
    acc = (qr_i8.to(torch.float64) @ w_i8.to(torch.float64).t()).to(torch.float32)  # exact, < 2^24
    rope = (acc * qr_scale) * w_scale.unsqueeze(0)
    qr_proj = torch.full((T, IDX_N_HEADS, IDX_HEAD_DIM), float("nan"), dtype=torch.float32)
    qr_proj[:, :, IDX_HEAD_DIM - ROPE_HEAD_DIM:] = rope.reshape(T, IDX_N_HEADS, ROPE_HEAD_DIM)
    cos, sin = rope_half_rows(torch.tensor(batch_starts(cfg, gen, preset["max_seq"])), preset)
    return {"qr_proj": qr_proj.reshape(T, IDX_N_HEADS * IDX_HEAD_DIM), "cos": cos, "sin": sin}


def _pick(values: list[float], shape, gen: torch.Generator) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)[torch.randint(0, len(values), shape, generator=gen)]


def specials(cfg: Shape, gen: torch.Generator) -> dict:
    """Special rotations and special query values.

    cos/sin rows per batch: identity (1, 0), (-1, 0), (±1, -0), (0, ±1), (-0, ±1), or elements
    drawn from ±0, ±1, bf16 subnormals, ±min normal and bf16 values in [-1, 1]. qr_proj: a mix of
    realistic values, ±0, ±inf, NaN, fp32 subnormals, values near the fp32 maximum (products and
    sums that overflow) and tiny normals."""
    inputs = realistic(cfg, gen)
    B = cfg.B
    tiny = 2.0 ** -126
    sub_bf16 = [2.0 ** -133, -(2.0 ** -130), 3 * 2.0 ** -134]
    elem = [0.0, -0.0, 1.0, -1.0, tiny, -tiny, 0.5, -0.5] + sub_bf16
    cos = inputs["cos"].to(torch.float64)
    sin = inputs["sin"].to(torch.float64)
    rows = [(1.0, 0.0), (-1.0, 0.0), (1.0, -0.0), (-1.0, -0.0), (0.0, 1.0), (0.0, -1.0), (-0.0, 1.0), (-0.0, -1.0)]
    for b in range(B):
        mode = int(torch.randint(0, len(rows) + 2, (1,), generator=gen))
        if mode < len(rows):
            cos[b], sin[b] = rows[mode]
        elif mode == len(rows):
            cos[b] = _pick(elem, (HALF,), gen)
            sin[b] = _pick(elem, (HALF,), gen)
        else:  # realistic row with a few special elements
            hit = torch.rand(HALF, generator=gen) < 0.3
            cos[b] = torch.where(hit, _pick(elem, (HALF,), gen), cos[b])
            sin[b] = torch.where(torch.rand(HALF, generator=gen) < 0.3, _pick(elem, (HALF,), gen), sin[b])
    x = inputs["qr_proj"].to(torch.float64)
    big = 3.0e38
    special = [0.0, -0.0, math.inf, -math.inf, math.nan, 2.0 ** -149, -(2.0 ** -140), 2.0 ** -127,
               big, -big, 1.7e38, tiny, -tiny, 1.0, -1.0]
    pick = torch.rand(x.shape, generator=gen) < 0.5
    x = torch.where(pick, _pick(special, x.shape, gen), x)
    return {"qr_proj": x.to(torch.float32), "cos": cos.to(torch.bfloat16).float(),
            "sin": sin.to(torch.bfloat16).float()}


SHAPES = ShapeSpace(
    dims={
        "B": Dim(1, 16, tiles=(4, 8), favour=(8, 4), doc="DECODE_BATCH"),
        "S": Dim(1, 2, favour=(1, 2), doc="DECODE_SEQ (ROPE_ROW_BLOCK = 64·S)"),
        "ROPE_PRESET": Dim(0, 2, favour=(1,), doc="preset of the RoPE tables / Q_LORA the inputs come "
                                                 "from: 0 DEMO, 1 FLASH, 2 PRO (the kernels do not read it)"),
    },
    constraints=(("T = B·S <= 16 (decode_indexer asserts T_PAD == MM_ROW_TILE)", lambda s: s.B * s.S <= 16),),
    presets={
        "nominal": [dict(B=8, S=1, ROPE_PRESET=1), dict(B=4, S=2, ROPE_PRESET=1)],
        "demo": [dict(B=8, S=1, ROPE_PRESET=0)],
        "flash": [dict(B=8, S=1, ROPE_PRESET=1)],
        "pro": [dict(B=8, S=1, ROPE_PRESET=2)],
    },
)

PAIR = KernelPair(
    name="indexer.qr_rope",
    pre=pre.qr_rope,
    retiled=retiled.qr_rope,
    reference=reference.qr_rope,
    outputs=lambda cfg: {"qr_rope_out": ((cfg.B * cfg.S * IDX_N_HEADS, ROPE_HEAD_DIM), BF16)},
    recipes=with_adversarial(realistic, free_inputs=("qr_proj",), extra={"specials": specials}),
    shapes=SHAPES,
    contract=BIT_EXACT,
    sources=("kernels/indexer_qr_rope", "reference/indexer_qr_rope.py"),
    description="indexer query RoPE on interleaved pairs (B tasks × 2S tiles → 2T tiles, sign folded into sin)",
)

# Decision sites no input of this pair's domain can drive both ways (decision coverage lists
# them with the reason instead of as unexercised; keys are kernel file:line).
UNREACHABLE = {
    'retiled.py:30': 'lane ramp j // 2 for j < ROPE_HEAD_DIM (64): a constant, never near the INT32 range',
    'retiled.py:31': 'lane ramp j // 2 for j < ROPE_HEAD_DIM (64): a constant, never near the INT32 range',
    'retiled.py:33': 'lane ramp j ^ 1 for j < ROPE_HEAD_DIM (64): a constant, never near the INT32 range',
    'pre.py:30': 'lane ramp j // 2 for j < ROPE_HEAD_DIM (64): a constant',
    'pre.py:31': 'lane ramp j // 2 for j < ROPE_HEAD_DIM (64): a constant',
    'pre.py:33': 'lane ramp j ^ 1 for j < ROPE_HEAD_DIM (64): a constant',
}
declare_unreachable(PAIR.name, UNREACHABLE)
