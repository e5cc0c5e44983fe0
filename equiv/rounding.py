"""Conversion of exact (float64) values to an element type under a cast mode, into the
type's container (`DType.container`).

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
finite value for modes that round toward zero). FP8E4M3FN has no infinity: pypto emits its
casts as ``pto.tcvt`` with a rounding mode only, and pto-isa's A5 TCVT then uses its default
for FP32 -> FP8, saturation on, so a value past 448 (or an infinity) becomes +-448 in every
mode; NaN stays NaN. Other sources reach FP8 through FP32 (pypto's LegalizeTileCast chain),
which is exact for them, so one rounding of the exact value is the chain's result. Integer targets saturate to the type's range
and map NaN to 0, as the vector unit's saturating conversions do.
"""

from __future__ import annotations

import torch

from equiv.dtypes import DType, set_float32_containers

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


# Smallest bf16 subnormal: a native float64 -> float32 -> bf16 chain that flushes it to zero runs
# under flush-to-zero / denormals-are-zero, where only the general path is exact.
_SUBNORMAL_PROBE = torch.tensor([2.0**-133, 2.0**-24], dtype=torch.float64)


def _vector_conversions_keep_subnormals() -> bool:
    """Whether torch's vectorised conversions (long tensors; a CPU's bf16 conversion
    instructions may flush subnormals whatever the flush mode) keep bf16 and fp16 subnormals
    and round to nearest-even there. A property of the machine and the torch build: asked
    once, at import."""
    lanes = 512  # longer than any vector width: the vectorised loop, not its scalar tail
    x = torch.full((lanes,), 3 * 2.0**-134, dtype=torch.float64).to(torch.float32)  # 1.5 bf16 quanta
    y = torch.full((lanes,), 3 * 2.0**-25, dtype=torch.float64).to(torch.float32)  # 1.5 fp16 quanta
    return (bool((x.to(torch.bfloat16).to(torch.float64) == 2.0**-132).all())
            and bool((y.to(torch.float16).to(torch.float64) == 2.0**-23).all()))


_VECTOR_CONVERSIONS_EXACT = _vector_conversions_keep_subnormals()


def _probe_native_conversions() -> bool:
    if not _VECTOR_CONVERSIONS_EXACT:
        return False
    p = _SUBNORMAL_PROBE.to(torch.float32)
    # .item() reads each converted value without building a comparison tensor (run per kernel run)
    return p[0].to(torch.bfloat16).item() != 0 and p[1].to(torch.float16).item() != 0


_native_cpu_exact = _probe_native_conversions()
set_float32_containers(_native_cpu_exact)


def refresh_native_probe() -> bool:
    """Probe the CPU's flush mode again (a kernel run calls this once at its start, so a
    ``torch.set_flush_denormal`` in between is seen without probing on every rounding). The
    answer also decides whether floating tiles are held in float32 (`dtypes.set_float32_containers`)."""
    global _native_cpu_exact
    _native_cpu_exact = _probe_native_conversions()
    set_float32_containers(_native_cpu_exact)
    return _native_cpu_exact


def native_conversions_exact(device: torch.device) -> bool:
    """True when native float conversions on `device` keep subnormals (no FTZ/DAZ)."""
    if device.type != "cpu":
        return True  # CUDA conversions are IEEE without a flush mode
    return _native_cpu_exact


def _nearest_even_fast(x: torch.Tensor, dtype: DType) -> torch.Tensor | None:
    """`nearest_even_native` of `x` to `dtype`, in `dtype`'s container (or None)."""
    got = nearest_even_native(x, dtype.torch_dtype)
    return None if got is None else got.to(dtype.container)


def nearest_even_native(x: torch.Tensor, target: torch.dtype) -> torch.Tensor | None:
    """Float64 `x` rounded to nearest-even to torch.float32, bfloat16 or float16 (`target`) with
    native conversions, or None to use the general path (another target, or a float flush
    mode is on).

    float64 -> float32 is one correctly rounded IEEE conversion (gradual underflow, overflow to
    inf, NaN kept). A direct bf16/fp16 conversion would round twice (via float32), so the float32
    step rounds to *odd* instead: the RNE result moved one unit toward zero when it went away
    from zero, then the last bit set when inexact. With >= 2 spare bits (bf16: 16, fp16: 13) the
    final native RNE is then exact. No data-dependent branch: nothing synchronises.
    """
    if target not in (torch.float32, torch.bfloat16, torch.float16) or not native_conversions_exact(x.device):
        return None
    f = x.to(torch.float32)
    if target is torch.float32:
        return f
    back = f.to(torch.float64)
    away = back.abs() > x.abs()  # includes finite values that overflowed to inf
    odd = (f.view(torch.int32) - away.to(torch.int32)) | (back != x)  # NaN: stays NaN
    return odd.view(torch.float32).to(target)


def to_float(x: torch.Tensor, dtype: DType, mode: str = "rint") -> torch.Tensor:
    """Round `x` to floating `dtype` under `mode`; returns `dtype`'s container.

    `x` holds exact values: float64, or float32 containers (values of any floating type),
    or the float32 result of one native IEEE float32 add, subtract, multiply or divide of
    values of `dtype`. A float32 `x` is already rounded to nearest-even for FP32, so taken
    as it is; for BF16 or FP16 one native conversion rounds it, which gives the exact
    value's (or exact result's) rounding (see `equiv.dtypes`)."""
    if x.dtype is torch.float32 and mode in ("rint", "none") and dtype.container is torch.float32:
        if dtype.torch_dtype is torch.float32:
            return x
        if dtype.torch_dtype in (torch.bfloat16, torch.float16):
            return x.to(dtype.torch_dtype).to(torch.float32)
    if x.dtype is not torch.float64:
        x = x.to(torch.float64)
    if dtype.torch_dtype is torch.float32 and mode == "rint" and native_conversions_exact(x.device):
        return x.to(torch.float32).to(dtype.container)  # one correctly rounded conversion
    if mode == "rint" or mode == "none":
        fast = _nearest_even_fast(x, dtype)
        if fast is not None:
            return fast
    return _to_float_general(x, dtype, mode).to(dtype.container)


def _to_float_general(x: torch.Tensor, dtype: DType, mode: str) -> torch.Tensor:
    """Rounding by scaling to an integer quantum: every mode, and exact under any flush mode."""
    fmt = dtype.fmt
    _, exp = torch.frexp(x.abs())
    e = torch.clamp(exp.to(torch.int64) - 1, min=fmt.emin)
    quantum = torch.ldexp(torch.ones_like(x), (e - fmt.mantissa_bits).to(x.dtype))
    r = round_integer(x / quantum, mode) * quantum
    big = r.abs() > fmt.max_finite
    if fmt.finite_only:  # saturating conversion (see the module docstring): no infinity
        r = torch.where(big | torch.isinf(x), torch.sign(x) * fmt.max_finite, r)
        return torch.where(r == 0, torch.copysign(torch.zeros_like(r), x), r)  # NaN: r is NaN already
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
        return to_float(x, dtype, mode)  # (it widens what it cannot round natively)
    return to_int(x, dtype, mode)


def wrap_int(x: torch.Tensor, dtype: DType) -> torch.Tensor:
    """Two's-complement wrap of int64 container values into `dtype` (integer arithmetic)."""
    lo, hi = dtype.int_range
    span = hi - lo + 1
    if span >= 2**64:
        return x
    # span is a power of two: the low bits of x - lo are its remainder (two's complement),
    # an AND where torch.remainder would divide
    return ((x - lo) & (span - 1)) + lo
