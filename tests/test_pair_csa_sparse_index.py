"""csa.sparse_index: bit-exact where both versions write, PRE's T mod 8 coverage gap, and
broken retiled variants caught as regressions."""

import dataclasses

import pytest
import torch

import equiv
from tests.mutation import edited_kernel
from equiv.runner import make_inputs
from kernels.csa_sparse_index import retiled

PAIR = equiv.get("csa.sparse_index")
OUTPUTS = ("cmp_sparse_indices", "valid_block_mask")


def _cols(shape, name):
    return PAIR.outputs(shape)[name][0][1]


def assert_case(res):
    """Equivalent at T % 8 == 0; otherwise pre-defect with exactly rows [8·(T div 8), T) unwritten
    by PRE. Where both write, same integers, equal to the closed form."""
    T = res.case.shape.B * res.case.shape.S
    for name in OUTPUTS:
        o = res.outputs[name]
        ncols = _cols(res.case.shape, name)
        assert o.differing == 0, (res.case, o.reasons)
        assert "retiled" not in o.unwritten and not o.poisoned, (res.case, o.reasons)
        assert o.error_vs_ref["retiled"]["max"] == 0.0, (res.case, o.reasons)
        covered = 8 * (T // 8)
        if T % 8 == 0:
            assert o.verdict == "equivalent", (res.case, o.reasons)
            assert o.compared == T * ncols
        else:
            assert o.verdict == "pre-defect", (res.case, o.reasons)
            gap = o.unwritten["pre"]
            assert gap["exact"] and gap["ranges"] == [[[covered, T]], [[0, ncols]]], (res.case, gap)
            assert o.compared == covered * ncols
        if covered:
            assert o.error_vs_ref["pre"]["max"] == 0.0


def test_presets_bit_exact():
    for preset in ("nominal", "demo", "flash", "pro"):
        r = equiv.check(PAIR, shapes=preset)
        assert r.ok and {v for x in r.results for v in x.verdicts.values()} == {"equivalent"}
        for res in r.results:
            assert_case(res)
    (pro,) = PAIR.shapes.preset("pro")
    assert _cols(pro, "valid_block_mask") == 9 and _cols(pro, "cmp_sparse_indices") == 128 + 1024


@pytest.mark.parametrize("shape,gap", [("B=12,S=1,IDX_TOPK=512,MAX_SEQ_LEN=8192", [8, 12]),
                                       ("B=4,S=1,IDX_TOPK=512,MAX_SEQ_LEN=8192", [0, 4]),
                                       ("B=6,S=2,IDX_TOPK=1024,MAX_SEQ_LEN=1048576", [8, 12])])
def test_pre_gap_at_t_not_multiple_of_8(shape, gap):
    r = equiv.check(PAIR, shapes=shape)
    assert r.ok
    for res in r.results:
        for name in OUTPUTS:
            o = res.outputs[name]
            assert o.verdict == "pre-defect"
            assert o.unwritten["pre"]["ranges"][0] == [gap]
        assert_case(res)


def test_fuzz_bit_exact_where_both_cover():
    r = equiv.check(PAIR, shapes="fuzz", examples=40, seed=7, shrink_budget=0)
    assert r.ok, [x.repro() for x in r.regressions]
    for res in r.results:
        assert_case(res)
    shapes = [x.case.shape for x in r.results]
    Ts = {s.B * s.S for s in shapes}
    assert any(t % 8 for t in Ts) and any(t % 8 == 0 for t in Ts)
    assert any(t > 8 and t % 8 for t in Ts)  # a partial gap, not just T < 8
    assert {s.S for s in shapes} == {1, 2}
    assert {x.case.recipe for x in r.results} == {"realistic", "codes"}


def test_codes_recipe_exercises_the_bounds():
    """The adversarial recipe really holds positions >= WIN, codes at both bounds, kept codes
    past block 1 and int32 extremes."""
    seen = {"p>=128": 0, "p%128!=127": 0, "raw==lo": 0, "raw==hi": 0, "raw==hi-1 kept": 0, "int32 max": 0,
            "int32 min": 0, "block>=2 live": 0}
    for seed in range(6):
        for shape in PAIR.shapes.preset("nominal"):
            inp = make_inputs(PAIR, equiv.Case(shape, "codes", seed))
            ref = PAIR.reference(inp, shape)
            pos = inp["position_ids"].to(torch.int64)
            raw = inp["idx_topk_full"].reshape(pos.numel(), -1)[:, :shape.IDX_TOPK].to(torch.int64)
            lo = 128 + shape.S
            hi = (lo + (pos + 1) // 4).unsqueeze(1)
            seen["p>=128"] += int((pos >= 128).sum())
            seen["p%128!=127"] += int(((pos >= 128) & (pos % 128 != 127)).sum())
            seen["raw==lo"] += int((raw == lo).sum())
            seen["raw==hi"] += int((raw == hi).sum())
            seen["raw==hi-1 kept"] += int(((raw == hi - 1) & (ref["cmp_sparse_indices"][:, 128:] == raw)).sum())
            seen["int32 max"] += int((raw == 2**31 - 1).sum())
            seen["int32 min"] += int((raw == -(2**31)).sum())
            seen["block>=2 live"] += int(ref["valid_block_mask"][:, 2:].sum())
    assert all(seen.values()), seen


def _variant(old: str, new: str):
    return edited_kernel(retiled, "sparse_index", old, new)


@pytest.mark.parametrize("old,new,output", [
    # keeps raw == upper bound (<= instead of <)
    ("c_upper = pl.add(c_pos_q, CSA_CMP_WIN_S_F)", "c_upper = pl.add(c_pos_q, CSA_CMP_WIN_S_F + 1.0)",
     "cmp_sparse_indices"),
    # overlay only from earlier tokens of the batch (o < s instead of o <= s)
    ("if topk_os <= topk_s:", "if topk_os < topk_s:", "cmp_sparse_indices"),
    # block 0 of the validity mask never written
    ("pl.write(valid_block_mask, [c_t0, 0], pl.cast(1, pl.INT32))", "pass", "valid_block_mask"),
])
def test_broken_retiled_is_a_regression(old, new, output):
    broken = dataclasses.replace(PAIR, retiled=_variant(old, new))
    r = equiv.check(broken, shapes="nominal", recipes=["codes"], shrink_budget=0)
    assert not r.ok
    assert all(x.outputs[output].verdict == "regression" for x in r.results), \
        [x.outputs[output].reasons for x in r.results]
