"""Pair-free checks of model files at two git revisions, nothing registered.

Each test builds a tiny pypto-lib-like repository (``models/toy/config.py``, a kernel file
with ``@pl.jit`` entry, ``golden_*``, ``build_tensor_specs`` and a ``__main__`` calling
``golden.run_jit``), commits revisions of it, and runs ``equiv check --source ... --pair-free``.
"""

from __future__ import annotations

import subprocess
import textwrap

import pytest

from equiv.cli import main

CONFIG = '''
from dataclasses import dataclass


@dataclass(frozen=True)
class Cfg:
    name: str
    hidden_size: int


DEMO = Cfg("demo", 16)
PRO = Cfg("pro", 24)
TOKENS = 8
'''

# {tile}: rows per block; {blocks}: expression for the block count; {extra}: lines in the block.
KERNEL = '''
import pypto.language as pl

from config import DEMO as M, TOKENS

T = TOKENS
D = M.hidden_size
T_TILE = {tile}
{module_assert}


@pl.jit
def scale_test(x: pl.Tensor[[T, D], pl.FP32], y: pl.Out[pl.Tensor[[T, D], {ydtype}]]):
    for b in pl.spmd({blocks}, name_hint="rows"):
        t = pl.load(x, [b * T_TILE, 0], [T_TILE, D])
        {body}
    return y


def golden_scale(tensors):
    tensors["y"][:] = tensors["x"] * 2.0


def build_tensor_specs():
    import torch
    from golden import TensorSpec

    return [
        TensorSpec("x", [T, D], torch.float32, init_value=torch.randn),
        TensorSpec("y", [T, D], {ytorch}, is_output=True),
    ]


if __name__ == "__main__":
    import argparse
    from golden import ratio_allclose, run_jit

    parser = argparse.ArgumentParser()
    parser.add_argument("-p", "--platform", default="a2a3")
    args = parser.parse_args()
    run_jit(fn=scale_test, specs=build_tensor_specs(), golden_fn=golden_scale, rtol=1e-5, atol=1e-5,
            compare_fn={{"y": ratio_allclose()}})
'''

STORE = "pl.store(pl.mul(t, 2.0), [b * T_TILE, 0], y)"


def kernel(tile: int = 4, blocks: str = "T // T_TILE", body: str = STORE, module_assert: str = "",
           ydtype: str = "pl.FP32", ytorch: str = "torch.float32") -> str:
    return KERNEL.format(tile=tile, blocks=blocks, body=body, module_assert=module_assert,
                         ydtype=ydtype, ytorch=ytorch)


def git(repo, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def make_repo(tmp_path):
    """A git repository with the toy model's config staged (the first commit takes it)."""
    r = tmp_path / "lib"
    (r / "models" / "toy").mkdir(parents=True)
    git(r, "init", "-q")
    git(r, "config", "user.email", "t@example.com")
    git(r, "config", "user.name", "t")
    (r / "models" / "toy" / "config.py").write_text(CONFIG)
    git(r, "add", "models/toy/config.py")
    return r


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path)


def commit(repo, files: dict[str, str], message: str = "rev") -> str:
    for path, text in files.items():
        full = repo / path
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_text(textwrap.dedent(text))
        git(repo, "add", path)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def check(repo, source: str, a: str, b: str, *extra: str) -> int:
    return main(["check", "--source", source, "--pre-rev", a, "--retiled-rev", b, "--repo", str(repo),
                 "--pair-free", "--recipe", "realistic", *extra])


FILE = "models/toy/scale.py"


def test_clean_retile_is_equivalent(repo, capsys):
    a = commit(repo, {FILE: kernel(tile=4)})
    b = commit(repo, {FILE: kernel(tile=2)})
    assert check(repo, FILE, a, b) == 0
    out = capsys.readouterr().out
    assert "scale_test: EQUIVALENT" in out
    assert "result: OK" in out


def test_coverage_hole_is_a_regression_and_names_the_rows(repo, capsys):
    a = commit(repo, {FILE: kernel(tile=4)})
    b = commit(repo, {FILE: kernel(tile=4, blocks="T // T_TILE - 1")})
    assert check(repo, FILE, a, b) == 1
    out = capsys.readouterr().out
    assert "scale_test: REGRESSION" in out
    assert "rows [4, 8)" in out and "unwritten" in out


def test_model_instance_sizes_the_file(repo, capsys):
    a = commit(repo, {FILE: kernel(tile=4)})
    # the hole only exists when D > 16: the block skips columns 16.. of PRO's 24
    b = commit(repo, {FILE: kernel(tile=4, body="pl.store(pl.mul(pl.load(x, [b * T_TILE, 0], [T_TILE, 16]), 2.0), "
                                                 "[b * T_TILE, 0], y)")})
    assert check(repo, FILE, a, b) == 0  # DEMO: hidden_size 16, every column written
    capsys.readouterr()
    assert check(repo, FILE, a, b, "--model", "PRO") == 1
    assert "cols [16, 24)" in capsys.readouterr().out


def test_renamed_file_is_followed(repo, capsys):
    a = commit(repo, {FILE: kernel(tile=4)})
    git(repo, "mv", FILE, "models/toy/scale_rows.py")
    b = commit(repo, {"models/toy/scale_rows.py": kernel(tile=2)}, "rename and retile")
    assert check(repo, "models/toy/scale_rows.py", a, b) == 0
    out = capsys.readouterr().out
    assert "models/toy/scale_rows.py was models/toy/scale.py" in out and "(renamed)" in out
    assert "scale_test: EQUIVALENT" in out


def test_interface_change_is_its_own_outcome(repo, capsys):
    a = commit(repo, {FILE: kernel(tile=4)})
    b = commit(repo, {FILE: kernel(tile=4, ydtype="pl.BF16", ytorch="torch.bfloat16",
                                   body="pl.store(pl.cast(pl.mul(t, 2.0), target_type=pl.BF16), "
                                        "[b * T_TILE, 0], y)")})
    assert check(repo, FILE, a, b) == 0
    out = capsys.readouterr().out
    assert "INTERFACE CHANGED" in out
    assert "float32" in out and "bfloat16" in out
    assert "REGRESSION" not in out and "EQUIVALENT" not in out


def test_unsupported_op_cannot_be_judged(repo, capsys):
    a = commit(repo, {FILE: kernel(tile=4)})
    b = commit(repo, {FILE: kernel(tile=4, body="pl.store(pl.frobnicate(t), [b * T_TILE, 0], y)")})
    assert check(repo, FILE, a, b) == 2
    out = capsys.readouterr().out
    assert "CANNOT JUDGE" in out and "pl.frobnicate" in out and "scale.py:" in out
    assert "REGRESSION" not in out and "result: OK" not in out


def test_inputs_larger_than_the_machine_cannot_be_judged_before_any_is_built(repo, capsys):
    # A whole-model file: its specs declare far more than any machine's memory. Sized on the
    # meta device, it is refused with the numbers instead of meeting the out-of-memory killer.
    huge = kernel().replace(
        '''        TensorSpec("y", [T, D], {ytorch}, is_output=True),'''.format(ytorch="torch.float32"),
        '''        TensorSpec("y", [T, D], torch.float32, is_output=True),
        TensorSpec("w", [1 << 20, 1 << 20], torch.bfloat16, init_value=torch.randn),''')
    assert "1 << 20" in huge
    a = commit(repo, {FILE: huge})
    assert check(repo, FILE, a, a) == 2
    out = capsys.readouterr().out
    assert "CANNOT JUDGE" in out and "2048.0 GiB" in out and "memory available here" in out
    assert out.count("2048.0 GiB") == 1 and "pre and retiled (one revision)" in out  # sized once, said once
    assert "EQUIVALENT" not in out and "result: OK" not in out


def test_declared_input_bytes_are_the_specs_of_the_largest_call(repo):
    from equiv.pairfree import discovery
    from equiv.pairfree.pair import Revisions
    from equiv.source import SourceRef

    a = commit(repo, {FILE: kernel()})
    ref = SourceRef(FILE, "", a, str(repo))
    revisions = Revisions(ref, ref)
    mod = revisions.module("pre")
    assert discovery.declared_input_bytes(mod, ref.read()) == 2 * 8 * 16 * 4  # x and y, [8, 16] fp32
    # a block that reads a value cannot run on the meta device: no size, and the check goes on
    reads = kernel().replace("    return [\n", "    assert torch.ones(1).item() == 1.0\n    return [\n")
    assert ".item()" in reads
    b = commit(repo, {FILE: reads})
    ref_b = SourceRef(FILE, "", b, str(repo))
    assert discovery.declared_input_bytes(Revisions(ref_b, ref_b).module("pre"), ref_b.read()) is None
    assert check(repo, FILE, b, b) == 0


def test_the_sizing_run_leaves_nothing_behind_for_the_real_run(repo, capsys):
    # pypto-lib files memoise tables at module level: a table first built during the meta-device
    # sizing run must not be what the real run reads (a meta tensor has no values: .item() fails).
    cached = kernel().replace("def build_tensor_specs():", '''_TABLES = {}


def _table():
    import torch

    if "t" not in _TABLES:
        _TABLES["t"] = torch.arange(4.0)
    return _TABLES["t"]


def build_tensor_specs():
    assert float(_table()[1].item()) == 1.0''')
    assert "_TABLES" in cached
    a = commit(repo, {FILE: cached})
    assert check(repo, FILE, a, a) == 0
    out = capsys.readouterr().out
    assert "scale_test: EQUIVALENT" in out


def test_unsupported_keyword_cannot_be_judged_on_both_sides(repo, capsys):
    body = "pl.store(pl.mul(t, 2.0, no_such_keyword=1), [b * T_TILE, 0], y)"
    a = commit(repo, {FILE: kernel(tile=4, body=body)})
    b = commit(repo, {FILE: kernel(tile=2, body=body)})
    assert check(repo, FILE, a, b) == 2  # both sides hit it: not "both-defect, OK"
    out = capsys.readouterr().out
    assert "CANNOT JUDGE" in out and "no_such_keyword" in out


def test_kernel_assert_is_a_rejection(repo, capsys):
    a = commit(repo, {FILE: kernel(tile=4)})
    b = commit(repo, {FILE: kernel(tile=16, module_assert='assert T % T_TILE == 0, "T must be a multiple of T_TILE"')})
    assert check(repo, FILE, a, b) == 1  # retiled rejects what pre accepts: a narrowed contract
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "T must be a multiple of T_TILE" in out
    assert "narrowed contract" in out and "scale.py:9" in out


def test_both_sides_asserting_is_rejected_not_a_verdict(repo, capsys):
    text = kernel(tile=16, module_assert='assert T % T_TILE == 0, "T must be a multiple of T_TILE"')
    a = commit(repo, {FILE: text})
    assert check(repo, FILE, a, a) == 0
    out = capsys.readouterr().out
    assert "REJECTED" in out and "T must be a multiple of T_TILE" in out


# ----------------------------------------------------------------------------------------
# Modes, scalars, in-out tensors, run-time asserts
# ----------------------------------------------------------------------------------------
MODES_KERNEL = '''
import pypto.language as pl

from config import DEMO as M

T_DYN = pl.dynamic("T_DYN")
D = M.hidden_size
T_TILE = 2


@pl.jit
def axpy_test(x: pl.Tensor[[T_DYN, D], pl.FP32], acc: pl.InOut[pl.Tensor[[T_DYN, D], pl.FP32]],
              alpha: pl.Scalar[pl.FP32]):
    x.bind_dynamic(0, T_DYN)
    t_dim = pl.tensor.dim(x, 0)
    assert D % 8 == 0, "D must be a multiple of 8"
    for b in pl.spmd(t_dim // T_TILE, name_hint="rows"):
        t = pl.load(x, [b * T_TILE, 0], [T_TILE, D])
        a = pl.load(acc, [b * T_TILE, 0], [T_TILE, D])
        pl.store(pl.add(a, pl.mul(t, alpha)), [b * T_TILE, 0], acc)
    return acc


def golden_axpy(tensors):
    tensors["acc"][:] = tensors["acc"] + tensors["x"] * tensors["alpha"]


def build_tensor_specs(B, S):
    import torch
    from golden import ScalarSpec, TensorSpec

    T = B * S
    return [
        TensorSpec("x", [T, D], torch.float32, init_value=lambda: torch.randn(T, D)),
        TensorSpec("acc", [T, D], torch.float32, init_value=torch.rand, is_output=True),
        ScalarSpec("alpha", torch.float32, 0.5),
    ]


if __name__ == "__main__":
    import argparse
    from golden import run_jit

    MODES = {"decode": (2, 2), "prefill": (1, 8)}
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["decode", "prefill", "all"], default="decode")
    args = parser.parse_args()
    for mode in (list(MODES) if args.mode == "all" else [args.mode]):
        B, S = MODES[mode]
        run_jit(fn=axpy_test, specs=build_tensor_specs(B, S), golden_fn=golden_axpy)
'''


def test_every_mode_scalars_and_in_out_tensors(repo, capsys):
    path = "models/toy/axpy.py"
    a = commit(repo, {path: MODES_KERNEL})
    b = commit(repo, {path: MODES_KERNEL.replace("T_TILE = 2", "T_TILE = 1")})
    assert check(repo, path, a, b) == 0
    out = capsys.readouterr().out
    assert "modes decode, prefill" in out
    # the in-out tensor starts at its initial value (written), so nothing is unwritten
    assert "equivalent 2" in out and "both-defect" not in out and "unwritten" not in out.replace("unwritten ret/pre", "")
    assert "axpy_test: EQUIVALENT" in out


def test_run_time_assert_in_the_entry_is_a_rejection(repo, capsys):
    path = "models/toy/axpy.py"
    a = commit(repo, {path: MODES_KERNEL})
    b = commit(repo, {path: MODES_KERNEL.replace('assert D % 8 == 0', 'assert D % 32 == 0')})
    assert check(repo, path, a, b) == 1
    out = capsys.readouterr().out
    assert "retiled rejects this shape: AssertionError: D must be a multiple of 8" in out
    assert "narrowed contract" in out


# ----------------------------------------------------------------------------------------
# Registered pairs are held to the same honesty
# ----------------------------------------------------------------------------------------
def _double(x, y, cfg):
    from equiv import tile as pl

    for b in pl.spmd(cfg.T // 2, name_hint="rows"):
        y[b * 2:b * 2 + 2, :] = pl.mul(x[b * 2:b * 2 + 2, :], 2.0)


def _double_with_unknown_keyword(x, y, cfg):
    from equiv import tile as pl

    for b in pl.spmd(cfg.T // 2, name_hint="rows"):
        y[b * 2:b * 2 + 2, :] = pl.mul(x[b * 2:b * 2 + 2, :], 2.0, not_a_keyword=True)


def _tiny_pair(pre, retiled):
    import torch

    from equiv.dtypes import FP32
    from equiv.pair import KernelPair
    from equiv.shapes import Dim, ShapeSpace

    return KernelPair(
        name="toy.double", pre=pre, retiled=retiled,
        reference=lambda inputs, shape: {"y": inputs["x"].double() * 2},
        outputs=lambda shape: {"y": ([shape.T, 8], FP32)},
        recipes={"realistic": lambda shape, gen: {"x": torch.randn(shape.T, 8, generator=gen)}},
        shapes=ShapeSpace({"T": Dim(2, 8, step=2)}, {"nominal": [{"T": 4}]}))


@pytest.mark.parametrize("pre_gap", [False, True])
def test_registered_pair_emulator_gap_is_cannot_judge_not_a_verdict(pre_gap):
    from equiv.check import check as run_check
    from equiv.summary import status_line

    pair = _tiny_pair(_double_with_unknown_keyword if pre_gap else _double, _double_with_unknown_keyword)
    result = run_check(pair, shapes="T=4", shrink_budget=0)
    assert {o.verdict for r in result.results for o in r.outputs.values()} == {"cannot judge"}
    assert not result.regressions and not result.failed
    assert result.unjudged and "not_a_keyword" in result.gaps()[0]
    assert status_line([result]).startswith("result: CANNOT JUDGE")


def test_registered_pair_that_works_is_still_judged():
    from equiv.check import check as run_check

    result = run_check(_tiny_pair(_double, _double), shapes="T=4", shrink_budget=0)
    assert result.counts["y"]["equivalent"] == 1 and not result.unjudged


def test_fuzzing_varies_token_counts_and_shrinks(repo, capsys):
    # pre rounds the block count up (and pads past the end at odd T); retiled rounds down:
    # equal at the file's TOKENS=8, a hole at any T that is not a multiple of 4.
    a = commit(repo, {FILE: kernel(tile=4, blocks="(T + T_TILE - 1) // T_TILE")})
    b = commit(repo, {FILE: kernel(tile=4)})
    assert check(repo, FILE, a, b) == 0
    capsys.readouterr()
    assert check(repo, FILE, a, b, "--shapes", "fuzz", "--examples", "6") == 1
    out = capsys.readouterr().out
    assert "TOKENS=8" in out and "regression on y at mode=0,TOKENS=1" in out  # shrunk to one token
    assert "--shapes 'mode=0,TOKENS=1'" in out


def _double_with_a_shape_error(x, y, cfg):
    from equiv import tile as pl

    for b in pl.spmd(cfg.T // 2, name_hint="rows"):
        y[b * 2:b * 2 + 2, :] = pl.add(x[b * 2:b * 2 + 2, :], x[0:1, :])  # [2, 8] + [1, 8]: an error


def test_both_versions_raising_is_cannot_judge_and_one_raising_is_a_regression():
    from equiv.check import check as run_check
    from equiv.summary import status_line

    both = run_check(_tiny_pair(_double_with_a_shape_error, _double_with_a_shape_error), shapes="T=4",
                     shrink_budget=0)
    assert {o.verdict for r in both.results for o in r.outputs.values()} == {"cannot judge"}
    assert not both.regressions and both.unjudged and "both raised" in both.gaps()[0]
    assert "operands of shapes" in both.gaps()[0]
    assert status_line([both]).startswith("result: CANNOT JUDGE")
    one = run_check(_tiny_pair(_double, _double_with_a_shape_error), shapes="T=4", shrink_budget=0)
    assert one.regressions and not one.unjudged


def test_spec_builders_may_create_one_spec_from_another(repo, capsys):
    # pypto-lib's multi-rank files stack per-rank values: init_value=lambda: spec.create_tensor()
    derived = kernel().replace(
        '''        TensorSpec("x", [T, D], torch.float32, init_value=torch.randn),''',
        '''        TensorSpec("x", [T, D], torch.float32,
                   init_value=lambda: single.create_tensor() + single.create_tensor()),''').replace(
        '''    return [
        TensorSpec("x"''',
        '''    single = TensorSpec("x1", [T, D], torch.float32, init_value=torch.randn, resident=0)
    assert single.is_resident and not TensorSpec("o", [1], torch.float32).is_resident
    return [
        TensorSpec("x"''')
    assert "single.create_tensor()" in derived and "single = TensorSpec" in derived
    a = commit(repo, {FILE: derived})
    assert check(repo, FILE, a, a) == 0
    out = capsys.readouterr().out
    assert "scale_test: EQUIVALENT" in out


@pytest.mark.parametrize("init, outcome", [
    ('TensorSpec("z", [1], torch.float32).not_a_method()', "CANNOT JUDGE"),  # the stand-in lacks it
    ("1 / 0", "error"),  # the file's own error
])
def test_a_spec_builder_that_raises_is_cannot_judge_or_an_error_never_a_crash(repo, capsys, init, outcome):
    src = kernel().replace("init_value=torch.randn),", f"init_value=lambda: {init}),")
    a = commit(repo, {FILE: src})
    assert check(repo, FILE, a, a) == 2
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text
    assert "raised before its run_jit call of scale_test" in text and "scale.py:" in text
    if outcome == "CANNOT JUDGE":
        assert "scale_test: CANNOT JUDGE" in captured.out and "not_a_method" in captured.out
    else:
        assert captured.err.startswith("equiv check: error:") and "ZeroDivisionError" in captured.err
