"""indexer.qr_rope: bit-exact over presets and fuzzing (special values included), signed zeros
identical, and broken retiled variants caught as regressions."""

import dataclasses

import pytest
import torch

import equiv
from tests.mutation import edited_kernel
from equiv.options import Options
from equiv.runner import make_inputs, run_side
from kernels.indexer_qr_rope import retiled

PAIR = equiv.get("indexer.qr_rope")
OUT = "qr_rope_out"


def assert_equivalent(res):
    o = res.outputs[OUT]
    s = res.case.shape
    assert o.verdict == "equivalent", (res.case, o.reasons)
    assert o.differing == 0 and o.max_ulp == 0
    assert o.compared == s.B * s.S * 64 * 64
    assert not o.unwritten and not o.poisoned
    assert o.error_vs_ref["pre"]["max"] == o.error_vs_ref["retiled"]["max"]
    assert not res.hazards


def test_presets_bit_exact():
    for preset in ("nominal", "demo", "flash", "pro"):
        r = equiv.check(PAIR, shapes=preset)
        assert r.ok
        for res in r.results:
            assert_equivalent(res)


def test_fuzz_bit_exact():
    r = equiv.check(PAIR, shapes="fuzz", examples=25, seed=11, shrink_budget=0)
    assert r.ok, [x.repro() for x in r.regressions]
    for res in r.results:
        assert_equivalent(res)
    assert {x.case.shape.S for x in r.results} == {1, 2}
    assert {x.case.recipe for x in r.results} == set(PAIR.recipes)


@pytest.mark.parametrize("shape", ["B=8,S=1,ROPE_PRESET=1", "B=4,S=2,ROPE_PRESET=2", "B=3,S=2,ROPE_PRESET=0"])
def test_special_values_bit_identical_including_signed_zeros(shape):
    """The harness counts +0 and -0 as equal; the spec claims even the zero signs agree, so
    compare the raw bf16 bit patterns (NaNs excepted) and check that the case had ±0, ±inf, NaN
    and subnormal results to compare."""
    (s,) = [PAIR.shapes.parse(shape)]
    for seed in range(2):
        case = equiv.Case(s, "specials", seed)
        inputs = make_inputs(PAIR, case)
        runs = {side: run_side(PAIR, side, case, inputs, Options()) for side in ("pre", "retiled")}
        a, b = runs["pre"].outputs[OUT], runs["retiled"].outputs[OUT]
        both_nan = torch.isnan(a) & torch.isnan(b)
        assert torch.equal(torch.isnan(a), torch.isnan(b))
        assert torch.equal(a.view(torch.int16)[~both_nan], b.view(torch.int16)[~both_nan])
        pos_zero = (a == 0) & ~torch.signbit(a)
        neg_zero = (a == 0) & torch.signbit(a)
        sub = (a != 0) & (a.abs() < 2.0 ** -126)
        assert pos_zero.any() and neg_zero.any() and torch.isinf(a).any() and both_nan.any() and sub.any()


def test_specials_recipe_has_identity_and_half_turn_rows():
    seen = set()
    for seed in range(4):
        inp = make_inputs(PAIR, equiv.Case(PAIR.shapes.parse("B=8,S=1,ROPE_PRESET=1"), "specials", seed))
        for c, s in zip(inp["cos"], inp["sin"]):
            if bool((s == 0).all()) and bool((c.abs() == 1).all()):
                seen.add(float(c[0]))
    assert seen == {1.0, -1.0}


def _variant(old: str, new: str):
    return edited_kernel(retiled, "qr_rope", old, new)


def test_sign_folded_wrongly_is_a_regression():
    broken = dataclasses.replace(PAIR, retiled=_variant(
        "pl.mul(pl.gather(sin_b32, dim=-1, index=rope_dup_idx), rope_sign)",
        "pl.mul(pl.gather(sin_b32, dim=-1, index=rope_dup_idx), pl.neg(rope_sign))"))
    r = equiv.check(broken, shapes="flash", recipes=["realistic"], shrink_budget=0)
    (res,) = r.results
    o = res.outputs[OUT]
    assert o.verdict == "regression" and o.differing > 0


def test_batch_lookup_ignoring_s_is_a_regression_only_at_s2():
    broken = dataclasses.replace(PAIR, retiled=_variant(
        "batch_idx = o0 // ROPE_ROW_BLOCK", "batch_idx = o0 // IDX_N_HEADS"))
    ok = equiv.check(broken, shapes="B=8,S=1,ROPE_PRESET=1", recipes=["realistic"], shrink_budget=0)
    assert ok.ok and all(x.outputs[OUT].verdict == "equivalent" for x in ok.results)
    bad = equiv.check(broken, shapes="B=4,S=2,ROPE_PRESET=1", recipes=["realistic", "specials"], shrink_budget=0)
    for res in bad.results:
        o = res.outputs[OUT]
        assert o.verdict == "regression"
        # tiles of the second half read cos/sin rows past B: uninitialised values and a hazard
        assert o.poisoned["retiled"]["ranges"] == [[[256, 512]], [[0, 64]]]
        assert any("oob-read" in reason and "cos" in reason for reason in o.reasons), o.reasons
        if res.case.recipe == "specials":  # distinct rows per batch: wrong angles in the first half
            assert o.differing > 0
