"""A model file judged by its own contract: its harness (zero-filled outputs), its comparison
(``rtol``/``atol`` and ``compare_fn``s), its golden at each shape, a declared contract, and which
way a difference goes.

Each test writes a small pypto-lib-like repository (config, kernel file with golden, specs and a
``__main__`` calling ``golden.run_jit``) and runs ``equiv check --pair-free`` on it.
"""

from __future__ import annotations

import torch

from equiv.pairfree import comparators
from equiv.pairfree.contract import declared_contract, file_test
from equiv.pairfree.golden import RunCall, TensorSpec
from tests.test_pairfree import check, commit, make_repo

FILE = "models/toy/scale.py"

# {body}: the kernel's block; {golden}: the golden's body; {compare}: run_jit's compare_fn.
KERNEL = '''
{header}
import pypto.language as pl

from config import DEMO as M, TOKENS

T = TOKENS
D = M.hidden_size
T_TILE = 4
{module_assert}


@pl.jit
def scale_test(x: pl.Tensor[[T, D], pl.FP32], y: pl.Out[pl.Tensor[[T, D], {ydtype}]]):
    for b in pl.spmd({blocks}, name_hint="rows"):
        t = pl.load(x, [b * T_TILE, 0], [T_TILE, D])
        {body}
    return y


def golden_scale(tensors):
    import torch

    x, y = tensors["x"], tensors["y"]
    {golden}


def build_tensor_specs():
    import torch
    from golden import TensorSpec

    return [
        TensorSpec("x", [T, D], torch.float32, init_value={x_init}),
        TensorSpec("y", [T, D], {ytorch}, is_output=True),
    ]


if __name__ == "__main__":
    from golden import ratio_allclose, run_jit

    run_jit(fn=scale_test, specs=build_tensor_specs(), golden_fn=golden_scale, rtol=1e-5, atol=1e-5,
            compare_fn={compare})
'''

STORE = "pl.store(pl.mul(t, 2.0), [b * T_TILE, 0], y)"
FULL = "y[:] = x * 2.0"


def kernel(body: str = STORE, golden: str = FULL, compare: str = '{"y": ratio_allclose(max_error_ratio=0.0)}',
           blocks: str = "T // T_TILE", module_assert: str = "", header: str = "", ydtype: str = "pl.FP32",
           ytorch: str = "torch.float32", x_init: str = "torch.randn") -> str:
    return KERNEL.format(body=body, golden=golden, compare=compare, blocks=blocks, module_assert=module_assert,
                         header=header, ydtype=ydtype, ytorch=ytorch, x_init=x_init)


def same(repo, capsys, text: str, *extra: str) -> tuple[int, str]:
    a = commit(repo, {FILE: text})
    code = check(repo, FILE, a, a, *extra)
    return code, flat(capsys.readouterr().out)


def flat(text: str) -> str:
    """The console wraps long lines: compare with single spaces."""
    return " ".join(text.split())


# ---- unwritten by contract ---------------------------------------------------------------------
HALF = "1"  # one block of 4 rows: rows [4, 8) of y stay unwritten


def test_region_the_golden_also_leaves_is_unwritten_by_contract(tmp_path, capsys):
    code, out = same(make_repo(tmp_path), capsys, kernel(blocks=HALF, golden="y[:4] = x[:4] * 2.0"))
    assert code == 0
    assert "unwritten by contract: the golden leaves it at zero too" in out
    assert "scale_test: EQUIVALENT" in out and "BOTH-DEFECT" not in out
    assert "file's test: pre PASS; retiled PASS" in out


def test_unwritten_by_contract_shown_in_json_and_report(tmp_path, capsys):
    import json

    js, html = tmp_path / "r.json", tmp_path / "r.html"
    code, out = same(make_repo(tmp_path), capsys, kernel(blocks=HALF, golden="y[:4] = x[:4] * 2.0"),
                     "--json", str(js), "--report", str(html))
    assert code == 0
    line = "pre leaves rows [4, 8) × all cols of y unwritten (64 elements): the golden leaves it at zero too"
    assert line in json.loads(js.read_text())["checks"][0]["own_contract"]["unwritten_by_contract"]
    assert "Unwritten by contract (not a defect): " + line in html.read_text()
    assert "unwritten by contract: " + line in out


def test_region_the_comparison_ignores_is_unwritten_by_contract(tmp_path, capsys):
    # The golden writes every row, but the file compares only the first 4 (valid_rows).
    code, out = same(make_repo(tmp_path), capsys,
                     kernel(blocks=HALF, compare='{"y": ratio_allclose(max_error_ratio=0.0, valid_rows=4)}'))
    assert code == 0
    assert "unwritten by contract: the file's own comparison passes whatever it holds" in out
    assert "scale_test: EQUIVALENT" in out


FIRST_ROWS = """
def first_rows(actual, expected, **kw):
    import torch

    if not torch.isfinite(actual).all():  # a sanity check of the whole tensor, values unread
        return False, "non-finite values"
    return bool(torch.allclose(actual[:4], expected[:4])), "rows 0..3 differ"
"""


def test_a_file_local_comparison_that_ignores_the_region(tmp_path, capsys):
    code, out = same(make_repo(tmp_path), capsys, kernel(blocks=HALF, header=FIRST_ROWS,
                                                         compare='{"y": first_rows}'))
    assert code == 0
    assert "unwritten by contract: the file's own comparison passes whatever it holds" in out
    assert "scale_test: EQUIVALENT" in out


def test_region_the_comparison_reads_stays_a_defect(tmp_path, capsys):
    code, out = same(make_repo(tmp_path), capsys, kernel(blocks=HALF))
    assert code == 0  # a defect both sides share is not a regression
    assert "scale_test: BOTH-DEFECT" in out
    assert "unwritten by contract" not in out
    assert "rows [4, 8)" in out and "unwritten" in out
    assert "file's test: pre FAIL (y at" in out
    assert "is a defect (the golden writes it and the file's comparison reads it); nothing the program " \
           "writes depends on it" in out


def test_unwritten_region_the_program_reads_is_named(tmp_path, capsys):
    # Block 0 adds rows 4.. of y (never written) into its own rows.
    body = ("u = pl.load(y, [4, 0], [T_TILE, D])\n"
            "        pl.store(pl.add(pl.mul(t, 2.0), u), [b * T_TILE, 0], y)")
    code, out = same(make_repo(tmp_path), capsys, kernel(blocks=HALF, body=body))
    assert "the program reads uninitialised memory: 64 elements of y depend on it" in out


def test_retiled_leaving_by_contract_what_pre_writes_still_fails(tmp_path, capsys):
    # The golden leaves rows 4.. at zero; pre writes them (zeros), retiled leaves them to the harness.
    repo = make_repo(tmp_path)
    golden = "y[:4] = x[:4] * 2.0"
    zeros = STORE + "\n        pl.store(pl.mul(pl.load(x, [4, 0], [T_TILE, D]), 0.0), [4, 0], y)"
    a = commit(repo, {FILE: kernel(blocks=HALF, golden=golden, body=zeros)})
    b = commit(repo, {FILE: kernel(blocks=HALF, golden=golden)})
    assert check(repo, FILE, a, b) == 1
    out = flat(capsys.readouterr().out)
    assert "retiled leaves rows [4, 8) × all cols of y unwritten (64 elements) where pre writes it" in out
    assert "scale_test: REGRESSION" in out


# ---- the golden at each case's shape --------------------------------------------------------------
SIZED = 'assert tuple(y.shape) == (T, D), f"golden sized for {(T, D)}, given {tuple(y.shape)}"\n    ' + FULL


def test_each_shape_uses_its_own_golden(tmp_path, capsys):
    repo = make_repo(tmp_path)
    a = commit(repo, {FILE: kernel(golden=SIZED)})
    assert check(repo, FILE, a, a, "--shapes", "mode=0,TOKENS=12;mode=0,TOKENS=4") == 0
    out = flat(capsys.readouterr().out)
    assert "scale_test: EQUIVALENT" in out
    assert "golden sized for" not in out and "reference raised" not in out


def test_a_golden_that_refuses_the_shape_is_reported_as_such(tmp_path, capsys):
    repo = make_repo(tmp_path)
    a = commit(repo, {FILE: kernel(golden='assert T % 8 == 0, "the golden needs T % 8 == 0"\n    ' + FULL)})
    assert check(repo, FILE, a, a, "--shapes", "mode=0,TOKENS=12") == 0
    out = flat(capsys.readouterr().out)
    assert "the file's golden rejects this shape" in out and "the golden needs T % 8 == 0" in out
    assert "scale_test: REJECTED" in out


# ---- the file's own test ---------------------------------------------------------------------------
def test_a_retile_failing_the_files_test_is_a_regression_whatever_the_contract(tmp_path, capsys):
    repo = make_repo(tmp_path)
    a = commit(repo, {FILE: kernel()})
    b = commit(repo, {FILE: kernel(body="pl.store(pl.mul(t, 2.001), [b * T_TILE, 0], y)")})
    assert check(repo, FILE, a, b, "--contract", "100000:fp32") == 1
    out = flat(capsys.readouterr().out)
    assert "retiled fails the file's own test of y where pre passes" in out
    assert "file's test: pre PASS; retiled FAIL (y at" in out
    assert "ratio_allclose" in out


def test_the_files_test_alone_decides_a_regression(tmp_path, capsys):
    # Retiled truncates where pre rounds: within 1 BF16 ULP of pre (the contract) and no less
    # accurate than pre + 1 ULP, but outside the file's rtol of 1e-3 against its golden.
    repo = make_repo(tmp_path)
    compare = '{"y": ratio_allclose(atol=0.0, rtol=1e-3, max_error_ratio=0.0)}'
    golden = "y[:] = (x * 2.0).to(torch.bfloat16)"
    a = commit(repo, {FILE: kernel(body=CAST.format(k="2.0"), golden=golden, compare=compare, **BF16)})
    b = commit(repo, {FILE: kernel(body=CAST.format(k="2.0").replace('"rint"', '"trunc"'), golden=golden,
                                   compare=compare, **BF16)})
    assert check(repo, FILE, a, b, "--contract", "1:bf16") == 1
    out = flat(capsys.readouterr().out)
    assert "retiled fails the file's own test of y where pre passes" in out
    assert "accuracy drop" not in out


def test_files_test_in_json_and_report(tmp_path, capsys):
    import json

    repo = make_repo(tmp_path)
    a = commit(repo, {FILE: kernel()})
    b = commit(repo, {FILE: kernel(body="pl.store(pl.mul(t, 2.001), [b * T_TILE, 0], y)")})
    js, html = tmp_path / "r.json", tmp_path / "r.html"
    assert check(repo, FILE, a, b, "--json", str(js), "--report", str(html)) == 1
    doc = json.loads(js.read_text())
    own = doc["checks"][0]["own_contract"]
    assert own["file_test"]["pre"] == "PASS" and own["file_test"]["retiled"].startswith("FAIL (y at")
    case = doc["checks"][0]["results"][0]["outputs"]["y"]
    assert case["file_test"]["retiled"]["passed"] is False and case["file_test"]["pre"]["passed"] is True
    assert "File&#39;s test on retiled" in html.read_text() or "File's test on retiled" in html.read_text()


def test_file_test_default_allclose_and_worst_element():
    spec = TensorSpec("y", [2, 3], torch.float32, is_output=True)
    call = RunCall(fn=None, specs=[spec], golden_fn=None, rtol=1e-3, atol=1e-3)
    g = torch.zeros(2, 3)
    ok = file_test(call, {"y": g + 1e-4}, {"y": g}, {})["y"]
    assert ok.passed is True
    y = g.clone()
    y[1, 2] = 0.5
    bad = file_test(call, {"y": y}, {"y": g}, {})["y"]
    assert bad.passed is False and "[1, 2]" in bad.detail and "1 of 6" in bad.detail


def test_ratio_allclose_ratio_and_valid_rows():
    e = torch.zeros(4, 4)
    a = e.clone()
    a[3, 0] = 1.0
    kw = dict(actual_outputs={}, expected_outputs={}, inputs={}, rtol=0.0, atol=1e-3)
    assert comparators.ratio_allclose(max_error_ratio=0.0)(a, e, **kw)[0] is False
    assert comparators.ratio_allclose(max_error_ratio=0.1)(a, e, **kw)[0] is True   # 1 of 16 ≤ round(1.6)
    assert comparators.ratio_allclose(max_error_ratio=0.0, valid_rows=3)(a, e, **kw)[0] is True
    assert comparators.ratio_allclose(max_error_ratio=0.0, valid_rows=3, zero_tail=True)(a, e, **kw)[0] is False
    a[0, 0] = float("nan")
    assert comparators.ratio_allclose(max_error_ratio=1.0)(a, e, **kw)[0] is False


def test_unmodelled_comparator_is_not_predicted(tmp_path, capsys):
    code, out = same(make_repo(tmp_path), capsys, kernel(compare='{"y": __import__("golden").topk_pair_compare()}'))
    assert code == 0
    assert "file's test: pre not predicted (y: topk_pair_compare is a comparison equiv does not model)" in out


# ---- the direction of a difference -------------------------------------------------------------------
# Pre writes zeros into the last 8 columns (a tile that never computed them); retiled writes them.
ZERO_COLS = ("pl.store(pl.mul(pl.load(x, [b * T_TILE, 0], [T_TILE, 8]), 2.0), [b * T_TILE, 0], y)\n"
             "        pl.store(pl.mul(pl.load(x, [b * T_TILE, 8], [T_TILE, 8]), 0.0), [b * T_TILE, 8], y)")


def test_a_fix_is_pre_defect_not_regression(tmp_path, capsys):
    repo = make_repo(tmp_path)
    a = commit(repo, {FILE: kernel(body=ZERO_COLS)})
    b = commit(repo, {FILE: kernel()})
    assert check(repo, FILE, a, b) == 0
    out = flat(capsys.readouterr().out)
    assert "scale_test: PRE-DEFECT" in out
    assert "retiled fixes pre on y" in out
    assert "file's test: pre FAIL (y at" in out and "retiled PASS" in out


def test_a_change_the_golden_disagrees_with_stays_a_regression(tmp_path, capsys):
    repo = make_repo(tmp_path)
    a = commit(repo, {FILE: kernel()})
    b = commit(repo, {FILE: kernel(body=ZERO_COLS)})
    assert check(repo, FILE, a, b) == 1
    assert "scale_test: REGRESSION" in flat(capsys.readouterr().out)


# ---- one side rejects ------------------------------------------------------------------------------
PRE_ASSERT = 'assert T >= 16, "needs at least 16 tokens"'


def test_only_pre_rejecting_still_judges_retiled(tmp_path, capsys):
    repo = make_repo(tmp_path)
    a = commit(repo, {FILE: kernel(module_assert=PRE_ASSERT)})
    b = commit(repo, {FILE: kernel()})
    assert check(repo, FILE, a, b) == 0
    out = flat(capsys.readouterr().out)
    assert "scale_test: REJECTED" in out
    assert "retiled judged alone (pre rejects this shape): no defect, file's test PASS" in out
    assert "needs at least 16 tokens" in out


def test_only_pre_rejecting_and_retiled_broken_is_a_regression(tmp_path, capsys):
    repo = make_repo(tmp_path)
    a = commit(repo, {FILE: kernel(module_assert=PRE_ASSERT)})
    b = commit(repo, {FILE: kernel(blocks=HALF)})
    assert check(repo, FILE, a, b) == 1
    out = flat(capsys.readouterr().out)
    assert "retiled judged alone (pre rejects this shape): leaves rows [4, 8) × all cols of y unwritten" in out
    assert "retiled accepts a shape pre rejects and computes it wrong" in out


# ---- a declared contract -----------------------------------------------------------------------------
BF16 = dict(ydtype="pl.BF16", ytorch="torch.bfloat16")
CAST = "pl.store(pl.cast(pl.mul(t, {k}), target_type=pl.BF16, mode=\"rint\"), [b * T_TILE, 0], y)"


def _one_ulp_apart(repo, header: str = "") -> tuple[str, str]:
    a = commit(repo, {FILE: kernel(body=CAST.format(k="2.0"), header=header, **BF16)})
    b = commit(repo, {FILE: kernel(body=CAST.format(k="2.0078125"), header=header, **BF16,
                                   compare='{"y": ratio_allclose(atol=1e-2, rtol=1e-2)}')})
    return a, b


def test_declared_contract_is_honoured_and_its_origin_printed(tmp_path, capsys):
    repo = make_repo(tmp_path)
    a, b = _one_ulp_apart(repo)
    assert check(repo, FILE, a, b) == 1  # bit-exact by default: 1 BF16 ULP apart is a regression
    capsys.readouterr()
    a, b = _one_ulp_apart(repo, header="# ci: no-sim\n# equiv: contract 3:bf16")
    assert check(repo, FILE, a, b) == 0
    out = flat(capsys.readouterr().out)
    assert f"contract ≤ 3 BF16 ULP (declared at {a[:8]}:models/toy/scale.py:3)" in out


def test_declared_per_output_contract(tmp_path, capsys):
    repo = make_repo(tmp_path)
    a, b = _one_ulp_apart(repo, header="# equiv: contract y=3:bf16")
    assert check(repo, FILE, a, b) == 0
    assert "y ≤ 3 BF16 ULP (declared at" in flat(capsys.readouterr().out)


def test_contract_option_overrides_the_declared_one(tmp_path, capsys):
    repo = make_repo(tmp_path)
    a, b = _one_ulp_apart(repo, header="# equiv: contract 3:bf16")
    assert check(repo, FILE, a, b, "--contract", "bit-exact") == 1
    assert "contract bit-exact (--contract)" in flat(capsys.readouterr().out)


def test_declared_contract_parsing():
    d = declared_contract("x = 1\n# equiv: contract 2:bf16, kv=bit-exact\n", "f.py")
    assert str(d.default) == "≤ 2 BF16 ULP" and d.per_output["kv"].bit_exact and d.origin == "declared at f.py:2"
    assert declared_contract("# nothing\n", "f.py") is None
    try:
        declared_contract("# equiv: contract 2:bogus\n", "f.py")
    except ValueError as exc:
        assert "f.py:1" in str(exc)
    else:
        raise AssertionError("a malformed declaration must be refused")


# ---- golden audit ------------------------------------------------------------------------------------
# Exact float32 ties between two BF16 neighbours, the lower one even: round-to-nearest-even and
# round-half-away-from-zero pick different neighbours at every element.
TIES = "lambda: 1 + 2**-8 + (torch.arange(T * D).reshape(T, D) % 16) * 2**-6"
RINT = 'pl.store(pl.cast(pl.mul(t, 1.0), target_type=pl.BF16, mode="rint"), [b * T_TILE, 0], y)'
AWAY = ("bits = (x.contiguous().view(torch.int32) + 0x8000) & -0x10000\n"
        "    y[:] = bits.view(torch.float32).to(torch.bfloat16)")


def audit(repo, rev: str, capsys) -> tuple[int, str]:
    from equiv.cli import main

    code = main(["audit-golden", "--repo", str(repo), "--rev", rev, FILE])
    return code, flat(capsys.readouterr().out)


def test_audit_finds_a_golden_rounding_ties_away_from_zero(tmp_path, capsys):
    repo = make_repo(tmp_path)
    a = commit(repo, {FILE: kernel(body=RINT, golden=AWAY, x_init=TIES, **BF16)})
    md = tmp_path / "audit.md"
    from equiv.cli import main

    code = main(["audit-golden", "--repo", str(repo), "--rev", a, FILE, "--markdown", str(md)])
    out = flat(capsys.readouterr().out)
    assert code == 1
    assert "| scale.py | scale_test [default] | golden suspect | golden ≠ kernel elements: y 128" in md.read_text()
    assert "scale_test [default]: golden suspect — golden ≠ kernel elements: y 128" in out
    assert "likely cause: rounding mode — at 128 exact float32 ties of its own value (e.g. 1.00390625 at [0, 0]: " \
           "golden 1.0078125, round-to-nearest-even 1)" in out
    assert "the golden rounds half away from zero (golden_scale: .view(torch.int32))" in out
    assert "y: 128 element(s) at [0, 0], [0, 1]" in out and "1 ULP off the correctly rounded value" in out


def test_audit_passes_a_golden_that_rounds_like_the_kernel(tmp_path, capsys):
    repo = make_repo(tmp_path)
    a = commit(repo, {FILE: kernel(body=RINT, golden="y[:] = x.to(torch.bfloat16)", x_init=TIES, **BF16)})
    code, out = audit(repo, a, capsys)
    assert code == 0
    assert "scale_test [default]: golden agrees — golden ≠ kernel elements: none" in out
    assert "widened to float64" in out


def test_audit_finds_a_golden_accumulating_in_low_precision(tmp_path, capsys):
    # The golden sums in bfloat16 (its own narrowing): further from float64 than the fp32 kernel.
    repo = make_repo(tmp_path)
    golden = ("acc = x.to(torch.bfloat16) * 3\n"
              "    y[:] = (acc + x.to(torch.bfloat16) / 3).to(torch.float32)")
    body = "pl.store(pl.add(pl.mul(t, 3.0), pl.mul(t, 1.0 / 3.0)), [b * T_TILE, 0], y)"
    a = commit(repo, {FILE: kernel(body=body, golden=golden)})
    code, out = audit(repo, a, capsys)
    assert code == 1
    assert "golden suspect" in out and "likely cause: accumulation dtype" in out


# ---- the gate honours the file's contract -------------------------------------------------------------
def gate(repo, base: str, head: str, *extra: str) -> int:
    from equiv.cli import main

    return main(["gate", "--repo", str(repo), "--base", base, "--head", head, "--report", "", *extra])


def test_gate_honours_a_declared_contract_and_names_it_in_junit(tmp_path, capsys):
    import xml.etree.ElementTree as ET

    repo = make_repo(tmp_path)
    a, b = _one_ulp_apart(repo, header="# equiv: contract 3:bf16")
    junit = tmp_path / "gate.xml"
    assert gate(repo, a, b, "--junit", str(junit)) == 0
    out = flat(capsys.readouterr().out)
    assert "PASS scale.py:scale_test" in out or "PASS models/toy/scale.py:scale_test" in out
    assert "contract ≤ 3 BF16 ULP (declared at" in out
    text = ET.parse(junit).getroot().find(".//testcase/system-out").text
    assert "contract ≤ 3 BF16 ULP (declared at" in text and "file's test: pre PASS; retiled PASS" in text


def test_gate_fails_a_retile_whose_own_test_fails(tmp_path, capsys):
    repo = make_repo(tmp_path)
    a = commit(repo, {FILE: kernel(header="# equiv: contract 100000:fp32")})
    b = commit(repo, {FILE: kernel(header="# equiv: contract 100000:fp32",
                                   body="pl.store(pl.mul(t, 2.001), [b * T_TILE, 0], y)")})
    assert gate(repo, a, b) == 1
    out = flat(capsys.readouterr().out)
    assert "retiled FAIL (y at" in out


def test_gate_passes_a_region_unwritten_by_contract(tmp_path, capsys):
    repo = make_repo(tmp_path)
    golden = "y[:4] = x[:4] * 2.0"
    # A file the change adds is checked against itself and fails on any defect of its own.
    a = commit(repo, {"models/toy/README.md": "toy\n"})
    b = commit(repo, {FILE: kernel(blocks=HALF, golden=golden)})
    assert gate(repo, a, b) == 0
    out = flat(capsys.readouterr().out)
    assert "new file, checked against itself" in out and "unwritten" not in out.split("gate:")[0].split("PASS")[-1]


def test_audit_over_several_seeds(tmp_path, capsys):
    from equiv.cli import main

    repo = make_repo(tmp_path)
    a = commit(repo, {FILE: kernel(body=RINT, golden=AWAY, x_init=TIES, **BF16)})
    assert main(["audit-golden", "--repo", str(repo), "--rev", a, FILE, "--seeds", "2"]) == 1
    out = flat(capsys.readouterr().out)
    assert "scale_test [default, seeds 0..1]: golden suspect — golden ≠ kernel elements: y 256" in out
    assert "seed 0 [0, 0]" in out
    assert main(["audit-golden", "--repo", str(repo), "--rev", a, FILE, "--seeds", "0"]) == 2


def test_check_reports_a_suspect_golden_beside_its_verdict(tmp_path, capsys):
    code, out = same(make_repo(tmp_path), capsys, kernel(body=RINT, golden=AWAY, x_init=TIES, **BF16))
    assert "golden suspect against pre at mode=0,TOKENS=8: y: 128 element(s)" in out
    assert "likely cause: rounding mode" in out
    # The golden is the one off: the kernel is not judged by it, but the file's own test fails.
    assert "file's test: pre FAIL" in out


def test_check_with_a_sound_golden_reports_no_suspect(tmp_path, capsys):
    code, out = same(make_repo(tmp_path), capsys,
                     kernel(body=RINT, golden="y[:] = x.to(torch.bfloat16)", x_init=TIES, **BF16))
    assert code == 0 and "golden suspect" not in out and "file's test: pre PASS" in out


def test_audit_refuses_an_unwritable_output_before_running(tmp_path, capsys):
    from equiv.cli import main

    repo = make_repo(tmp_path)
    a = commit(repo, {FILE: kernel()})
    assert main(["audit-golden", "--repo", str(repo), "--rev", a, FILE, "--json", str(tmp_path / "no" / "x.json")]) == 2
    assert "scale_test" not in capsys.readouterr().out
