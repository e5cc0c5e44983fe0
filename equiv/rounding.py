"""Conversion of exact (float64 container) values to an element type under a cast mode.

PyPTO's ``pl.cast(x, target_type, mode=...)`` modes, as the pto-isa ``RoundMode`` names them:

=========  ==========================================================
``rint``   nearest, ties to even
``round``  nearest, ties away from zero (the DSL's default mode)
``trunc``  toward zero
``floor``  toward -inf
``ceil``   toward +inf
``none``   the conversion's natural rounding: nearest-even
=========  ==========================================================

Float targets keep gradual underflow (no flush-to-zero). Float results that round past the
largest finite value overflow the way IEEE directed rounding does (to inf, or to the largest
finite value for modes that round toward zero). Integer targets saturate to the type's range
and map NaN to 0, as the vector unit's saturating conversions do.
"""

from __future__ import annotations

import torch

from equiv.dtypes import DType

CAST_MODES: tuple[str, ...] = ("none", "rint", "round", "trunc", "floor", "ceil")
_TWO52 = float(2**52)


def round_integer(y: torch.Tensor, mode: str) -> torch.Tensor:
    """Round float64 values to integers (still float64) under `mode`."""
    if mode in ("rint", "none"):
        return torch.round(y)  # torch.round is half-to-even
    if mode == "round":
        # |y| >= 2**52 is already an integer; below that |y| + 0.5 is exact.
        away = torch.sign(y) * torch.floor(y.abs() + 0.5)
        return torch.where(y.abs() >= _TWO52, y, away)
    if mode == "trunc":
        return torch.trunc(y)
    if mode == "floor":
        return torch.floor(y)
    if mode == "ceil":
        return torch.ceil(y)
    raise ValueError(f"unknown cast mode {mode!r}; expected one of {CAST_MODES}")


_FP32_MIN_NORMAL = 2.0**-126


def _nearest_even_fast(x: torch.Tensor, dtype: DType) -> torch.Tensor | None:
    """Round-to-nearest-even to fp32 or bf16 with native conversions, or None to use the slow path.

    float64 -> float32 is one correctly rounded conversion. For bf16 a direct conversion would
    round twice (via float32), so the float32 step rounds to *odd* instead (truncate, then set
    the last bit if inexact): with 16 spare bits that makes the final RNE to bf16 exact.
    """
    if dtype.torch_dtype not in (torch.float32, torch.bfloat16):
        return None
    a = x.abs()
    if bool(((a < _FP32_MIN_NORMAL) & (a > 0)).any()):
        return None  # fp32 subnormals: immune to flush-to-zero settings only on the exact path
    f = x.to(torch.float32)
    back = f.to(torch.float64)
    if bool((torch.isinf(back) & torch.isfinite(x)).any()):
        return None  # overflow: leave it to the general path
    if dtype.torch_dtype == torch.float32:
        return back
    inexact = (back != x) & torch.isfinite(x)
    bits = f.view(torch.int32)
    bits = bits - (inexact & (back.abs() > x.abs())).to(torch.int32)  # toward zero
    bits = bits | inexact.to(torch.int32)
    return bits.view(torch.float32).to(torch.bfloat16).to(torch.float64)


def to_float(x: torch.Tensor, dtype: DType, mode: str = "rint") -> torch.Tensor:
    """Round float64 `x` to floating `dtype` under `mode`; returns the float64 container."""
    fmt = dtype.fmt
    x = x.to(torch.float64)
    if mode in ("rint", "none"):
        fast = _nearest_even_fast(x, dtype)
        if fast is not None:
            return fast
    _, exp = torch.frexp(x.abs())
    e = torch.clamp(exp.to(torch.int64) - 1, min=fmt.emin)
    quantum = torch.ldexp(torch.ones_like(x), (e - fmt.mantissa_bits).to(x.dtype))
    r = round_integer(x / quantum, mode) * quantum
    big = r.abs() > fmt.max_finite
    if bool(big.any()):
        pos = x > 0
        to_inf = {
            "rint": torch.ones_like(big), "none": torch.ones_like(big), "round": torch.ones_like(big),
            "trunc": torch.zeros_like(big), "floor": ~pos, "ceil": pos,
        }[mode]
        capped = torch.where(to_inf, torch.sign(x) * torch.inf, torch.sign(x) * fmt.max_finite)
        r = torch.where(big, capped, r)
    # Keep NaN, infinities and the sign of zero exactly.
    r = torch.where(torch.isfinite(x), r, x)
    return torch.where(r == 0, torch.copysign(torch.zeros_like(r), x), r)


def to_int(x: torch.Tensor, dtype: DType, mode: str = "round") -> torch.Tensor:
    """Convert container values to integer `dtype` (int64 container) under `mode`."""
    lo, hi = dtype.int_range
    if x.dtype.is_floating_point:
        y = round_integer(torch.nan_to_num(x.to(torch.float64), nan=0.0), mode)
        y = torch.clamp(y, float(lo), float(hi))
        return y.to(torch.int64)
    return torch.clamp(x.to(torch.int64), lo, hi)


def convert(x: torch.Tensor, dtype: DType, mode: str = "rint") -> torch.Tensor:
    """Container of any element type -> container of `dtype` under cast `mode`."""
    if mode not in CAST_MODES:
        raise ValueError(f"unknown cast mode {mode!r}; expected one of {CAST_MODES}")
    if dtype.is_float:
        return to_float(x.to(torch.float64), dtype, mode)
    return to_int(x, dtype, mode)


def wrap_int(x: torch.Tensor, dtype: DType) -> torch.Tensor:
    """Two's-complement wrap of int64 container values into `dtype` (integer arithmetic)."""
    lo, hi = dtype.int_range
    span = hi - lo + 1
    if span >= 2**64:
        return x
    return torch.remainder(x - lo, span) + lo
