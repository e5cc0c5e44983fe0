"""expert_shared (pypto-lib models/deepseek/v4/expert_shared.py): DeepSeek-V4 MoE shared expert, W8A8.

Spec: shared/spec/kernels/expert_shared.md. The PR claims bit-exact.

Dimensions: T tokens (MOE_TOKENS), D hidden_size, I moe_intermediate_size and L swiglu_limit.
L is a trace-time constant of the kernel (the clamp is emitted only when L > 0): 0 in DEMO,
10 in FLASH and PRO. It is a dimension with the two values {0, 10} so that fuzzing covers
both the clamped and the unclamped SwiGLU. D and I stay multiples of 512, the space the spec
analyses (the K loops of both versions cut D and I in 512 chunks).
"""

from __future__ import annotations

import functools
from collections import OrderedDict

import torch

from equiv.dtypes import BF16
from equiv.inputs import with_adversarial
from equiv.observe.decisions import declare_unreachable
from equiv.pair import BIT_EXACT, KernelPair
from equiv.shapes import Dim, Shape, ShapeSpace
from kernels.expert_shared import pre, retiled
from reference import expert_shared as reference

INT8_SCALE_MAX = 127.0
INT8_AMAX_EPS = 1e-4
FP8_MAX = 448.0

# Upstream standalone test: (dequant_std, chan_cv) per weight.
W1_GEN, W3_GEN, W2_GEN = (1.71e-2, 0.50), (1.70e-2, 0.50), (1.68e-2, 0.33)


def int8_quant_per_row(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row symmetric int8 quant in fp32 (upstream ``_int8_quant_per_row``)."""
    rows = x.float()
    amax = rows.abs().amax(dim=-1, keepdim=True).clamp_min(INT8_AMAX_EPS)
    scale_quant = INT8_SCALE_MAX / amax
    q = torch.round(rows * scale_quant).to(torch.int32).to(torch.float16).to(torch.int8)
    return q, 1.0 / scale_quant


def _sim_fp8(w: torch.Tensor, block: int = 128) -> torch.Tensor:
    """e4m3 values with a power-of-two (rounded up) scale per 128 x 128 block."""
    out, inn = w.shape
    wb = w.reshape(out // block, block, inn // block, block)
    amax = wb.abs().amax(dim=(1, 3), keepdim=True)
    scale = torch.exp2(torch.ceil(torch.log2((amax / FP8_MAX).clamp_min(1e-20))))
    return ((wb / scale).to(torch.float8_e4m3fn).float() * scale).reshape(out, inn)


def gen_shared_weight(out: int, inn: int, dequant_std: float, chan_cv: float,
                      gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Spec §8 weight recipe: log-normal channel gain, simulated MXFP8 grid, per-channel int8."""
    w = torch.randn(out, inn, generator=gen) * torch.exp(chan_cv * torch.randn(out, 1, generator=gen))
    wq = _sim_fp8(w)
    scale = wq.abs().amax(dim=-1, keepdim=True).clamp_min(INT8_AMAX_EPS) / INT8_SCALE_MAX
    w_i8 = torch.round(wq / scale).clamp_(-INT8_SCALE_MAX, INT8_SCALE_MAX).to(torch.int8)
    scale = (scale * (dequant_std / (w_i8.float() * scale).std())).squeeze(-1).float()
    return w_i8, scale


def _memoized(recipe):
    """Cache a recipe's draw by (shape, generator state) and restore the generator state it
    leaves, so the result is exactly the recipe's. The adversarial recipes first redraw the
    realistic inputs from the same seed, and the weight generator dominates a case's time."""
    cache: OrderedDict = OrderedDict()

    @functools.wraps(recipe)
    def wrapped(cfg: Shape, gen: torch.Generator) -> dict:
        key = (tuple(sorted(cfg.items())), gen.get_state().numpy().tobytes())
        if key not in cache:
            inputs = recipe(cfg, gen)
            cache[key] = (inputs, gen.get_state())
            while len(cache) > 2:
                cache.popitem(last=False)
        inputs, after = cache[key]
        cache.move_to_end(key)
        gen.set_state(after)
        return dict(inputs)  # recipes built on this one replace entries, never tensors in place

    return wrapped


@_memoized
def realistic(cfg: Shape, gen: torch.Generator) -> dict:
    """Spec §8: bf16 N(0, 1) activations quantised per row to int8; weights from the
    simulated-FP8 per-channel int8 generator with the standalone test's parameters."""
    T, D, I = cfg.T, cfg.D, cfg.I
    x_i8, x_sd = int8_quant_per_row(torch.randn(T, D, generator=gen).to(torch.bfloat16))
    w1, s1 = gen_shared_weight(I, D, *W1_GEN, gen)
    w3, s3 = gen_shared_weight(I, D, *W3_GEN, gen)
    w2, s2 = gen_shared_weight(D, I, *W2_GEN, gen)
    return {"x_local_i8": x_i8, "x_local_scale_dq": x_sd.float(),
            "shared_w1": w1, "shared_w1_scale": s1, "shared_w3": w3, "shared_w3_scale": s3,
            "shared_w2": w2, "shared_w2_scale": s2}


def saturated(cfg: Shape, gen: torch.Generator) -> dict:
    """Activations at ±127 everywhere and w1/w3 rows partly sign-aligned with one token's
    activations: the int32 gate/up sums exceed 2^24 (so the int32 -> fp32 cast rounds) and
    the dequantised gate/up values reach well past ±10 (both sides of the SwiGLU clamp)."""
    T, D, I = cfg.T, cfg.D, cfg.I
    # Signs and magnitudes are drawn and combined as int8 (|sign * mag| <= 127): randint
    # draws the same values whatever integer dtype holds them, at an eighth of int64's bytes.
    sign_x = torch.randint(0, 2, (T, D), generator=gen, dtype=torch.int8) * 2 - 1
    x_i8 = sign_x * 127
    x_sd = torch.full((T, 1), 3.5 / 127.0, dtype=torch.float32)

    def aligned(out: int) -> tuple[torch.Tensor, torch.Tensor]:
        token = torch.randint(0, T, (out,), generator=gen)
        agree = torch.rand(out, 1, generator=gen)
        same = torch.rand(out, D, generator=gen) < agree
        rand_sign = torch.randint(0, 2, (out, D), generator=gen, dtype=torch.int8) * 2 - 1
        flip = torch.randint(0, 2, (out, 1), generator=gen, dtype=torch.int8) * 2 - 1
        sign = torch.where(same, sign_x[token] * flip, rand_sign)
        mag = torch.randint(64, 128, (out, D), generator=gen, dtype=torch.int8)
        w = sign * mag
        # |gate| up to about 40 for the most aligned channels.
        s = (40.0 / (D * 96.0 * 3.5)) * (0.5 + torch.rand(out, generator=gen))
        return w, s.float()

    w1, s1 = aligned(I)
    w3, s3 = aligned(I)
    w2, s2 = gen_shared_weight(D, I, *W2_GEN, gen)
    return {"x_local_i8": x_i8, "x_local_scale_dq": x_sd,
            "shared_w1": w1, "shared_w1_scale": s1, "shared_w3": w3, "shared_w3_scale": s3,
            "shared_w2": w2, "shared_w2_scale": s2}


SHAPES = ShapeSpace(
    dims={
        "T": Dim(1, 32, tiles=(8, 16), favour=(8, 16), doc="MOE_TOKENS"),
        "D": Dim(512, 7168, tiles=(1024, 4096), favour=(4096, 7168), step=512, doc="hidden_size"),
        "I": Dim(512, 4096, tiles=(512,), favour=(2048, 3072, 4096), step=512, doc="moe_intermediate_size"),
        "L": Dim(0, 10, favour=(0, 10), step=10, doc="swiglu_limit (0: no clamp)"),
    },
    presets={
        # FLASH decode (T=8) and one full 16-row M-tile. The prefill size T=128 (8 M-tiles, the
        # same per-tile program) costs several times a decode case on the emulator and would put
        # nominal past a minute on a CPU, so the T domain stops at two M-tiles.
        "nominal": [dict(T=8, D=4096, I=2048, L=10), dict(T=16, D=4096, I=2048, L=10)],
        "demo": [dict(T=8, D=4096, I=4096, L=0)],
        "flash": [dict(T=8, D=4096, I=2048, L=10)],
        "pro": [dict(T=8, D=7168, I=3072, L=10)],
    },
)

M_TILE_ASSERT = ("T <= 16 or T % 16 == 0", lambda s: s.T <= 16 or s.T % 16 == 0)

PAIR = KernelPair(
    name="expert_shared",
    pre=pre.expert_shared,
    retiled=retiled.expert_shared,
    reference=reference.expert_shared,
    outputs=lambda cfg: {"sh": ((cfg.T, cfg.D), BF16)},
    # The int8 tensors are quantised data with a structure the kernel relies on (|q| <= 127,
    # int32 sums exact in fp32 for realistic data); the fp32 scales are plain multipliers
    # of the dequant chain, so those four may take any value of their type.
    recipes=with_adversarial(
        realistic,
        free_inputs=("x_local_scale_dq", "shared_w1_scale", "shared_w3_scale", "shared_w2_scale"),
        extra={"saturated": saturated},
    ),
    shapes=SHAPES,
    contract=BIT_EXACT,
    pre_requires=(M_TILE_ASSERT,),
    retiled_requires=(M_TILE_ASSERT,),
    sources=("kernels/expert_shared", "reference/expert_shared.py"),
    description="MoE shared expert W8A8: gate/up int8 GEMM, clamped SwiGLU, int8 requant, down GEMM",
)

# Decision sites no input of this pair's domain can drive both ways (decision coverage lists
# them with the reason instead of as unexercised; keys are kernel file:line).
UNREACHABLE = {
    'retiled.py:114': 'h * (127 / amax) with amax >= max|h| of the row: |value| <= 127, never outside INT32',
    'retiled.py:116': 'the requantised value is an integer in [-127, 127] (scaled by 127 / row amax), never outside INT8',
    'pre.py:96': 'h * (127 / amax) with amax >= max|h| of the row: |value| <= 127',
    'pre.py:98': 'the requantised value is an integer in [-127, 127], never outside INT8',
}
declare_unreachable(PAIR.name, UNREACHABLE)
