"""expert_shared: retiled drops sh columns [4096·(D div 4096), D) (all of PRO's [4096, 7168)),
bit-exact where both versions write, pre's T mod 8 requant hole and 16-row output window,
and broken retiles caught as regressions."""

from __future__ import annotations

import dataclasses

import pytest

import equiv
from tests.mutation import edited_kernel
from kernels.expert_shared import retiled

PAIR = equiv.get("expert_shared")


def broken(name: str, old: str, new: str):
    """retiled.expert_shared with one source line changed (compiled from retiled.py's text)."""
    return dataclasses.replace(PAIR, retiled=edited_kernel(retiled, "expert_shared", old, new, name))


def oob_writes(result, side: str) -> set[str]:
    return {h["tensor"] for h in result.hazards.get(side, []) if h["kind"] == "oob-write"}


@pytest.fixture(scope="module")
def pro():
    return equiv.run_case(PAIR, equiv.Case(PAIR.shapes.preset("pro")[0], "realistic", 0))


def test_pro_retiled_leaves_columns_4096_to_7168_unwritten(pro):
    o = pro.outputs["sh"]
    assert o.verdict == "regression", o.reasons
    assert o.unwritten["retiled"]["ranges"] == [[[0, 8]], [[4096, 7168]]]
    assert o.unwritten["retiled"]["count"] == 8 * 3072
    assert "pre" not in o.unwritten and not o.poisoned
    # Where both write (columns [0, 4096)) the bits agree.
    assert o.compared == 8 * 4096 and o.differing == 0


def test_pro_pre_agrees_with_the_float64_reference(pro):
    err = pro.outputs["sh"].error_vs_ref["pre"]
    # The int32 GEMMs are exact and the requant codes match the reference's, so pre is
    # correctly rounded up to the fp32 dequant chain (measured max 0.5 ULP + a hair).
    assert err["max"] < 1.0, err
    assert err["hist"].get("≤0.5", 0) >= 0.999 * 8 * 4096, err


def test_pro_pre_window_overrun_is_reported_but_not_blamed_on_retiled(pro):
    assert oob_writes(pro, "pre") == {"sh"} and not oob_writes(pro, "retiled")
    assert any(r.startswith("note: pre oob-write on sh") for r in pro.outputs["sh"].reasons)


def test_flash_is_bit_exact():
    r = equiv.check(PAIR, shapes="flash", recipes=["realistic", "saturated", "binades"], seed=0, shrink_budget=0)
    assert len(r.results) == 3
    for case in r.results:
        o = case.outputs["sh"]
        assert o.verdict == "equivalent", (case.case, o.reasons)
        assert o.differing == 0 and o.compared == 8 * 4096
        assert not o.unwritten and not o.poisoned
        assert o.error_vs_ref["pre"] == o.error_vs_ref["retiled"]
    realistic = r.results[0].outputs["sh"].error_vs_ref["pre"]
    assert realistic["max"] < 1.0, realistic


@pytest.mark.parametrize("T", [1, 4, 7, 9, 12, 15])
def test_pre_rows_past_the_last_requant_group_read_uninitialised_scratch(T):
    # D = 4096 is the smallest hidden size both versions cover fully (retiled's dequant runs
    # D div 4096 blocks); I = 512 keeps the case fast.
    r = equiv.run_case(PAIR, equiv.Case(equiv.Shape(T=T, D=4096, I=512, L=10), "realistic", T))
    o = r.outputs["sh"]
    assert o.verdict == "pre-defect", o.reasons
    assert o.poisoned["pre"]["ranges"] == [[[8 * (T // 8), T]], [[0, 4096]]]
    assert not o.unwritten and "retiled" not in o.poisoned
    assert o.compared == 8 * (T // 8) * 4096 and o.differing == 0
    # pre stores 16-row windows into the T-row sh.
    assert oob_writes(r, "pre") == {"sh"} and not oob_writes(r, "retiled")


@pytest.mark.parametrize("T,window_overrun", [(8, True), (16, False), (32, False)])
def test_multiples_of_8_are_equivalent(T, window_overrun):
    r = equiv.run_case(PAIR, equiv.Case(equiv.Shape(T=T, D=4096, I=512, L=0), "realistic", 0))
    o = r.outputs["sh"]
    assert o.verdict == "equivalent", o.reasons
    assert o.differing == 0 and o.compared == T * 4096
    assert (oob_writes(r, "pre") == {"sh"}) is window_overrun


def test_the_module_assert_rejects_t_between_16_and_32():
    r = equiv.run_case(PAIR, equiv.Case(equiv.Shape(T=20, D=4096, I=512, L=10), "realistic", 0))
    o = r.outputs["sh"]
    assert o.verdict == "rejected"
    assert any("pre rejects" in x for x in o.reasons) and any("retiled rejects" in x for x in o.reasons)


def test_swapped_dequant_scale_order_is_a_regression():
    # Column scale before row scale changes the fp32 product in the last bit on a fraction of
    # elements; the bf16 rounding hides almost all of it (measured: about 1 element in 10^5
    # differs), so the check runs a few seeds and needs only one of them to show it.
    pair = broken(
        "col_scale_first",
        "y_2d = pl.col_expand_mul(pl.row_expand_mul(y_2d, h_tile_scale_dq), w2_scale_chunk)",
        "y_2d = pl.row_expand_mul(pl.col_expand_mul(y_2d, w2_scale_chunk), h_tile_scale_dq)")
    r = equiv.check(pair, shapes="T=16,D=4096,I=512,L=10", recipes=["realistic"], examples=4, seed=0,
                    shrink_budget=0)
    assert not r.ok and len(r.regressions) >= 1
    for case in r.regressions:
        o = case.outputs["sh"]
        assert o.max_ulp == 1 and o.differing >= 1 and not o.unwritten
        assert any("break the contract" in x for x in o.reasons)


def test_truncating_requant_is_a_regression():
    pair = broken("trunc_requant",
                  'eh_q_i32 = pl.cast(eh_q_scaled, target_type=pl.INT32, mode="rint")',
                  'eh_q_i32 = pl.cast(eh_q_scaled, target_type=pl.INT32, mode="trunc")')
    r = equiv.run_case(pair, equiv.Case(equiv.Shape(T=8, D=4096, I=512, L=10), "realistic", 0))
    o = r.outputs["sh"]
    assert o.verdict == "regression", o.reasons
    assert o.differing > 0.5 * o.compared
    assert any("accuracy drop" in x for x in o.reasons)


def test_a_dropped_dequant_column_block_is_a_regression():
    pair = broken("seven_blocks", "for dg in pl.pipeline(W2_ACT_INNER, stage=2):",
                  "for dg in pl.pipeline(W2_ACT_INNER - 1, stage=2):")
    r = equiv.run_case(pair, equiv.Case(equiv.Shape(T=8, D=4096, I=512, L=10), "realistic", 0))
    o = r.outputs["sh"]
    assert o.verdict == "regression", o.reasons
    assert o.unwritten["retiled"]["ranges"] == [[[0, 8]], [[3584, 4096]]]
