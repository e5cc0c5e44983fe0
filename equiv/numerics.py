"""Exact floating-point numerics for comparing kernel outputs.

Everything here is built from integer bit manipulation and float64 operations
that are exact (multiplication by powers of two, comparisons) or correctly
rounded by IEEE 754 (subtraction, ``torch.round``).  No libm functions
(``log2``, ``exp2``, ``pow``, ...) are used, because their last-bit results may
differ between CPU and CUDA builds; with this restriction every function
returns bit-identical results on any device.

Conventions:

* A *format* is one of :data:`BF16`, :data:`FP16`, :data:`FP32`, :data:`FP8E4M3FN`.
* ``floor_log2(|x|)`` of a float64 is read from its exponent field, never
  computed with ``log2``.
* Float64 tensors are used as the "wide" carrier for exact values of every
  format (all three formats embed exactly in float64, subnormals included).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "FloatFormat",
    "BF16",
    "FP16",
    "FP32",
    "FP8E4M3FN",
    "FORMATS",
    "format_of",
    "round_to",
    "cast",
    "ordinal",
    "ulp_distance",
    "MISMATCH",
    "ulp_of",
    "ulp_error",
    "rounded_ulp_distance",
    "abs_error",
]

#: Sentinel distance for pairs that cannot be compared (NaN vs number, inf vs
#: anything but the same inf).  Far above any real distance (< 2**33) and still
#: safe to add a few of without overflowing int64.
MISMATCH: int = 2**62

_INF = float("inf")

# float64 layout constants.
_F64_MANT_BITS = 52
_F64_BIAS = 1023
_F64_EXP_MASK = 0x7FF


@dataclass(frozen=True)
class FloatFormat:
    """An IEEE-754 style binary format with gradual underflow and infinities, or, with
    `finite_only` (the OCP FP8 "fn" kind), none: the top exponent holds normal numbers and
    only its all-ones significand is NaN."""

    name: str
    torch_dtype: torch.dtype
    mantissa_bits: int  # stored fraction bits (without the implicit leading 1)
    exponent_bits: int
    finite_only: bool = False

    @property
    def precision(self) -> int:
        """Significand bits including the implicit leading bit."""
        return self.mantissa_bits + 1

    @property
    def bias(self) -> int:
        return (1 << (self.exponent_bits - 1)) - 1

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal number."""
        return 1 - self.bias

    @property
    def emax(self) -> int:
        """Exponent of the largest finite number."""
        return self.bias + (1 if self.finite_only else 0)

    @property
    def total_bits(self) -> int:
        return 1 + self.exponent_bits + self.mantissa_bits

    @property
    def max_finite(self) -> float:
        # (2 - 2**-m) * 2**emax, written with exact integer scaling; a finite-only format
        # gives its all-ones significand at emax to NaN, so one step less.
        top = (1 << self.precision) - (2 if self.finite_only else 1)
        return float(top * 2.0 ** (self.emax - self.mantissa_bits))

    @property
    def min_normal(self) -> float:
        return 2.0**self.emin

    @property
    def min_subnormal(self) -> float:
        return 2.0 ** (self.emin - self.mantissa_bits)

    def __repr__(self) -> str:
        return f"FloatFormat({self.name})"


BF16 = FloatFormat("bf16", torch.bfloat16, mantissa_bits=7, exponent_bits=8)
FP16 = FloatFormat("fp16", torch.float16, mantissa_bits=10, exponent_bits=5)
FP32 = FloatFormat("fp32", torch.float32, mantissa_bits=23, exponent_bits=8)
# pl.FP8E4M3FN: bias 7, largest finite 448, subnormals down to 2**-9, no infinities.
FP8E4M3FN = FloatFormat("fp8e4m3fn", torch.float8_e4m3fn, mantissa_bits=3, exponent_bits=4, finite_only=True)

FORMATS: dict[str, FloatFormat] = {"bf16": BF16, "fp16": FP16, "fp32": FP32, "fp8e4m3fn": FP8E4M3FN}

_BY_DTYPE: dict[torch.dtype, FloatFormat] = {f.torch_dtype: f for f in FORMATS.values()}
_ALIASES: dict[str, FloatFormat] = {
    "bf16": BF16,
    "bfloat16": BF16,
    "torch.bfloat16": BF16,
    "fp16": FP16,
    "f16": FP16,
    "float16": FP16,
    "half": FP16,
    "torch.float16": FP16,
    "torch.half": FP16,
    "fp32": FP32,
    "f32": FP32,
    "float32": FP32,
    "float": FP32,
    "torch.float32": FP32,
    "torch.float": FP32,
    "fp8e4m3fn": FP8E4M3FN,
    "float8_e4m3fn": FP8E4M3FN,
    "torch.float8_e4m3fn": FP8E4M3FN,
}


def format_of(dtype: torch.dtype | str | FloatFormat) -> FloatFormat:
    """Return the :class:`FloatFormat` for a torch dtype or a name like ``"bf16"``."""
    if isinstance(dtype, FloatFormat):
        return dtype
    if isinstance(dtype, torch.dtype):
        fmt = _BY_DTYPE.get(dtype)
        if fmt is None:
            raise ValueError(
                f"unsupported dtype {dtype}; expected one of "
                f"{', '.join(str(d) for d in _BY_DTYPE)}"
            )
        return fmt
    if isinstance(dtype, str):
        fmt = _ALIASES.get(dtype.strip().lower())
        if fmt is None:
            raise ValueError(
                f"unknown float format name {dtype!r}; expected one of {sorted(FORMATS)}"
            )
        return fmt
    raise ValueError(f"cannot interpret {dtype!r} as a float format")


# ---------------------------------------------------------------------------
# float64 bit helpers
# ---------------------------------------------------------------------------


def _as_f64(x: torch.Tensor, what: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{what} must be a floating-point tensor, got {x.dtype}")
    # Every supported float dtype widens to float64 exactly.  Detached because
    # these are measurements, and bit views are not differentiable.
    return x.detach().to(torch.float64)


def _floor_log2(x: torch.Tensor) -> torch.Tensor:
    """Unbiased exponent of float64 ``x`` as int64, read from the bits.

    Exact for normal float64 values.  float64 zeros/subnormals give -1023 (a
    lower bound; all callers clamp at a format's emin >= -126), inf/NaN give 1024.
    """
    bits = x.view(torch.int64)
    return ((bits >> _F64_MANT_BITS) & _F64_EXP_MASK) - _F64_BIAS


def _pow2(e: torch.Tensor) -> torch.Tensor:
    """Exact float64 ``2**e`` for int64 ``e`` in the normal range [-1022, 1023]."""
    return ((e + _F64_BIAS) << _F64_MANT_BITS).view(torch.float64)


def _quantum_exponent(x64: torch.Tensor, fmt: FloatFormat) -> torch.Tensor:
    """log2 of the spacing of ``fmt`` at |x64| (subnormal spacing below emin)."""
    return torch.clamp(_floor_log2(x64), min=fmt.emin) - fmt.mantissa_bits


# ---------------------------------------------------------------------------
# rounding
# ---------------------------------------------------------------------------


def round_to(x: torch.Tensor, fmt: FloatFormat) -> torch.Tensor:
    """Round float64 values once to ``fmt`` (nearest, ties to even); returns float64.

    Subnormals are kept, overflow goes to ±inf (a finite-only format: to its largest
    finite value), NaN stays NaN and the sign of zero is preserved.  Unlike ``x.to(torch.bfloat16)`` this never double-rounds
    through float32.
    """
    fmt = format_of(fmt)
    x64 = _as_f64(x)
    # Quantum q = 2**qe; for inf/NaN qe is huge but still a valid power of two
    # (inf*anything = inf, NaN propagates), so no special-casing is needed here.
    qe = _quantum_exponent(x64, fmt)
    # Scaling by powers of two is exact: x/q < 2**precision, and the smallest
    # q (2**-149) scales even float64 subnormals into the normal range.
    scaled = x64 * _pow2(-qe)
    # torch.round is round-half-to-even, i.e. IEEE roundTiesToEven to an integer;
    # it keeps the sign of zero (round(-0.3) == -0.0).
    r = torch.round(scaled) * _pow2(qe)
    # Values that reach 2**(emax+1) (or were already beyond) overflow.
    # The rounding threshold max_finite + ulp/2 itself ties to the even
    # 2**(emax+1), so it correctly becomes inf.
    overflow = r.abs() > fmt.max_finite
    if fmt.finite_only:  # no infinity to overflow to: saturate, as the device's cast and torch's do
        return torch.where(overflow, torch.copysign(torch.full_like(r, fmt.max_finite), r), r)
    return torch.where(overflow, torch.copysign(torch.full_like(r, float("inf")), r), r)


def cast(x: torch.Tensor, fmt: FloatFormat) -> torch.Tensor:
    """Round any float tensor to ``fmt`` once and return it in ``fmt.torch_dtype``."""
    fmt = format_of(fmt)
    # The final .to() only converts values that are already representable,
    # so it is exact on any device.
    return round_to(_as_f64(x), fmt).to(fmt.torch_dtype)


# ---------------------------------------------------------------------------
# ordinals and integer ULP distance
# ---------------------------------------------------------------------------

_INT_VIEW = {
    torch.bfloat16: torch.int16,
    torch.float16: torch.int16,
    torch.float32: torch.int32,
    torch.float8_e4m3fn: torch.int8,
}


def _check_fmt_dtype(x: torch.Tensor, what: str) -> FloatFormat:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _INT_VIEW:
        raise ValueError(f"{what} must be bfloat16, float16, float32 or float8_e4m3fn, got {x.dtype}")
    return _BY_DTYPE[x.dtype]


def ordinal(x: torch.Tensor) -> torch.Tensor:
    """Map bf16/fp16/fp32 values to int64 so that adjacent values differ by 1.

    ±0 both map to 0, ``ordinal(+inf) == ordinal(max_finite) + 1`` and the map
    is odd (``ordinal(-x) == -ordinal(x)``).  NaN results are unspecified.
    """
    fmt = _check_fmt_dtype(x, "x")
    nbits = fmt.total_bits
    # Reinterpret as unsigned bit pattern in int64 (the int16/int32 view is
    # sign-extended, hence the mask).
    bits = x.detach().view(_INT_VIEW[x.dtype]).to(torch.int64) & ((1 << nbits) - 1)
    # Sign-magnitude -> two's-complement order: magnitude bits are already
    # monotone in |x| for IEEE formats.
    mag = bits & ((1 << (nbits - 1)) - 1)
    neg = (bits >> (nbits - 1)) != 0
    return torch.where(neg, -mag, mag)


def ulp_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Number of representable steps between ``a`` and ``b`` (same dtype), int64.

    NaN vs NaN -> 0, NaN vs number -> MISMATCH; same-signed infinities -> 0,
    an infinity vs anything else -> MISMATCH.
    """
    _check_fmt_dtype(a, "a")
    _check_fmt_dtype(b, "b")
    if a.dtype != b.dtype:
        raise ValueError(f"ulp_distance needs equal dtypes, got {a.dtype} and {b.dtype}")
    d = (ordinal(a) - ordinal(b)).abs_()
    # The NaN/inf rules only touch pairs with a non-finite member: applied to those alone
    # (most outputs have none, and then nothing more is read).
    special = ~(_isfinite(a) & _isfinite(b))
    if bool(special.any()):
        if special.shape != d.shape:
            special = special.expand(d.shape)
        sa, sb = a.expand(d.shape)[special], b.expand(d.shape)[special]
        d[special] = _special_distance(sa, sb, d[special])
    return d


def _isfinite(x: torch.Tensor) -> torch.Tensor:
    # |x| < inf is false for NaN and ±inf alike, and several times faster than torch.isfinite;
    # torch has neither for float8, whose widening to float64 is exact.
    return (x if x.dtype != torch.float8_e4m3fn else x.to(torch.float64)).abs() < _INF


def _special_distance(a: torch.Tensor, b: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """:func:`ulp_distance`'s NaN/inf rules applied to the ordinal distances `d` of `a` and `b`."""
    if a.dtype == torch.float8_e4m3fn:  # torch has no isnan/isinf for float8; widening is exact
        a, b = a.to(torch.float64), b.to(torch.float64)
    nan_a, nan_b = torch.isnan(a), torch.isnan(b)
    inf_a, inf_b = torch.isinf(a), torch.isinf(b)
    mismatch = torch.full_like(d, MISMATCH)
    zero = torch.zeros_like(d)
    # Infinities only match the identical infinity; a == b is exact for infs.
    d = torch.where(inf_a | inf_b, torch.where(a == b, zero, mismatch), d)
    return torch.where(nan_a | nan_b, torch.where(nan_a & nan_b, zero, mismatch), d)


# ---------------------------------------------------------------------------
# fractional ULP error against a float64 reference
# ---------------------------------------------------------------------------


def ulp_of(ref: torch.Tensor, fmt: FloatFormat) -> torch.Tensor:
    """Spacing of ``fmt`` at |ref| as float64.

    ``2**(max(floor_log2|ref|, emin) - mantissa_bits)``: the subnormal spacing
    for zero and tiny refs, the top-binade spacing for |ref| >= 2**(emax+1).
    NaN/inf refs give NaN.
    """
    fmt = format_of(fmt)
    r64 = _as_f64(ref, "ref")
    e = torch.clamp(_floor_log2(r64), min=fmt.emin, max=fmt.emax) - fmt.mantissa_bits
    u = _pow2(e)
    return torch.where(torch.isfinite(r64), u, torch.full_like(u, float("nan")))


def _nan_inf_rules(
    x64: torch.Tensor, r64: torch.Tensor, err: torch.Tensor, fmt: FloatFormat | None
) -> torch.Tensor:
    """Apply the shared NaN/inf conventions of :func:`ulp_error` and :func:`abs_error`."""
    nan_x, nan_r = torch.isnan(x64), torch.isnan(r64)
    inf = torch.full_like(err, float("inf"))
    zero = torch.zeros_like(err)
    # An infinite x is exact when the reference itself rounds to that infinity
    # in x's format (covers ref == inf and finite refs past the overflow threshold).
    ref_rounded = round_to(r64, fmt) if fmt is not None else r64
    any_inf = torch.isinf(x64) | torch.isinf(r64)
    err = torch.where(any_inf, torch.where(torch.isinf(x64) & (ref_rounded == x64), zero, inf), err)
    err = torch.where(nan_x | nan_r, torch.where(nan_x & nan_r, zero, inf), err)
    return err


def ulp_error(x: torch.Tensor, ref: torch.Tensor, fmt: FloatFormat) -> torch.Tensor:
    """Fractional error ``|x - ref| / ulp_of(ref, fmt)`` as float64.

    Both NaN -> 0, one NaN -> inf; x infinite and ``round_to(ref, fmt) == x`` -> 0;
    any other infinity -> inf.
    """
    fmt = format_of(fmt)
    x64 = _as_f64(x)
    r64 = _as_f64(ref, "ref")
    # One correctly rounded subtraction, then an exact division by a power of two.
    err = (x64 - r64).abs_().div_(_spacing(r64, fmt))
    # Where both are finite the NaN/inf rules change nothing: they run on the other elements
    # alone (rounding the reference to fmt only there). A finite largest error (NaN fails the
    # test) means every x and ref was finite: an infinity or NaN in either makes its error
    # inf or NaN.
    if err.numel() and bool(err.max() < _INF):
        return err
    special = ~(_isfinite(x64) & _isfinite(r64))
    if bool(special.any()):
        if special.shape != err.shape:
            special = special.expand(err.shape)
        xs, rs = x64.expand(err.shape)[special], r64.expand(err.shape)[special]
        err[special] = _nan_inf_rules(xs, rs, err[special], fmt)
    return err


def _spacing(r64: torch.Tensor, fmt: FloatFormat) -> torch.Tensor:
    """:func:`ulp_of` for finite float64 `r64` (non-finite elements get some finite power of two,
    where ulp_of gives NaN), built in place from the exponent field: the clamped biased exponent
    less the mantissa bits is the biased exponent of the spacing."""
    e = (r64.view(torch.int64) >> _F64_MANT_BITS).bitwise_and_(_F64_EXP_MASK)
    e.clamp_(fmt.emin + _F64_BIAS, fmt.emax + _F64_BIAS).sub_(fmt.mantissa_bits).bitwise_left_shift_(_F64_MANT_BITS)
    return e.view(torch.float64)


def rounded_ulp_distance(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Integer ULP distance from ``x`` to ``ref`` rounded (ties-to-even) to x's format."""
    fmt = _check_fmt_dtype(x, "x")
    return ulp_distance(x, cast(_as_f64(ref, "ref"), fmt))


def abs_error(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Absolute error ``|x - ref|`` as float64, with the NaN/inf rules of :func:`ulp_error`.

    Useful where ref is near zero and a relative measure blows up.  When x is
    bf16/fp16/fp32, an infinite x matches any ref that rounds to it in that
    format; for other dtypes the infinity must match exactly.
    """
    x64 = _as_f64(x)
    r64 = _as_f64(ref, "ref")
    fmt = _BY_DTYPE.get(x.dtype)
    return _nan_inf_rules(x64, r64, (x64 - r64).abs(), fmt)
