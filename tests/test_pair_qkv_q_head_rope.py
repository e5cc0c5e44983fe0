"""qkv.q_head_rope: the reordered sum of squares stays within 1 bf16 ULP under every row_sum
model, is not bit-exact, keeps its accuracy, shares the T mod 8 hole, and broken retiles are caught."""

from __future__ import annotations

import dataclasses

import pytest

import equiv
from tests.mutation import edited_kernel
from equiv.options import ROW_SUM_ORDERS
from kernels.qkv_q_head_rope import retiled
from kernels.qkv_q_head_rope.pair import per_model

PAIR = equiv.get("qkv.q_head_rope")
SMALL = "T=8,H=8;T=16,H=4"


def models(result) -> set[str]:
    return {dict(r.case.variant)["row_sum_order"] for r in result.results}


def broken(name: str, old: str, new: str):
    """retiled.q_head_rope with one source line changed (compiled from retiled.py's text)."""
    return dataclasses.replace(PAIR, retiled=edited_kernel(retiled, "q_head_rope", old, new, name))


@pytest.fixture(scope="module")
def small_all_recipes():
    return equiv.check(PAIR, shapes=SMALL, seed=3, shrink_budget=0)


@pytest.fixture(scope="module")
def flash():
    return equiv.check(PAIR, shapes="flash", recipes=["realistic", "wide_range"], seed=0, shrink_budget=0)


@pytest.fixture(scope="module")
def pro():
    return equiv.check(PAIR, shapes="pro", recipes=["realistic"], seed=0, shrink_budget=0)


def test_every_case_runs_under_every_row_sum_model(small_all_recipes):
    r = small_all_recipes
    assert models(r) == set(ROW_SUM_ORDERS)
    assert len(r.results) == 2 * len(PAIR.recipes) * len(ROW_SUM_ORDERS)


@pytest.mark.parametrize("which", ["small_all_recipes", "flash", "pro"])
def test_within_one_bf16_ulp_under_every_model(which, request):
    r = request.getfixturevalue(which)
    assert r.ok
    for c in r.results:
        o = c.outputs["q"]
        assert o.verdict == "equivalent", (c.case, o.reasons)
        assert o.max_ulp <= 1, c.case
        assert o.compared == c.case.shape.T * c.case.shape.H * 512
        assert not o.unwritten and not o.poisoned


@pytest.mark.parametrize("which", ["small_all_recipes", "flash", "pro"])
def test_no_accuracy_regression_against_float64_reference(which, request):
    r = request.getfixturevalue(which)
    for c in r.results:
        err = c.outputs["q"].error_vs_ref
        assert err["retiled"]["max"] <= err["pre"]["max"] + PAIR.accuracy_slack, c.case
        if c.case.recipe != "extremes":  # there both versions overflow the sum of squares alike
            assert err["pre"]["max"] <= 1.0 and err["retiled"]["max"] <= 1.0, (c.case, err)


def test_not_bit_exact_on_wide_dynamic_range_rows():
    r = equiv.check(PAIR, shapes="T=16,H=8", recipes=["wide_range"], seed=1, shrink_budget=0)
    table = per_model(r)
    assert set(table) == set(ROW_SUM_ORDERS)
    for model, row in table.items():
        assert row["differing"] >= 1 and row["max_ulp"] == 1, (model, row)
        assert row["verdicts"] == {"equivalent": 1}


def test_flash_differs_under_some_model_and_per_model_table_adds_up(flash):
    table = per_model(flash)
    assert set(table) == set(ROW_SUM_ORDERS)
    assert sum(row["differing"] for row in table.values()) > 0
    for model, row in table.items():
        cases = [c.outputs["q"] for c in flash.results if dict(c.case.variant)["row_sum_order"] == model]
        assert row["cases"] == len(cases) == 2
        assert row["differing"] == sum(o.differing for o in cases)
        assert row["max_ulp"] == max(o.max_ulp for o in cases) <= 1
        assert row["compared"] == 2 * 8 * 64 * 512


@pytest.mark.parametrize("T", [4, 12])
def test_t_not_multiple_of_8_is_a_hole_of_both_versions(T):
    r = equiv.check(PAIR, shapes=f"T={T},H=2", recipes=["realistic"], shrink_budget=0)
    assert models(r) == set(ROW_SUM_ORDERS)
    for c in r.results:
        o = c.outputs["q"]
        assert o.verdict == "both-defect", o.reasons
        for side in ("pre", "retiled"):
            assert o.unwritten[side]["ranges"] == [[[8 * (T // 8), T]], [[0, 2 * 512]]]
        assert o.compared == 8 * (T // 8) * 2 * 512 and o.max_ulp <= 1
    assert r.ok


INV_LINE = "q_head_inv_rms_t = pl.reshape(q_head_inv_rms, [Q_ROPE_T_TILE, 1])"
SUM_LINE = "                q_head_inv_rms = pl.recip("


@pytest.mark.parametrize("name, old, new, recipe", [
    # forgets EPS: only visible where mean(x²) is near EPS
    pytest.param("no_eps", "pl.mul(q_head_sq_sum, 1.0 / HEAD_DIM), EPS)", "pl.mul(q_head_sq_sum, 1.0 / HEAD_DIM), 0.0)",
     "tiny_rows", id="no_eps"),
    # drops the RoPE sign: (a·c + b·s, b·c + a·s)
    pytest.param("no_rope_sign", "pl.mul(pl.mul(q_rope_swapped, q_sign), q_sin_il)", "pl.mul(q_rope_swapped, q_sin_il)",
     "realistic", id="no_rope_sign"),
    # inv_rms off by 2^-7 relative (about 2 bf16 ULP)
    pytest.param("inv_2ulp", INV_LINE, INV_LINE.replace("pl.reshape(q_head_inv_rms,", "pl.reshape(pl.mul(q_head_inv_rms, 1.0 + 2.0**-7),"),
     "realistic", id="inv_2ulp"),
    # a reordered sum of squares that is also 2^-6 too large
    pytest.param("sum_perturbed", SUM_LINE, "                q_head_sq_sum = pl.mul(q_head_sq_sum, 1.0 + 2.0**-6)\n" + SUM_LINE,
     "wide_range", id="sum_perturbed"),
])
def test_broken_retiled_is_a_regression(name, old, new, recipe):
    bad = broken(name, old, new)
    r = equiv.check(bad, shapes="T=8,H=4", recipes=[recipe], seed=0, shrink_budget=0)
    assert models(r) == set(ROW_SUM_ORDERS)
    for c in r.results:
        o = c.outputs["q"]
        assert o.verdict == "regression", (name, c.case, o.reasons)
        assert o.max_ulp > 1
        assert any("break the contract" in reason for reason in o.reasons)
    assert not r.ok
