"""moe.combine end to end, and every check of the harness caught on a broken retiled combine."""

import dataclasses

import pytest
import torch

import equiv
from equiv import within_ulp
from equiv.shapes import Shape
from tests import broken_combine as broken

PAIR = equiv.get("moe.combine")
SMALL = "T=8,D=256,TOPK=6"


def verdicts(result):
    return {v for r in result.results for v in r.verdicts.values()}


def test_nominal_is_bit_exact_equivalent():
    r = equiv.check(PAIR, shapes="nominal")
    assert verdicts(r) == {"equivalent"}
    assert r.max_ulp() == 0
    assert all(o.differing == 0 and o.compared == o_shape for res in r.results
               for o, o_shape in [(res.outputs["ffn_out"], res.case.shape.T * res.case.shape.D)])


def test_t10_pre_leaves_rows_8_9_unwritten_and_retiled_matches_reference():
    r = equiv.check(PAIR, shapes="T=10,D=256", recipes=["realistic"])
    (case,) = r.results
    out = case.outputs["ffn_out"]
    assert out.verdict == "pre-defect"
    assert out.unwritten["pre"]["ranges"] == [[[8, 10]], [[0, 256]]]
    assert "retiled" not in out.unwritten and not out.poisoned
    assert out.error_vs_ref["retiled"]["max"] <= 0.5  # correctly rounded
    assert r.ok


def test_reordered_sum_is_caught_by_default_fuzzing():
    r = equiv.check(dataclasses.replace(PAIR, retiled=broken.reversed_sum), shapes="fuzz", examples=4)
    assert r.regressions, "a reordered fp32 sum must be found"
    cx = next(c for c in r.counterexamples if "regression" in c.verdicts.values())
    o = cx.outputs["ffn_out"]
    assert o.first_difference is not None and o.differing > 0
    assert cx.repro().startswith("equiv check moe.combine --shapes '")


@pytest.mark.parametrize("kernel, evidence", [
    (broken.round_toward_zero, "break the contract"),
    (broken.drops_tail, "unwritten"),
    (broken.reads_scratch, "uninitialised memory"),
    (broken.writes_past_end, "oob-write"),
    (broken.racing_blocks, "race"),
    (broken.raises, "raised"),
])
def test_broken_retiled_is_a_regression_with_evidence(kernel, evidence):
    r = equiv.check(dataclasses.replace(PAIR, retiled=kernel), shapes=SMALL, recipes=["realistic"])
    (case,) = r.results
    out = case.outputs["ffn_out"]
    assert out.verdict == "regression", out.reasons
    assert any(evidence in reason for reason in out.reasons), out.reasons


def test_unwritten_tail_region_is_exact():
    r = equiv.check(dataclasses.replace(PAIR, retiled=broken.drops_tail), shapes=SMALL, recipes=["realistic"])
    assert r.results[0].outputs["ffn_out"].unwritten["retiled"]["ranges"] == [[[7, 8]], [[0, 256]]]


def test_race_names_both_blocks_and_the_line():
    r = equiv.check(dataclasses.replace(PAIR, retiled=broken.racing_blocks), shapes=SMALL, recipes=["realistic"])
    (hazard,) = [h for h in r.results[0].hazards["retiled"] if h["kind"] == "race"]
    assert hazard["tensor"] == "ffn_out"
    assert "broken_combine.py:" in hazard["site"]
    assert "spmd[" in hazard["detail"]


def test_raising_kernel_reports_its_line():
    r = equiv.check(dataclasses.replace(PAIR, retiled=broken.raises), shapes=SMALL, recipes=["realistic"])
    assert "broken_combine.py:" in r.results[0].errors["retiled"]


def test_drift_beyond_the_declared_ulp_bound_is_caught_and_within_it_passes():
    loose = dataclasses.replace(PAIR, contract=within_ulp(1), accuracy_slack=2.0)
    far = equiv.check(dataclasses.replace(loose, retiled=broken.scaled(1 + 2.0 ** -5)), shapes=SMALL,
                      recipes=["realistic"])
    assert verdicts(far) == {"regression"} and far.max_ulp() >= 2
    near = equiv.check(dataclasses.replace(loose, retiled=broken.scaled(1 + 2.0 ** -10)), shapes=SMALL,
                       recipes=["realistic"])
    assert verdicts(near) == {"equivalent"} and near.max_ulp() <= 1


def test_accuracy_drop_against_the_reference_is_a_regression_even_within_the_contract():
    lenient = dataclasses.replace(PAIR, contract=within_ulp(10_000), retiled=broken.bf16_accumulate)
    r = equiv.check(lenient, shapes=SMALL, recipes=["realistic"])
    out = r.results[0].outputs["ffn_out"]
    assert out.verdict == "regression"
    assert any("accuracy drop" in reason for reason in out.reasons)
    assert out.error_vs_ref["retiled"]["max"] > out.error_vs_ref["pre"]["max"] + 1


def test_correct_pair_passes_every_recipe_at_small_shapes():
    r = equiv.check(PAIR, shapes="T=8,D=256;T=12,D=128,TOPK=2")
    assert {res.outputs["ffn_out"].verdict for res in r.results if res.case.shape.T == 8} == {"equivalent"}
    assert r.ok


def test_inactive_routed_rows_are_never_read():
    # The realistic recipe fills routed rows of inactive tokens with NaN: any read would show.
    case = equiv.Case(Shape(T=8, D=64, TOPK=2), "realistic", seed=3)
    inputs = equiv.runner.make_inputs(PAIR, case)
    active = max(0, min(8, inputs["num_tokens"]))
    assert torch.isnan(inputs["routed_y_buf"][active * 2:].float()).all()
    r = equiv.run_case(PAIR, case)
    assert r.verdicts == {"ffn_out": "equivalent"}
    assert r.outputs["ffn_out"].error_vs_ref["pre"]["max"] <= 0.5


def test_same_seed_same_result_and_different_seed_different_draws():
    a = equiv.check(PAIR, shapes="fuzz", examples=3, seed=11, recipes=["realistic", "binades"])
    b = equiv.check(PAIR, shapes="fuzz", examples=3, seed=11, recipes=["realistic", "binades"])
    c = equiv.check(PAIR, shapes="fuzz", examples=3, seed=12, recipes=["realistic", "binades"])
    strip = lambda r: [{k: v for k, v in x.to_dict().items() if k != "seconds"} for x in r.results]
    assert strip(a) == strip(b)
    assert [x.case for x in a.results] != [x.case for x in c.results]
