"""compare_output's single passes against straightforward per-element computations.

compare_output and the numerics under it skip work that cannot change a number: bit-identical
outputs share their distances and reference error, errors are computed on the compared
elements only, the NaN/inf rules run only where a value is not finite, and histograms are
counted in one pass. Each is checked here against a slow, obviously correct computation
(Python floats and Fractions, element by element) on the values where shortcuts go wrong:
NaN, ±inf, ±0.0, subnormals, the largest finite value, neighbours one ULP apart, ties, and
references past the overflow threshold, for bf16, fp16, fp32 and fp8 outputs and integers.
"""

from __future__ import annotations

import math
import struct
from fractions import Fraction

import pytest
import torch

from equiv import numerics
from equiv.compare import SideRun, compare_output, error_histogram, ulp_histogram
from equiv.numerics import BF16, FP8E4M3FN, FP16, FP32, MISMATCH, FloatFormat, ulp_distance, ulp_error
from equiv.pair import Contract

INF, NAN = float("inf"), float("nan")
FMTS = [BF16, FP16, FP32, FP8E4M3FN]


# ----------------------------------------------------------------------------------------
# Tricky values
# ----------------------------------------------------------------------------------------
def tricky(fmt: FloatFormat) -> list[float]:
    """Values of `fmt`: ±0, the smallest and largest subnormals, the smallest normal, 1 and
    its neighbours, the largest finite value and the one below it, ±inf where the format has
    them, NaN."""
    sub, m = fmt.min_subnormal, fmt.mantissa_bits
    top_step = 2.0 ** (fmt.emax - m)
    vals = [0.0, sub, 2 * sub, fmt.min_normal - sub, fmt.min_normal, 1.0, 1.0 + 2.0 ** -m,
            1.0 - 2.0 ** -(m + 1), 1.5, 3.0, fmt.max_finite, fmt.max_finite - top_step]
    vals = vals + [-v for v in vals]
    if not fmt.finite_only:
        vals += [INF, -INF]
    return vals + [NAN]


def references(fmt: FloatFormat) -> list[float]:
    """float64 references: the format's own values, ties and near-ties between neighbours,
    values past the overflow threshold, float64 subnormals and huge values."""
    sub, m = fmt.min_subnormal, fmt.mantissa_bits
    top_step = 2.0 ** (fmt.emax - m)
    extra = [1.0 + 2.0 ** -(m + 1), math.nextafter(1.0 + 2.0 ** -(m + 1), 2.0), 1.0 + 3 * 2.0 ** -(m + 1),
             sub / 2, 0.75 * sub, fmt.max_finite + top_step / 2, math.nextafter(fmt.max_finite + top_step / 2, 0),
             2 * fmt.max_finite, 5e-324, 1e-300, 1e300, 0.1, 1 / 3]
    return tricky(fmt) + extra + [-v for v in extra]


def as_fmt(values: list[float], fmt: FloatFormat) -> torch.Tensor:
    # Every value is representable: the conversion is exact.
    return torch.tensor(values, dtype=torch.float64).to(fmt.torch_dtype)


# ----------------------------------------------------------------------------------------
# Straightforward computations
# ----------------------------------------------------------------------------------------
def slow_round(r: float, fmt: FloatFormat) -> float:
    """`r` rounded to `fmt`, nearest with ties to even (Fractions: exact)."""
    if math.isinf(r) or math.isnan(r) or r == 0:
        return r
    q = max(math.frexp(r)[1] - 1, fmt.emin) - fmt.mantissa_bits
    v = float(round(Fraction(r) / Fraction(2) ** q) * Fraction(2) ** q)
    if abs(v) > fmt.max_finite:
        return math.copysign(fmt.max_finite if fmt.finite_only else INF, r)
    return v


def slow_ulp_error(x: float, r: float, fmt: FloatFormat) -> float:
    if math.isnan(x) or math.isnan(r):
        return 0.0 if math.isnan(x) and math.isnan(r) else INF
    if math.isinf(x) or math.isinf(r):
        return 0.0 if math.isinf(x) and slow_round(r, fmt) == x else INF
    e = math.frexp(r)[1] - 1 if r != 0 else fmt.emin  # floor(log2 |r|)
    e = min(max(e, fmt.emin), fmt.emax) - fmt.mantissa_bits
    return abs(x - r) / 2.0 ** e


def slow_ordinal(x: float, fmt: FloatFormat) -> int:
    """Index of `x` among `fmt`'s values in increasing order, ±0 one value, 0 at 0."""
    if fmt.total_bits == 32:
        bits = struct.unpack("<I", struct.pack("<f", x))[0]
        return bits if bits < 2**31 else -(bits - 2**31)
    return _ranks(fmt)[x]


_RANKS: dict[str, dict[float, int]] = {}


def _ranks(fmt: FloatFormat) -> dict[float, int]:
    # Every bit pattern of an 8- or 16-bit format, decoded, sorted: ranks, 0 at zero.
    if fmt.name not in _RANKS:
        view = torch.int8 if fmt.total_bits == 8 else torch.int16
        pats = torch.arange(-(2 ** (fmt.total_bits - 1)), 2 ** (fmt.total_bits - 1)).to(view)
        vals = sorted({v for v in pats.view(fmt.torch_dtype).to(torch.float64).tolist() if not math.isnan(v)})
        zero = vals.index(0.0)
        _RANKS[fmt.name] = {v: i - zero for i, v in enumerate(vals)}
    return _RANKS[fmt.name]


def slow_distance(a: float, b: float, fmt: FloatFormat) -> int:
    if math.isnan(a) or math.isnan(b):
        return 0 if math.isnan(a) and math.isnan(b) else MISMATCH
    if math.isinf(a) or math.isinf(b):
        return 0 if a == b else MISMATCH
    return abs(slow_ordinal(a, fmt) - slow_ordinal(b, fmt))


def slow_error_histogram(errs: list[float]) -> dict[str, int]:
    hist: dict[str, int] = {}
    labels = [f"≤{e:g}" for e in (0.5, 1, 2, 4, 8, 16, 64, 256, 4096)] + [">4096"]
    edges = [0.0, 0.5, 1, 2, 4, 8, 16, 64, 256, 4096]
    for e in errs:
        if math.isnan(e) or e < 0:
            continue  # in no bucket
        i = next((k for k in range(1, len(edges)) if e <= edges[k]), len(edges))
        hist[labels[i - 1]] = hist.get(labels[i - 1], 0) + 1
    return {k: hist[k] for k in labels if k in hist}


def slow_ulp_histogram(dists: list[int]) -> dict[str, int]:
    hist: dict[str, int] = {}
    order: list[int] = []
    mism = 0
    for d in dists:
        if d >= MISMATCH:
            mism += 1
            continue
        b = d if d <= 2 else (d - 1).bit_length() - 1 + 2  # floor(log2(d - 1)) + 2
        label = str(b) if b <= 2 else f"{2 ** (b - 2) + 1}-{2 ** (b - 1)}"
        hist[label] = hist.get(label, 0) + 1
        order.append(b)
    out = {(str(b) if b <= 2 else f"{2 ** (b - 2) + 1}-{2 ** (b - 1)}"): 0 for b in sorted(set(order))}
    out = {k: hist[k] for k in out}
    if mism:
        out["NaN/Inf mismatch"] = mism
    return out


def same_floats(a: torch.Tensor, b: list[float]) -> bool:
    got = a.tolist()
    return len(got) == len(b) and all((math.isnan(x) and math.isnan(y)) or
                                      (x == y and math.copysign(1, x) == math.copysign(1, y))
                                      for x, y in zip(got, b))


# ----------------------------------------------------------------------------------------
# numerics
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FMTS, ids=lambda f: f.name)
def test_ulp_error_matches_a_per_element_computation(fmt: FloatFormat) -> None:
    xs, rs = tricky(fmt), references(fmt)
    pairs = [(x, r) for x in xs for r in rs]
    x = as_fmt([p[0] for p in pairs], fmt)
    r = torch.tensor([p[1] for p in pairs], dtype=torch.float64)
    assert same_floats(ulp_error(x, r, fmt), [slow_ulp_error(a, b, fmt) for a, b in pairs])
    # Finite values only: the path that never applies the NaN/inf rules.
    fin = [(a, b) for a, b in pairs if math.isfinite(a) and math.isfinite(b)]
    got = ulp_error(as_fmt([p[0] for p in fin], fmt), torch.tensor([p[1] for p in fin], dtype=torch.float64), fmt)
    assert same_floats(got, [slow_ulp_error(a, b, fmt) for a, b in fin])


@pytest.mark.parametrize("fmt", FMTS, ids=lambda f: f.name)
def test_ulp_error_broadcasts_as_an_elementwise_error(fmt: FloatFormat) -> None:
    xs, rs = tricky(fmt), references(fmt)
    got = ulp_error(as_fmt(xs, fmt).reshape(-1, 1), torch.tensor(rs, dtype=torch.float64).reshape(1, -1), fmt)
    assert got.shape == (len(xs), len(rs))
    assert same_floats(got.reshape(-1), [slow_ulp_error(a, b, fmt) for a in xs for b in rs])


@pytest.mark.parametrize("fmt", FMTS, ids=lambda f: f.name)
def test_ulp_distance_matches_a_per_element_computation(fmt: FloatFormat) -> None:
    vals = tricky(fmt)
    pairs = [(a, b) for a in vals for b in vals]
    a, b = as_fmt([p[0] for p in pairs], fmt), as_fmt([p[1] for p in pairs], fmt)
    assert ulp_distance(a, b).tolist() == [slow_distance(x, y, fmt) for x, y in pairs]
    fin = [(x, y) for x, y in pairs if math.isfinite(x) and math.isfinite(y)]
    got = ulp_distance(as_fmt([p[0] for p in fin], fmt), as_fmt([p[1] for p in fin], fmt))
    assert got.tolist() == [slow_distance(x, y, fmt) for x, y in fin]
    # Broadcast: one row against every value.
    got = ulp_distance(as_fmt(vals, fmt).reshape(-1, 1), as_fmt(vals, fmt).reshape(1, -1))
    assert got.reshape(-1).tolist() == [slow_distance(x, y, fmt) for x, y in pairs]


# ----------------------------------------------------------------------------------------
# histograms
# ----------------------------------------------------------------------------------------
EDGE_ERRORS = [0.0, -0.0, 5e-324, 0.25, 0.5, math.nextafter(0.5, 1), 1.0, math.nextafter(1.0, 2), 2.0, 3.0, 4.0,
               8.0, 16.0, 17.0, 64.0, 65.0, 256.0, 257.0, 4096.0, math.nextafter(4096.0, INF), 1e300, INF]


@pytest.mark.parametrize("errs", [
    EDGE_ERRORS,
    EDGE_ERRORS + [NAN],                     # NaN is in no bucket
    EDGE_ERRORS + [-1.0, -INF],              # nor is anything below 0
    [0.0, 0.5, 0.125, -0.0],                 # everything in the first bucket
    [INF, INF],
    [],
], ids=["edges", "nan", "negative", "first-bucket", "inf", "empty"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_error_histogram_matches_a_per_element_count(errs: list[float], dtype: torch.dtype) -> None:
    t = torch.tensor(errs, dtype=dtype)
    want = slow_error_histogram(t.tolist())
    got = error_histogram(t)
    assert got == want and list(got) == list(want)
    # Any shape: the buckets count elements.
    if t.numel() % 2 == 0 and t.numel():
        assert error_histogram(t.reshape(2, -1)) == want


@pytest.mark.parametrize("dists", [
    [0, 1, 2, 3, 4, 5, 8, 9, 16, 17, 1000, 2**31, 2**31 + 1, 2**40 + 1, MISMATCH, MISMATCH],
    [0] * 5,
    [2, 1, 1],
    [MISMATCH],
    [7, 3, 0, 1, 1, 6, 5],
    [],
], ids=["spread", "zeros", "small", "mismatch", "unsorted", "empty"])
def test_ulp_histogram_matches_a_per_element_count(dists: list[int]) -> None:
    got = ulp_histogram(torch.tensor(dists, dtype=torch.int64))
    want = slow_ulp_histogram(dists)
    assert got == want and list(got) == list(want)


# ----------------------------------------------------------------------------------------
# compare_output
# ----------------------------------------------------------------------------------------
def side(name: str, out: torch.Tensor, written: torch.Tensor, poisoned: torch.Tensor) -> SideRun:
    return SideRun(name, outputs={"y": out}, written={"y": written}, poisoned={"y": poisoned})


def slow_fields(a: torch.Tensor, b: torch.Tensor, both: list[bool], ref: torch.Tensor, fmt: FloatFormat | None) -> dict:
    """compared, differing, max_ulp, ulp_hist and error_vs_ref, element by element."""
    av, bv, rv = a.double().tolist(), b.double().tolist(), ref.tolist()
    idx = [i for i, k in enumerate(both) if k]
    if fmt is None:
        dists = [int(av[i] != bv[i]) for i in idx]
    else:
        dists = [slow_distance(av[i], bv[i], fmt) for i in idx]
    out = {"compared": len(idx), "differing": sum(d != 0 for d in dists), "max_ulp": max(dists, default=0),
           "ulp_hist": slow_ulp_histogram(dists), "error_vs_ref": {}}
    for s, vals in (("pre", av), ("retiled", bv)):
        if fmt is None:
            errs = [0.0 if vals[i] == rv[i] else INF for i in idx]
        else:
            errs = [slow_ulp_error(vals[i], rv[i], fmt) for i in idx]
        finite = [e for e in errs if math.isfinite(e)]
        out["error_vs_ref"][s] = {"max": max(errs, default=0.0), "hist": slow_error_histogram(errs),
                                  "mean": float(torch.tensor(finite, dtype=torch.float64).mean()) if finite else 0.0}
    return out


def cases(fmt: FloatFormat | None):
    """(name, pre output, retiled output, reference) of one format; None: int32 outputs."""
    if fmt is None:
        a = torch.tensor([0, 1, -1, 2**31 - 1, -(2**31), 7, 7, 0], dtype=torch.int32)
        ref = torch.tensor([0, 1, -1, 2**31 - 1, -(2**31), 7.5, 6, NAN], dtype=torch.float64)
        b = a.clone()
        b[5] = 8
        return [("same-object", a, a, ref), ("same-bits", a, a.clone(), ref), ("differs", a, b, ref)]
    xs = tricky(fmt)
    rs = references(fmt)
    n = len(xs)
    a = as_fmt(xs, fmt)
    ref = torch.tensor([rs[(3 * i + 1) % len(rs)] for i in range(n)], dtype=torch.float64)
    near = a.clone()
    near[5] = as_fmt([1.0 + 2.0 ** -fmt.mantissa_bits], fmt)[0]  # 1 -> its upper neighbour
    near[n - 1] = as_fmt([1.5], fmt)[0]                          # NaN -> a number
    signed = a.clone()
    signed[0] = as_fmt([-0.0], fmt)[0]                           # +0 -> -0: the same value
    exact_ref = a.double()  # errors 0 where finite: the one-bucket histogram
    return [("same-object", a, a, ref), ("same-bits", a, a.clone(), ref), ("one-ulp-and-nan", a, near, ref),
            ("signed-zero", a, signed, ref), ("exact-ref", a, a.clone(), exact_ref)]


@pytest.mark.parametrize("fmt", FMTS + [None], ids=lambda f: f.name if f else "int32")
@pytest.mark.parametrize("masks", ["all", "partial"])
def test_compare_output_matches_a_per_element_computation(fmt: FloatFormat | None, masks: str) -> None:
    for what, a, b, ref in cases(fmt):
        n = a.numel()
        written = torch.ones(n, dtype=torch.bool)
        poisoned = torch.zeros(n, dtype=torch.bool)
        if masks == "partial":
            written[1] = False
            poisoned[2] = True
        pre = side("pre", a, written, poisoned)
        ret = side("retiled", b, written.clone(), poisoned.clone())
        contract = Contract(0, fmt.name if fmt else "bf16")
        res = compare_output("y", pre, ret, ref, contract)
        both = [bool(w and not p) for w, p in zip(written.tolist(), poisoned.tolist())]
        want = slow_fields(a, b, both, ref, fmt)
        got = {k: getattr(res, k) for k in ("compared", "differing", "max_ulp", "ulp_hist", "error_vs_ref")}
        for s in ("pre", "retiled"):  # NaN-safe comparison of the float fields
            for k in ("max", "mean"):
                g, w = got["error_vs_ref"][s].pop(k), want["error_vs_ref"][s].pop(k)
                assert g == w or (math.isnan(g) and math.isnan(w)), (what, s, k, g, w)
        assert got == want, what
        assert (res.first_difference is not None) == (want["differing"] > 0), what


def test_bit_identical_outputs_are_judged_against_the_reference_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = numerics.ulp_error

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(numerics, "ulp_error", counted)
    for what, a, b, ref in cases(BF16):
        calls.clear()
        w = torch.ones(a.numel(), dtype=torch.bool)
        p = torch.zeros(a.numel(), dtype=torch.bool)
        res = compare_output("y", side("pre", a, w, p), side("retiled", b, w, p), ref, Contract(0, "bf16"))
        # Other bits (a -0 for a +0 included) are judged on their own.
        assert len(calls) == (2 if what in ("one-ulp-and-nan", "signed-zero") else 1), what
        assert res.error_vs_ref["pre"].keys() == res.error_vs_ref["retiled"].keys()
