"""``pl.FP8E4M3FN``: casts to and from it under every cast mode, checked value by value
against an independent computation (the 256 bit patterns decoded by hand, the nearest one
picked by exact rational comparison), and a model file that quantises through FP8 judged
pair-free (a correct retile passes, a retile that rounds the other way is caught)."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest
import torch

from equiv import tile as pl
from equiv.tile.context import RunContext, running
from equiv.options import Options
from tests.test_pairfree import FILE, check, commit, kernel, repo  # noqa: F401 (fixture)


def _fp8_values() -> list[Fraction]:
    """Every finite E4M3FN value, decoded from its bit fields: bias 7, exponent field 0 is
    subnormal, pattern S.1111.111 is NaN (no infinities)."""
    out = set()
    for bits in range(256):
        sign, exp, man = bits >> 7, (bits >> 3) & 0xF, bits & 0x7
        if exp == 0xF and man == 0x7:
            continue  # NaN
        mag = Fraction(man, 8) * Fraction(2) ** -6 if exp == 0 else (1 + Fraction(man, 8)) * Fraction(2) ** (exp - 7)
        out.add(-mag if sign else mag)
    return sorted(out)


VALUES = _fp8_values()
TOP = max(VALUES)


def _even(v: Fraction) -> bool:
    """Whether `v`'s significand's last bit is 0 (the tie-to-even choice)."""
    if v == 0:
        return True
    mag = abs(v)
    exp = max(math.floor(math.log2(mag)), -6)
    return (mag / Fraction(2) ** (exp - 3)) % 2 == 0


def expected(x: float, mode: str) -> float:
    """The FP8 value pypto's cast gives `x` (saturating: pto-isa's default for FP32 -> FP8)."""
    if math.isnan(x):
        return math.nan
    if math.isinf(x):
        return math.copysign(float(TOP), x)
    q = Fraction(x)
    if abs(q) >= TOP:
        return math.copysign(float(TOP), x)
    below = max(v for v in VALUES if v <= q)
    above = min(v for v in VALUES if v >= q)
    if below == above:
        r = below
    elif mode == "floor":
        r = below
    elif mode == "ceil":
        r = above
    elif mode == "trunc":
        r = below if q > 0 else above
    elif q - below != above - q:
        r = below if q - below < above - q else above
    elif mode == "round":  # ties away from zero
        r = above if q > 0 else below
    else:  # rint / none: ties to even
        r = below if _even(below) else above
    return math.copysign(float(r), x) if r == 0 else float(r)


def _inputs() -> list[float]:
    rng = random.Random(7)
    xs = [0.0, -0.0, math.inf, -math.inf, math.nan, 448.0, -448.0, 464.0, 465.0, 1e6, -1e6, 2.0 ** -9,
          2.0 ** -10, 3 * 2.0 ** -11, -(2.0 ** -10), 2.0 ** -6, 2.0 ** -7 * 1.5]
    xs += [float((a + b) / 2) for a, b in zip(VALUES, VALUES[1:])]  # every exact tie
    xs += [float(v) for v in VALUES]
    xs += [rng.uniform(-500, 500) for _ in range(300)] + [rng.gauss(0, 0.05) for _ in range(300)]
    return [float(torch.tensor(x, dtype=torch.float32)) for x in xs]  # FP32 sources


@pytest.fixture
def ctx():
    with running(RunContext(Options(seed=5))) as c:
        yield c


@pytest.mark.parametrize("mode", ["rint", "round", "trunc", "floor", "ceil", "none"])
def test_fp32_to_fp8_cast_matches_the_hand_decoded_format(ctx, mode):
    xs = _inputs()
    src = pl.Tile(torch.tensor([xs], dtype=torch.float64).to(pl.FP32.container), pl.FP32)
    got = pl.cast(src, pl.FP8E4M3FN, mode=mode).data[0].tolist()
    want = [expected(x, mode) for x in xs]
    bad = [(x, g, w) for x, g, w in zip(xs, got, want)
           if not (g == w and math.copysign(1, g) == math.copysign(1, w)) and not (math.isnan(g) and math.isnan(w))]
    assert not bad, f"{len(bad)} values differ, first (x, got, want): {bad[:5]}"


def test_fp8_to_wider_types_is_exact_and_bf16_sources_round_once(ctx):
    fp8 = pl.Tile(torch.tensor([[float(v) for v in VALUES]], dtype=torch.float64).to(pl.FP32.container), pl.FP8E4M3FN)
    for target in (pl.FP32, pl.BF16, pl.FP16):
        assert pl.cast(fp8, target, mode="rint").data[0].tolist() == [float(v) for v in VALUES]
    # A BF16 value reaches FP8 through FP32 (exact), so its one rounding is the direct one.
    xs = [1.0625, 1.1875, -300.0, 500.0]  # two ties, one in range, one saturating
    bf = pl.Tile(torch.tensor([xs], dtype=torch.float64).to(pl.BF16.container), pl.BF16)
    assert pl.cast(bf, pl.FP8E4M3FN, mode="rint").data[0].tolist() == [expected(x, "rint") for x in xs]


def test_fp8_is_a_covered_name():
    from equiv.coverage import covers

    assert covers("pl.FP8E4M3FN")


# A file of the deepseek v3.2 draft's form: scores quantised to FP8 and read back as FP32.
QUANT = "pl.store(pl.cast(pl.cast(pl.mul(t, 2.0), target_type=pl.FP8E4M3FN, mode=\"{mode}\"), " \
        "target_type=pl.FP32), [b * T_TILE, 0], y)"


def _fp8_file(tile: int, mode: str) -> str:
    text = kernel(tile=tile, body=QUANT.format(mode=mode))
    return text.replace('tensors["y"][:] = tensors["x"] * 2.0',
                        'tensors["y"][:] = (tensors["x"] * 2.0).to(torch.float8_e4m3fn).to(torch.float32)').replace(
        "def golden_scale(tensors):", "def golden_scale(tensors):\n    import torch\n")


def test_an_fp8_quantising_retile_is_equivalent(repo, capsys):
    a = commit(repo, {FILE: _fp8_file(4, "rint")})
    b = commit(repo, {FILE: _fp8_file(2, "rint")})
    assert check(repo, FILE, a, b) == 0
    out = capsys.readouterr().out
    assert "scale_test: EQUIVALENT" in out and "CANNOT JUDGE" not in out


def test_an_fp8_retile_that_truncates_is_caught(repo, capsys):
    a = commit(repo, {FILE: _fp8_file(4, "rint")})
    b = commit(repo, {FILE: _fp8_file(2, "trunc")})
    assert check(repo, FILE, a, b) == 1
    out = capsys.readouterr().out
    assert "scale_test: REGRESSION" in out


def test_the_format_level_rounding_agrees_with_torch_for_fp8():
    # numerics.round_to (references, ULP measures) rounds to nearest-even and saturates, as
    # torch's own conversion does; the hand-decoded expectation is the arbiter for both.
    from equiv import numerics

    xs = _inputs()
    x = torch.tensor(xs, dtype=torch.float64)
    got = numerics.round_to(x, numerics.FP8E4M3FN).tolist()
    ref = x.to(torch.float8_e4m3fn).to(torch.float64).tolist()
    want = [expected(v, "rint") for v in xs]
    for g, r, w in zip(got, ref, want):
        assert (math.isnan(g) and math.isnan(w)) or (g == w and math.copysign(1, g) == math.copysign(1, w))
        assert (math.isnan(r) and math.isnan(w)) or r == w
