"""Tests for equiv.numerics against independent oracles.

Oracles:
* fp16: numpy's float64 -> float16 cast (rounds directly, correctly).
* fp32: numpy's float64 -> float32 cast (a hardware RNE conversion).
* bf16: the oracle enumerates all 65536 bit patterns, sorts their values and
  picks the nearest neighbour, breaking ties towards the even bit pattern; it
  depends on no library's conversion.  It is cross-checked against numpy for
  fp16, and against ml_dtypes for bf16 on float32 inputs only, where every
  release of ml_dtypes rounds once (from float64 some releases round through
  float32, which is a second rounding).
* ordinals / ulp spacing: ranks in the sorted enumeration, np.nextafter walks,
  np.spacing and np.finfo / ml_dtypes.finfo.
"""

from __future__ import annotations

import functools
import warnings

import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from equiv.numerics import (
    BF16,
    FORMATS,
    FP16,
    FP32,
    MISMATCH,
    FloatFormat,
    abs_error,
    cast,
    format_of,
    ordinal,
    round_to,
    rounded_ulp_distance,
    ulp_distance,
    ulp_error,
    ulp_of,
)

ALL_FMTS = [BF16, FP16, FP32]
INF = float("inf")
NAN = float("nan")

_NP_DTYPE = {"bf16": ml_dtypes.bfloat16, "fp16": np.float16, "fp32": np.float32}
_NP_UINT = {"bf16": np.uint16, "fp16": np.uint16, "fp32": np.uint32}
_NP_INT = {"bf16": np.int16, "fp16": np.int16, "fp32": np.int32}


# ---------------------------------------------------------------------------
# helpers and oracles
# ---------------------------------------------------------------------------


def t64(values) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float64))


def to_torch(values: np.ndarray, fmt: FloatFormat) -> torch.Tensor:
    """numpy float64 values (already representable) -> torch tensor of fmt, via bit patterns."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pats = np.asarray(values, dtype=np.float64).astype(_NP_DTYPE[fmt.name])
    ints = pats.view(_NP_INT[fmt.name])
    return torch.from_numpy(ints.copy()).view(fmt.torch_dtype)


def from_patterns(pats: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Bit patterns -> float64 values, decoded by numpy / ml_dtypes (not by torch)."""
    with np.errstate(invalid="ignore"):  # NaN patterns
        return pats.astype(_NP_UINT[fmt.name]).view(_NP_DTYPE[fmt.name]).astype(np.float64)


def assert_same_floats(actual: torch.Tensor | np.ndarray, expected: np.ndarray) -> None:
    """Equal values, equal NaN positions and equal signs of zero."""
    a = actual.double().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    bad = (nan_a != nan_e) | (~nan_e & ((a != e) | (np.signbit(a) != np.signbit(e))))
    if bad.any():
        i = np.flatnonzero(bad.ravel())[:10]
        raise AssertionError(
            f"{bad.sum()} mismatches, e.g. at {i}: "
            f"input-order actual={a.ravel()[i].tolist()} expected={e.ravel()[i].tolist()}"
        )


@functools.lru_cache(maxsize=None)
def _table(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted non-negative finite values of a 16-bit format plus a virtual top.

    The virtual top is 2**(emax+1) (max + top spacing) standing in for +inf, so
    that the usual nearest/ties-to-even rule yields overflow at max + ulp/2.
    Returns (values, pattern_is_even).
    """
    pats = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    with np.errstate(invalid="ignore"):  # NaN patterns
        vals = pats.view(_NP_DTYPE[name]).astype(np.float64)
    keep = np.isfinite(vals) & ~np.signbit(vals)
    v, p = vals[keep], pats[keep]
    order = np.argsort(v, kind="stable")
    v, p = v[order], p[order]
    assert np.all(np.diff(v) > 0)
    top = v[-1] + (v[-1] - v[-2])
    inf_pat = pats[np.isposinf(vals)][0]
    return np.append(v, top), (np.append(p, inf_pat) & 1) == 0


def oracle_round(x: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Reference float64 -> fmt rounding (RNE) returning float64 values."""
    x = np.asarray(x, dtype=np.float64)
    if fmt is FP32:
        with np.errstate(over="ignore", invalid="ignore"):
            return x.astype(np.float32).astype(np.float64)
    v, even = _table(fmt.name)
    a = np.abs(x)
    af = np.where(np.isnan(a), 0.0, a)
    idx = np.searchsorted(v, af, side="left")  # v[idx-1] < af <= v[idx]
    over = idx >= len(v)
    ic = np.minimum(idx, len(v) - 1)
    hi, lo = v[ic], v[np.maximum(ic - 1, 0)]
    mid = (lo + hi) / 2  # exact in float64 for 16-bit formats
    pick_hi = (hi == af) | (af > mid) | ((af == mid) & even[ic])
    r = np.where(pick_hi, hi, lo)
    r = np.where(over | (r == v[-1]), np.inf, r)
    return np.where(np.isnan(x), np.nan, np.copysign(r, x))


def _representable_sample(fmt: FloatFormat) -> tuple[np.ndarray, np.ndarray]:
    """(values, next larger value) for non-negative finite values of fmt.

    All values for 16-bit formats; for fp32 the regions around 0, min_normal,
    1.0, the top of the range, plus random patterns.  "Next" after max_finite is
    2**(emax+1), the overflow boundary.
    """
    if fmt is FP32:
        rng = np.random.default_rng(1234)
        pats = np.concatenate(
            [
                np.arange(0, 3000),
                np.arange(0x00800000 - 1500, 0x00800000 + 1500),
                np.arange(0x3F800000 - 1500, 0x3F800000 + 1500),
                np.arange(0x7F7FFFFF - 3000, 0x7F7FFFFF + 1),
                rng.integers(0, 0x7F800000, 30000),
            ]
        ).astype(np.uint32)
        f = pats.view(np.float32)
        with np.errstate(over="ignore"):
            nxt = np.nextafter(f, np.float32(np.inf)).astype(np.float64)
        nxt[np.isinf(nxt)] = 2.0**128
        return f.astype(np.float64), nxt
    v, _ = _table(fmt.name)
    return v[:-1], v[1:]


def _interesting_inputs(fmt: FloatFormat) -> np.ndarray:
    """Representable values, exact midpoints, and float64 neighbours of both, both signs."""
    vals, nxt = _representable_sample(fmt)
    mids = (vals + nxt) / 2
    parts = [vals, mids]
    for p in (vals, mids):
        parts += [np.nextafter(p, np.inf), np.nextafter(p, -np.inf)]
    parts.append(
        np.array([0.0, -0.0, INF, -INF, NAN, 5e-324, 2.2250738585072014e-308, 1e308, 1.7976931348623157e308])
    )
    x = np.concatenate(parts)
    return np.concatenate([x, -x])


# ---------------------------------------------------------------------------
# formats
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ALL_FMTS, ids=lambda f: f.name)
def test_format_constants_match_finfo(fmt: FloatFormat) -> None:
    fi = ml_dtypes.finfo(_NP_DTYPE[fmt.name]) if fmt is BF16 else np.finfo(_NP_DTYPE[fmt.name])
    assert fmt.max_finite == float(fi.max)
    assert fmt.min_normal == float(fi.tiny)
    assert fmt.min_subnormal == float(fi.smallest_subnormal)
    assert fmt.mantissa_bits == fi.nmant
    assert fmt.exponent_bits == fi.nexp
    assert fmt.precision == fi.nmant + 1
    assert fmt.emin == fi.minexp
    assert fmt.emax == fi.maxexp - 1
    assert FORMATS[fmt.name] is fmt
    assert torch.finfo(fmt.torch_dtype).max == fmt.max_finite


def test_format_of() -> None:
    assert format_of(torch.bfloat16) is BF16
    assert format_of(torch.float16) is FP16
    assert format_of(torch.float32) is FP32
    for name, fmt in [("bf16", BF16), ("bfloat16", BF16), ("fp16", FP16), ("float16", FP16),
                      ("half", FP16), ("fp32", FP32), ("float32", FP32), ("FP32", FP32)]:
        assert format_of(name) is fmt
    for bad in [torch.float64, torch.int32, "fp8", "float64", 3]:
        with pytest.raises(ValueError):
            format_of(bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# round_to / cast
# ---------------------------------------------------------------------------


def test_bf16_rounds_once_just_above_a_midpoint() -> None:
    # 1 + 2**-8 + 2**-30 lies just above the bf16 midpoint between 1 and 1 + 2**-7. Rounded
    # once it goes up; a conversion through float32 would first land on the midpoint and then
    # tie down to 1.0, which is what the enumeration oracle exists to rule out.
    x = np.array([1 + 2.0**-8 + 2.0**-30])
    assert oracle_round(x, BF16)[0] == 1 + 2.0**-7
    assert round_to(t64(x), BF16).item() == 1 + 2.0**-7
    assert cast(t64(x), BF16).item() == 1 + 2.0**-7


def test_enumeration_oracle_agrees_with_ml_dtypes_on_float32_inputs() -> None:
    # float32 -> bfloat16 is a single rounding, so ml_dtypes is a fair second opinion there.
    x = _interesting_inputs(BF16)
    with np.errstate(over="ignore", invalid="ignore"):
        x32 = x.astype(np.float32)
    rng = np.random.default_rng(11)
    random32 = rng.integers(0, 2**32, size=200_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    x32 = np.concatenate([x32, random32])
    with np.errstate(invalid="ignore"):  # NaN patterns
        expected = x32.astype(ml_dtypes.bfloat16).astype(np.float64)
        assert_same_floats(oracle_round(x32.astype(np.float64), BF16), expected)


def test_enumeration_oracle_agrees_with_numpy_fp16() -> None:
    x = _interesting_inputs(FP16)
    with np.errstate(over="ignore"):
        expected = x.astype(np.float16).astype(np.float64)
    assert_same_floats(oracle_round(x, FP16), expected)


@pytest.mark.parametrize("fmt", ALL_FMTS, ids=lambda f: f.name)
def test_round_to_matches_oracle_on_ties_and_neighbours(fmt: FloatFormat) -> None:
    x = _interesting_inputs(fmt)
    out = round_to(t64(x), fmt)
    assert out.dtype == torch.float64
    assert_same_floats(out, oracle_round(x, fmt))


@pytest.mark.parametrize("fmt", ALL_FMTS, ids=lambda f: f.name)
def test_round_to_matches_oracle_on_random_values(fmt: FloatFormat) -> None:
    rng = np.random.default_rng(7)
    x = np.concatenate(
        [
            rng.standard_normal(20000) * fmt.max_finite / 4,
            rng.standard_normal(20000),
            rng.standard_normal(20000) * fmt.min_normal,
            rng.standard_normal(20000) * fmt.min_subnormal * 4,
            # random float64 bit patterns: mostly far outside the format's range
            rng.integers(-(2**63), 2**63 - 1, 20000, dtype=np.int64).view(np.float64),
        ]
    )
    assert_same_floats(round_to(t64(x), fmt), oracle_round(x, fmt))


@pytest.mark.parametrize("fmt", ALL_FMTS, ids=lambda f: f.name)
def test_exact_ties_go_to_even(fmt: FloatFormat) -> None:
    u = 2.0**-fmt.mantissa_bits  # spacing in [1, 2)
    # 1 (even) | 1+u (odd) | 1+2u (even)
    assert round_to(t64([1 + u / 2]), fmt).item() == 1.0  # tie, lower neighbour even
    assert round_to(t64([1 + 1.5 * u]), fmt).item() == 1 + 2 * u  # tie, upper neighbour even
    assert round_to(t64([-(1 + u / 2)]), fmt).item() == -1.0
    assert round_to(t64([-(1 + 1.5 * u)]), fmt).item() == -(1 + 2 * u)
    # Just off the tie goes to the nearer neighbour.
    assert round_to(t64([np.nextafter(1 + u / 2, 2)]), fmt).item() == 1 + u
    assert round_to(t64([np.nextafter(1 + 1.5 * u, 0)]), fmt).item() == 1 + u
    # Across a binade boundary: the midpoint between 2 - u and 2 ties up to 2 (even).
    assert round_to(t64([2 - u / 2]), fmt).item() == 2.0
    assert round_to(t64([np.nextafter(2 - u / 2, 0)]), fmt).item() == 2 - u


@pytest.mark.parametrize("fmt", ALL_FMTS, ids=lambda f: f.name)
def test_subnormals_and_zero_crossing(fmt: FloatFormat) -> None:
    s, n = fmt.min_subnormal, fmt.min_normal
    x = np.array([s, s / 2, 1.5 * s, 2.5 * s, np.nextafter(s / 2, 1), np.nextafter(s / 2, 0),
                  s / 4, n - s, n - s / 2, n - s / 2 - s / 4, n, n + s / 2, n + 1.5 * s, 5e-324])
    expected = np.array([s, 0.0, 2 * s, 2 * s, s, 0.0, 0.0, n - s, n, n - s, n, n, n + 2 * s, 0.0])
    assert_same_floats(round_to(t64(x), fmt), expected)
    # Gradual underflow: subnormals are kept, not flushed.
    assert round_to(t64([3 * s]), fmt).item() == 3 * s
    # Negative side mirrors, including -0.0 for underflow to zero.
    assert_same_floats(round_to(t64(-x), fmt), -expected)
    assert_same_floats(round_to(t64([-0.0, 0.0, -s / 2, -5e-324]), fmt), np.array([-0.0, 0.0, -0.0, -0.0]))


@pytest.mark.parametrize("fmt", ALL_FMTS, ids=lambda f: f.name)
def test_overflow_threshold(fmt: FloatFormat) -> None:
    m = fmt.max_finite
    half_ulp = 2.0 ** (fmt.emax - fmt.mantissa_bits - 1)
    thr = m + half_ulp  # exact midpoint between max and 2**(emax+1): ties to even -> inf
    x = np.array([m, thr, np.nextafter(thr, 0), np.nextafter(thr, INF), 2.0 ** (fmt.emax + 1), 1e308, INF])
    expected = np.array([m, INF, m, INF, INF, INF, INF])
    assert_same_floats(round_to(t64(x), fmt), expected)
    assert_same_floats(round_to(t64(-x), fmt), -expected)
    assert_same_floats(oracle_round(np.concatenate([x, -x]), fmt), np.concatenate([expected, -expected]))


@pytest.mark.parametrize("fmt", ALL_FMTS, ids=lambda f: f.name)
def test_nan_inf_passthrough(fmt: FloatFormat) -> None:
    out = round_to(t64([NAN, INF, -INF, -NAN]), fmt)
    assert torch.isnan(out[0]) and torch.isnan(out[3])
    assert out[1].item() == INF and out[2].item() == -INF


@pytest.mark.parametrize("fmt", ALL_FMTS, ids=lambda f: f.name)
def test_cast(fmt: FloatFormat) -> None:
    x = _interesting_inputs(fmt)[::7]
    c = cast(t64(x), fmt)
    assert c.dtype == fmt.torch_dtype
    assert_same_floats(c, oracle_round(x, fmt))
    # Lower-precision inputs: float32 -> bf16/fp16 is a single rounding, so
    # torch's own conversion is a valid oracle there.
    f32 = torch.randn(1000, dtype=torch.float32) * 3
    if fmt is not FP32:
        assert torch.equal(cast(f32, fmt), f32.to(fmt.torch_dtype))
    # Already-representable inputs pass unchanged, including non-contiguous and 0-d.
    y = cast(torch.randn(8, 5, dtype=torch.float64), fmt).t()
    assert torch.equal(cast(y, fmt), y)
    assert torch.equal(round_to(y, fmt), y.double())
    assert cast(torch.tensor(1.0, dtype=torch.float64), fmt).shape == ()
    with pytest.raises(TypeError):
        cast(torch.arange(3), fmt)


def _near_tie_values(fmt: FloatFormat):
    """Strategy: a format value, its midpoint with the next value, nudged by a few float64 ulps."""
    top_pat = {"bf16": 0x7F7F, "fp16": 0x7BFF, "fp32": 0x7F7FFFFF}[fmt.name]

    def build(pat: int, kind: int, nudge: int, neg: bool) -> float:
        v = from_patterns(np.array([pat]), fmt)[0]
        nxt = from_patterns(np.array([pat + 1]), fmt)[0]
        if np.isinf(nxt):
            nxt = 2.0 ** (fmt.emax + 1)
        x = v if kind == 0 else (v + nxt) / 2
        for _ in range(abs(nudge)):
            x = np.nextafter(x, np.inf if nudge > 0 else -np.inf)
        return float(-x if neg else x)

    return st.builds(
        build,
        st.integers(0, top_pat),
        st.integers(0, 1),
        st.integers(-2, 2),
        st.booleans(),
    )


@pytest.mark.parametrize("fmt", ALL_FMTS, ids=lambda f: f.name)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_round_to_property(fmt: FloatFormat, data: st.DataObject) -> None:
    m = fmt.max_finite
    elements = st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.floats(min_value=-4 * m, max_value=4 * m),
        st.floats(min_value=-4 * fmt.min_normal, max_value=4 * fmt.min_normal),
        _near_tie_values(fmt),
    )
    xs = np.array(data.draw(st.lists(elements, min_size=1, max_size=32)), dtype=np.float64)
    assert_same_floats(round_to(t64(xs), fmt), oracle_round(xs, fmt))


# ---------------------------------------------------------------------------
# ordinal / ulp_distance
# ---------------------------------------------------------------------------


def _all_16bit(fmt: FloatFormat) -> tuple[torch.Tensor, np.ndarray]:
    pats = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    vals = from_patterns(pats, fmt)
    return torch.from_numpy(pats.view(np.int16).copy()).view(fmt.torch_dtype), vals


@pytest.mark.parametrize("fmt", [BF16, FP16], ids=lambda f: f.name)
def test_ordinal_consecutive_over_all_values(fmt: FloatFormat) -> None:
    t, vals = _all_16bit(fmt)
    fin = np.isfinite(vals)
    order = np.argsort(vals[fin], kind="stable")
    sorted_vals = vals[fin][order]
    ords = ordinal(t[torch.from_numpy(np.flatnonzero(fin)[order])]).numpy()
    assert ords.dtype == np.int64
    steps = np.diff(ords)
    same = np.diff(sorted_vals) == 0  # only -0 / +0
    assert same.sum() == 1
    assert np.all(steps[same] == 0) and np.all(steps[~same] == 1)
    # Zero sits at ordinal 0 and the map is centred there.
    assert ordinal(to_torch(np.array([-0.0, 0.0]), fmt)).tolist() == [0, 0]
    assert ords[0] == -ords[-1]
    # Infinities extend the order by one step.
    inf_ord = ordinal(to_torch(np.array([INF, -INF, fmt.max_finite, -fmt.max_finite]), fmt)).tolist()
    assert inf_ord == [ords[-1] + 1, ords[0] - 1, ords[-1], ords[0]]


def _fp32_walk() -> np.ndarray:
    """np.nextafter walks through 0, the subnormal/normal boundary, 1.0 and max -> inf."""
    def walk(start: float, n: int) -> np.ndarray:
        out = [np.float32(start)]
        with np.errstate(over="ignore"):  # max -> inf
            for _ in range(n):
                out.append(np.nextafter(out[-1], np.float32(np.inf)))
        return np.array(out, dtype=np.float32)

    return np.concatenate(
        [
            walk(-np.float32(FP32.min_subnormal) * 50, 100),  # crosses -0 (walk skips +0)
            walk(np.float32(FP32.min_normal) - np.float32(FP32.min_subnormal) * 50, 100),
            walk(np.nextafter(np.float32(1), np.float32(0)) - np.float32(2.0**-24) * 50, 100),
            walk(np.float32(FP32.max_finite), 1),  # max -> inf
        ]
    )


def test_ordinal_fp32_nextafter_walks() -> None:
    seg = 101
    w = _fp32_walk()
    ords = ordinal(torch.from_numpy(w)).numpy()
    for start in (0, seg, 2 * seg):
        assert np.all(np.diff(ords[start:start + seg]) == 1)
    assert 0.0 in w[:seg] and np.signbit(w[:seg][w[:seg] == 0]).all()  # the walk passes -0.0
    assert ordinal(torch.tensor([-0.0, 0.0, 2.0**-149, -(2.0**-149)])).tolist() == [0, 0, 1, -1]
    assert ords[-1] - ords[-2] == 1 and np.isinf(w[-1])
    # ulp_distance counts walk steps.
    t = torch.from_numpy(w[:seg])
    assert ulp_distance(t, t[:1].expand(seg)).tolist() == list(range(seg))


@pytest.mark.parametrize("fmt", ALL_FMTS, ids=lambda f: f.name)
def test_ordinal_odd_and_rejects_other_dtypes(fmt: FloatFormat) -> None:
    x = cast(torch.randn(1000, dtype=torch.float64) * 100, fmt)
    assert torch.equal(ordinal(-x), -ordinal(x))
    with pytest.raises(ValueError):
        ordinal(torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError):
        ulp_distance(x, x.double())


@pytest.mark.parametrize("fmt", ALL_FMTS, ids=lambda f: f.name)
def test_ulp_distance_special_rules(fmt: FloatFormat) -> None:
    m, s = fmt.max_finite, fmt.min_subnormal
    pairs = [
        (NAN, NAN, 0),
        (NAN, 1.0, MISMATCH),
        (NAN, INF, MISMATCH),
        (INF, INF, 0),
        (-INF, -INF, 0),
        (INF, -INF, MISMATCH),
        (INF, m, MISMATCH),
        (-INF, -m, MISMATCH),
        (INF, NAN, MISMATCH),
        (0.0, -0.0, 0),
        (s, -s, 2),
        (s, 0.0, 1),
        (-s, -0.0, 1),
        (1.0, 1.0 + 2.0**-fmt.mantissa_bits, 1),
        (1.0, 1.0 - 2.0 ** -(fmt.mantissa_bits + 1), 1),
        (1.0, 2.0, 1 << fmt.mantissa_bits),
        (m, -m, 2 * int(ordinal(to_torch(np.array([m]), fmt)).item())),
    ]
    a = to_torch(np.array([p[0] for p in pairs]), fmt)
    b = to_torch(np.array([p[1] for p in pairs]), fmt)
    expected = [p[2] for p in pairs]
    assert ulp_distance(a, b).tolist() == expected
    assert ulp_distance(b, a).tolist() == expected
    assert ulp_distance(a, b).dtype == torch.int64


@pytest.mark.parametrize("fmt", [BF16, FP16], ids=lambda f: f.name)
def test_ulp_distance_matches_rank_oracle(fmt: FloatFormat) -> None:
    t, vals = _all_16bit(fmt)
    rng = np.random.default_rng(3)
    ia, ib = rng.integers(0, 1 << 16, 20000), rng.integers(0, 1 << 16, 20000)
    # ib near ia too, so small distances and exact equalities are exercised.
    ib[:5000] = (ia[:5000] + rng.integers(-3, 4, 5000)) % (1 << 16)
    d = ulp_distance(t[torch.from_numpy(ia)], t[torch.from_numpy(ib)]).numpy()
    assert np.array_equal(d, ulp_distance(t[torch.from_numpy(ib)], t[torch.from_numpy(ia)]).numpy())
    # Rank of each value among the distinct finite values (±0 share a rank).
    uniq = np.unique(vals[np.isfinite(vals)])
    va, vb = vals[ia], vals[ib]
    fin = np.isfinite(va) & np.isfinite(vb)
    ra, rb = np.searchsorted(uniq, va[fin]), np.searchsorted(uniq, vb[fin])
    assert np.array_equal(d[fin], np.abs(ra - rb))
    nan_a, nan_b = np.isnan(va), np.isnan(vb)
    assert np.all(d[nan_a & nan_b] == 0)
    assert np.all(d[nan_a ^ nan_b] == MISMATCH)
    inf_case = ~(nan_a | nan_b) & (np.isinf(va) | np.isinf(vb))
    assert np.array_equal(d[inf_case], np.where(va[inf_case] == vb[inf_case], 0, MISMATCH))


# ---------------------------------------------------------------------------
# ulp_of / ulp_error / rounded_ulp_distance / abs_error
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ALL_FMTS, ids=lambda f: f.name)
def test_ulp_of_binade_boundaries(fmt: FloatFormat) -> None:
    mb, s, n = fmt.mantissa_bits, fmt.min_subnormal, fmt.min_normal
    top = 2.0 ** (fmt.emax - mb)
    cases = [
        (1.0, 2.0**-mb),
        (np.nextafter(1.0, 0), 2.0 ** (-1 - mb)),  # just below the boundary: lower binade
        (2.0, 2.0 ** (1 - mb)),
        (-2.0, 2.0 ** (1 - mb)),
        (0.75, 2.0 ** (-1 - mb)),
        (0.0, s),
        (-0.0, s),
        (s, s),
        (3 * s, s),
        (n / 2, s),
        (np.nextafter(n, 0), s),
        (n, s),  # smallest normal binade has the subnormal spacing
        (2 * n, 2 * s),
        (5e-324, s),
        (fmt.max_finite, top),
        (2.0 ** (fmt.emax + 1), top),  # beyond the range: top binade spacing
        (1e308, top),
        (-1e308, top),
    ]
    out = ulp_of(t64([c[0] for c in cases]), fmt)
    assert out.dtype == torch.float64
    assert out.tolist() == [c[1] for c in cases]
    assert torch.isnan(ulp_of(t64([INF, -INF, NAN]), fmt)).all()


@pytest.mark.parametrize("fmt", ALL_FMTS, ids=lambda f: f.name)
def test_ulp_of_matches_spacing_of_representable_values(fmt: FloatFormat) -> None:
    vals, nxt = _representable_sample(fmt)
    # Spacing above v equals the spacing at v (binade boundaries included);
    # for 16-bit formats vals/nxt come from the sorted enumeration.
    assert np.array_equal(ulp_of(t64(vals), fmt).numpy(), nxt - vals)
    assert np.array_equal(ulp_of(t64(-vals), fmt).numpy(), nxt - vals)
    if fmt is not BF16:
        finite = vals < fmt.max_finite
        spacing = np.spacing(vals[finite].astype(_NP_DTYPE[fmt.name])).astype(np.float64)
        assert np.array_equal(ulp_of(t64(vals[finite]), fmt).numpy(), spacing)


@pytest.mark.parametrize("fmt", ALL_FMTS, ids=lambda f: f.name)
def test_ulp_error_values(fmt: FloatFormat) -> None:
    mb, s, m = fmt.mantissa_bits, fmt.min_subnormal, fmt.max_finite
    u = 2.0**-mb
    thr = m + 2.0 ** (fmt.emax - mb - 1)
    cases = [
        (1.0, 1.0, 0.0),
        (1 + u, 1.0, 1.0),
        (1.0, 1 + u / 2, 0.5),  # midpoint reference
        (1 - u / 2, 1.0, 0.5),  # below the boundary, measured in ref's ulp
        (1.0, 1 - u / 2, 1.0),  # ref in the lower binade: its ulp is u/2
        (-1.0, -(1 + u), 1.0),
        (s, 0.0, 1.0),
        (-s, 0.0, 1.0),
        (0.0, 0.0, 0.0),
        (2 * s, s, 1.0),
        (0.0, s / 4, 0.25),
        (NAN, NAN, 0.0),
        (NAN, 1.0, INF),
        (1.0, NAN, INF),
        (INF, INF, 0.0),
        (-INF, -INF, 0.0),
        (INF, thr, 0.0),  # ref rounds to +inf in fmt
        (-INF, -1e300, 0.0),
        (INF, m, INF),  # ref rounds to max, not inf
        (INF, np.nextafter(thr, 0), INF),
        (INF, -INF, INF),
        (m, INF, INF),
        (INF, 1.0, INF),
    ]
    x = to_torch(np.array([c[0] for c in cases]), fmt)
    ref = t64([c[1] for c in cases])
    out = ulp_error(x, ref, fmt)
    assert out.dtype == torch.float64
    assert out.tolist() == [c[2] for c in cases]
    # float64 x is accepted too (e.g. an unrounded candidate).
    assert ulp_error(t64([1 + u / 4]), t64([1.0]), fmt).item() == 0.25


@pytest.mark.parametrize("fmt", ALL_FMTS, ids=lambda f: f.name)
def test_rounded_ulp_distance(fmt: FloatFormat) -> None:
    u, m = 2.0**-fmt.mantissa_bits, fmt.max_finite
    thr = m + 2.0 ** (fmt.emax - fmt.mantissa_bits - 1)
    cases = [
        (1.0, 1.0, 0),
        (1.0, 1 + u / 2, 0),  # tie rounds to even 1.0
        (1 + u, 1 + u / 2, 1),
        (1 + 2 * u, 1 + 1.5 * u, 0),  # tie rounds to even 1+2u
        (1 + u, 1 + 1.5 * u, 1),
        (1.0, 1 + 3 * u, 3),
        (-fmt.min_subnormal, fmt.min_subnormal / 4, 1),
        (0.0, -fmt.min_subnormal / 4, 0),
        (m, np.nextafter(thr, 0), 0),
        (INF, thr, 0),
        (m, thr, MISMATCH),
        (NAN, NAN, 0),
        (1.0, NAN, MISMATCH),
    ]
    x = to_torch(np.array([c[0] for c in cases]), fmt)
    ref = t64([c[1] for c in cases])
    assert rounded_ulp_distance(x, ref).tolist() == [c[2] for c in cases]
    with pytest.raises(ValueError):
        rounded_ulp_distance(ref, ref)


def test_abs_error() -> None:
    x = torch.tensor([1.0, -0.0, 1e-30, NAN, NAN, 2.0, INF, INF, INF, -INF], dtype=torch.float32)
    ref = t64([1.5, 0.0, 0.0, NAN, 0.0, NAN, INF, 1e300, 3e38, 1e300])
    expected = [0.5, 0.0, float(np.float32(1e-30)), 0.0, INF, INF, 0.0, 0.0, INF, INF]
    out = abs_error(x, ref)
    assert out.dtype == torch.float64
    assert out.tolist() == expected
    # float64 x: an infinity only matches the same infinity.
    assert abs_error(t64([INF, INF]), t64([INF, 1e300])).tolist() == [0.0, INF]
    # bf16 x: 1e300 and 3.4e38 both round to +inf in bf16.
    xb = torch.tensor([INF, INF], dtype=torch.bfloat16)
    assert abs_error(xb, t64([1e300, 3.4e38])).tolist() == [0.0, 0.0]


# ---------------------------------------------------------------------------
# device determinism
# ---------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("fmt", ALL_FMTS, ids=lambda f: f.name)
def test_cuda_matches_cpu(fmt: FloatFormat) -> None:
    x = t64(_interesting_inputs(fmt))
    cpu = round_to(x, fmt)
    gpu = round_to(x.cuda(), fmt).cpu()
    assert torch.equal(cpu.view(torch.int64), gpu.view(torch.int64))
    c = cast(x, fmt)
    assert torch.equal(ordinal(c), ordinal(c.cuda()).cpu())
    shifted = cast(x * 1.001, fmt)
    assert torch.equal(ulp_distance(c, shifted), ulp_distance(c.cuda(), shifted.cuda()).cpu())
    e_cpu = ulp_error(c, x, fmt)
    e_gpu = ulp_error(c.cuda(), x.cuda(), fmt).cpu()
    assert torch.equal(e_cpu.view(torch.int64), e_gpu.view(torch.int64))
