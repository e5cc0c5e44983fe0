"""moe.combine (pypto-lib models/deepseek/v4/moe.py, function combine, final reduction).

Spec: shared/spec/kernels/moe_combine.md. The PR claims bit-exact.
"""

from __future__ import annotations

import torch

from equiv.dtypes import BF16
from equiv.inputs import with_adversarial
from equiv.pair import BIT_EXACT, KernelPair
from equiv.shapes import Dim, Shape, ShapeSpace
from kernels.moe_combine import pre, retiled
from reference import moe_combine as reference


def realistic(cfg: Shape, gen: torch.Generator) -> dict:
    """Spec §8: sh ~ N(0, 0.13²), routed rows ~ N(0, 0.08²) in bf16; inactive routed rows NaN
    (they must never be read); num_tokens swept over {-1, 0, 1, T-1, T, T+5}."""
    T, D, TOPK = cfg.T, cfg.D, cfg.TOPK
    sh = (torch.randn(T, D, generator=gen, dtype=torch.float64) * 0.13).to(torch.bfloat16)
    routed = (torch.randn(T * TOPK, D, generator=gen, dtype=torch.float64) * 0.08).to(torch.bfloat16)
    choices = [-1, 0, 1, T - 1, T, T + 5]
    weights = torch.tensor([1.0, 1.0, 1.0, 2.0, 6.0, 1.0])
    num_tokens = choices[int(torch.multinomial(weights, 1, generator=gen))]
    active = max(0, min(T, num_tokens))
    routed[active * TOPK:] = float("nan")
    return {"sh": sh, "routed_y_buf": routed, "num_tokens": num_tokens}


SHAPES = ShapeSpace(
    dims={
        "T": Dim(1, 160, tiles=(4, 8, 16), favour=(8, 128), doc="MOE_TOKENS"),
        "D": Dim(16, 7168, tiles=(512, 4096), favour=(256, 4096, 7168), step=16, doc="hidden_size"),
        "TOPK": Dim(1, 8, favour=(2, 6), doc="num_experts_per_tok"),
    },
    presets={
        "nominal": [dict(T=8, D=4096, TOPK=6), dict(T=128, D=4096, TOPK=6)],
        "demo": [dict(T=8, D=4096, TOPK=2)],
        "flash": [dict(T=8, D=4096, TOPK=6)],
        "pro": [dict(T=8, D=7168, TOPK=6)],
    },
)

PAIR = KernelPair(
    name="moe.combine",
    pre=pre.combine,
    retiled=retiled.combine,
    reference=reference.combine,
    outputs=lambda cfg: {"ffn_out": ((cfg.T, cfg.D), BF16)},
    recipes=with_adversarial(realistic, free_inputs=("sh", "routed_y_buf")),
    shapes=SHAPES,
    contract=BIT_EXACT,
    sources=("kernels/moe_combine", "reference/moe_combine.py"),
    description="MoE shared + routed fp32 reduction per token (T/4 blocks × 4 tokens → T blocks)",
)
