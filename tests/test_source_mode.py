"""Source mode: unmodified PyPTO kernel files through the emulator (equiv.source).

Fixture kernels live in tests/fixtures/pypto_src/lib (the project's own toy files in PyPTO
syntax). The revision tests build a throwaway git repository from them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import types

import pytest
import torch

import equiv
from equiv import tile
from equiv.cli import main
from equiv.dtypes import BF16, FP32, INT32
from equiv.tile.context import RunContext, running
from equiv.tile.memory import Tensor
from equiv.options import Options
from equiv.results import Case
from equiv.runner import run_case
from equiv.shapes import Shape
from kernels.moe_combine.pair import PAIR as COMBINE
from equiv.source import (SourceError, SourceKernel, SourceLoader, SourceRef, UnsupportedOpError, call_entry,
                          exec_with_overrides, load_kernel, parse_assignments, source_pair)

LIB = os.path.join(os.path.dirname(__file__), "fixtures", "pypto_src", "lib")
COMBINE_BIND = {"T": "MOE_TOKENS", "D": "hidden_size", "TOPK": "num_experts_per_tok"}
BIND_ARG = "T=MOE_TOKENS,D=hidden_size,TOPK=num_experts_per_tok"
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def ref(name: str, entry: str = "combine_test") -> SourceRef:
    return SourceRef(os.path.join(LIB, name), entry)


def fixture_line(name: str, needle: str) -> int:
    with open(os.path.join(LIB, name)) as fh:
        for i, line in enumerate(fh, 1):
            if needle in line:
                return i
    raise AssertionError(f"{needle!r} not in {name}")


def combine_pair(pre: SourceRef, retiled: SourceRef, **kw):
    return source_pair(COMBINE, pre, retiled, bind=COMBINE_BIND, **kw)


# ----------------------------------------------------------------------------------------
# Loading: the shim is the module's own, sys.modules is untouched
# ----------------------------------------------------------------------------------------
def test_pypto_language_resolves_to_the_emulator_for_that_module_only(monkeypatch):
    fake_pypto = types.ModuleType("pypto")
    fake_config = types.ModuleType("config")
    monkeypatch.setitem(sys.modules, "pypto", fake_pypto)
    monkeypatch.setitem(sys.modules, "config", fake_config)
    before = set(sys.modules)
    mod = SourceLoader().load(ref("combine_v1.py"))
    pl = mod.pl
    assert pl is not fake_pypto and pl.__name__ == "pypto.language"
    assert pl.add is tile.add and pl.spmd is tile.spmd and pl.BF16 is BF16
    assert sys.modules["pypto"] is fake_pypto and sys.modules["config"] is fake_config
    added = set(sys.modules) - before
    assert "pypto.language" not in sys.modules
    assert added and all(name.startswith("_equiv_src_") for name in added)
    # the sibling config was read from the fixture directory, not the fake module
    assert mod.D == 256 and mod.TOPK == 2 and mod.T == 8


def test_shim_hides_emulator_internals():
    mod = SourceLoader().load(ref("combine_v1.py"))
    for internal in ("torch", "current", "reduce_sum", "rounding"):
        with pytest.raises(UnsupportedOpError, match=rf"pl\.{internal} is not covered"):
            getattr(mod.pl, internal)


def test_modules_are_cached_per_overrides():
    loader = SourceLoader()
    a = loader.load(ref("combine_v1.py"), {"hidden_size": 64})
    assert loader.load(ref("combine_v1.py"), {"hidden_size": 64}) is a
    b = loader.load(ref("combine_v1.py"), {"hidden_size": 128})
    assert b is not a and (a.D, b.D) == (64, 128)


# ----------------------------------------------------------------------------------------
# Config rebinding
# ----------------------------------------------------------------------------------------
def test_config_field_and_constant_overrides_flow_into_derived_values():
    mod = SourceLoader().load(ref("combine_v1.py"), {"hidden_size": 7168, "MOE_TOKENS": 12})
    cfg = mod.__dict__["M"]
    assert (mod.D, mod.T) == (7168, 12)
    assert cfg.hidden_size == 7168 and cfg.hc_dim == 4 * 7168  # a property of the replaced instance
    config = sys.modules[[n for n in mod.__equiv_modules__ if n.endswith("_config")][0]]
    assert config.BIG.hidden_size == 7168 and config.PRESETS["toy"].hidden_size == 7168


def test_override_of_an_upstream_constant_reaches_constants_derived_from_it():
    mod = SourceLoader().load(ref("combine_v1.py"), {"DECODE_BATCH": 5})
    assert mod.T == 5  # MOE_TOKENS = DECODE_TOKENS = DECODE_BATCH * DECODE_SEQ


def test_qualified_override_touches_one_instance():
    mod = SourceLoader().load(ref("combine_v1.py"), {"BIG.hidden_size": 32})
    config = sys.modules[[n for n in mod.__equiv_modules__ if n.endswith("_config")][0]]
    assert config.BIG.hidden_size == 32 and config.TOY.hidden_size == 256 and mod.D == 256


def test_integer_shape_values_keep_the_type_of_a_float_they_replace():
    mod = SourceLoader().load(ref("combine_v1.py"), {"clamp_limit": 0, "SCALE_MAX": 3, "hidden_size": 64})
    config = sys.modules[[n for n in mod.__equiv_modules__ if n.endswith("_config")][0]]
    assert type(config.TOY.clamp_limit) is float and config.TOY.clamp_limit == 0.0
    assert type(config.SCALE_MAX) is float and config.SCALE_MAX == 3.0
    assert type(config.TOY.hidden_size) is int


def test_unknown_override_is_an_error_listing_what_exists():
    with pytest.raises(SourceError, match=r"no constant or dataclass field named hiden_size.*hidden_size"):
        SourceLoader().load(ref("combine_v1.py"), {"hiden_size": 64})


def test_exec_with_overrides_keeps_future_imports():
    ns: dict = {}
    src = "from __future__ import annotations\nX = 1\ndef f(a: Undefined) -> None: pass\nY = X * 3\n"
    exec_with_overrides(src, "<t>", ns, {"X": 2})
    assert ns["Y"] == 6 and ns["f"].__annotations__["a"] == "Undefined"


def test_parse_assignments():
    assert parse_assignments("D=hidden_size, T=MOE_TOKENS") == {"D": "hidden_size", "T": "MOE_TOKENS"}
    assert parse_assignments(["swiglu_limit=0.0", "N=3"]) == {"swiglu_limit": 0.0, "N": 3}
    with pytest.raises(SourceError):
        parse_assignments("oops")


# ----------------------------------------------------------------------------------------
# Decorators, annotations, scalars
# ----------------------------------------------------------------------------------------
def _run_tour(flags: list[int], D: int = 8):
    fn = load_kernel(os.path.join(LIB, "dsl_tour.py"), "tour", config={"hidden_size": D})
    T = len(flags)
    with running(RunContext(Options(seed=3))) as ctx:
        x = torch.arange(T * D, dtype=torch.float32).reshape(T, D)
        args = {
            "x": Tensor.from_torch("x", x),
            "scale": Tensor.from_torch("scale", torch.full((T, 1), 0.5)),
            "flags": Tensor.from_torch("flags", torch.tensor(flags, dtype=torch.int32).reshape(T, 1)),
            "out": Tensor("out", (T, D), FP32),
            "acc": Tensor.from_torch("acc", torch.ones(1, D)),
        }
        call_entry(fn, args)
        return x, args, ctx


def test_dsl_tour_runs_eagerly_with_decorators_annotations_and_scalars():
    x, args, ctx = _run_tour([1, 0, 1])
    out = args["out"].to_torch()
    assert torch.equal(out[0], x[0] * 0.5) and torch.equal(out[2], x[2] * 0.5)
    assert torch.equal(out[1, :3], torch.zeros(3)) and bool(torch.isneginf(out[1, 3:]).all())
    assert torch.equal(args["acc"].to_torch()[0], 1 + x.sum(dim=0))
    assert bool(args["out"].written.all())
    assert not ctx.findings  # atomic adds of three blocks into one row are not races


def test_dynamic_dimension_must_agree_between_tensors():
    fn = load_kernel(os.path.join(LIB, "dsl_tour.py"), "tour", config={"hidden_size": 8})
    with running(RunContext(Options())):
        args = {"x": Tensor("x", (3, 8), FP32), "scale": Tensor("scale", (4, 1), FP32),
                "flags": Tensor("flags", (3, 1), INT32), "out": Tensor("out", (3, 8), FP32),
                "acc": Tensor("acc", (1, 8), FP32)}
        with pytest.raises(SourceError, match=r"dynamic dimension T_DYN is 3 for x but 4 for scale"):
            call_entry(fn, args)


def test_annotation_mismatch_names_parameter_and_suggests_binding():
    kernel = SourceKernel(ref("combine_v1.py"), bind={"T": "MOE_TOKENS"})
    with running(RunContext(Options())):
        args = {"sh": Tensor("sh", (8, 64), BF16), "routed_y_buf": Tensor("r", (16, 64), BF16), "num_tokens": 8,
                "ffn_out": Tensor("o", (8, 64), BF16)}
        with pytest.raises(SourceError) as err:
            kernel(cfg=Shape(T=8, D=64, TOPK=2), **args)
    msg = str(err.value)
    assert "combine_v1.py:" in msg and "parameter sh is annotated [8, 256]" in msg and "gives [8, 64]" in msg
    assert "--bind D=hidden_size" in msg


def test_dtype_mismatch_and_missing_parameters_are_errors():
    fn = load_kernel(os.path.join(LIB, "combine_v1.py"), "combine_test", config={"hidden_size": 16})
    with running(RunContext(Options())):
        good = {"sh": Tensor("sh", (8, 16), BF16), "routed_y_buf": Tensor("r", (16, 16), BF16), "num_tokens": 8,
                "ffn_out": Tensor("o", (8, 16), BF16)}
        with pytest.raises(SourceError, match=r"parameter sh is annotated pl.BF16 but the case gives pl.FP32"):
            call_entry(fn, {**good, "sh": Tensor("sh", (8, 16), FP32)})
        with pytest.raises(SourceError, match=r"takes num_tokens which the pair does not provide"):
            call_entry(fn, {k: v for k, v in good.items() if k != "num_tokens"})
        with pytest.raises(SourceError, match=r"has no parameter for extra"):
            call_entry(fn, {**good, "extra": 1})


def test_missing_entry_lists_functions():
    with pytest.raises(SourceError, match=r"has no function 'nope' \(functions: combine_test, reduce_token\)"):
        SourceLoader().entry(ref("combine_v1.py", "nope"))


# ----------------------------------------------------------------------------------------
# Unsupported ops
# ----------------------------------------------------------------------------------------
def test_uncovered_op_in_a_kernel_names_op_file_and_line():
    kernel = SourceKernel(ref("uses_unknown.py"), bind=COMBINE_BIND)
    line = fixture_line("uses_unknown.py", "pl.frobnicate")
    with running(RunContext(Options())):
        args = {"sh": Tensor("sh", (2, 16), BF16), "routed_y_buf": Tensor("r", (2, 16), BF16), "num_tokens": 2,
                "ffn_out": Tensor("o", (2, 16), BF16)}
        with pytest.raises(UnsupportedOpError) as err:
            kernel(cfg=Shape(T=2, D=16, TOPK=1), **args)
    assert err.value.op == "pl.frobnicate"
    assert f"uses_unknown.py:{line}: pl.frobnicate is not covered by the emulator" in str(err.value)


def test_uncovered_name_at_module_level_names_dotted_name_and_line():
    line = fixture_line("unknown_at_import.py", "RoundingPolicy")
    with pytest.raises(UnsupportedOpError, match=rf"unknown_at_import.py:{line}: pl.tile.RoundingPolicy is not"):
        SourceLoader().load(ref("unknown_at_import.py", "kernel"))


def test_uncovered_op_in_a_check_exits_2_instead_of_a_verdict(capsys):
    line = fixture_line("uses_unknown.py", "pl.frobnicate")
    rc = main(["check", "moe.combine", "--pre-source", os.path.join(LIB, "combine_v1.py") + ":combine_test",
               "--retiled-source", os.path.join(LIB, "uses_unknown.py"), "--bind", BIND_ARG,
               "--shapes", "T=8,D=16,TOPK=2", "--recipe", "realistic"])
    err = capsys.readouterr().err
    assert rc == 2  # not 1: a kernel the emulator cannot run is no regression
    assert "could not be run as the pair needs" in err
    assert f"uses_unknown.py:{line}: pl.frobnicate is not covered by the emulator" in err


def test_entry_that_does_not_fit_the_pair_exits_2(capsys):
    rc = main(["check", "moe.combine", "--pre-source", os.path.join(LIB, "combine_v1.py") + ":combine_test",
               "--retiled-source", os.path.join(LIB, "dsl_tour.py") + ":tour", "--bind", BIND_ARG,
               "--shapes", "T=8,D=16,TOPK=2", "--recipe", "realistic"])
    err = capsys.readouterr().err
    assert rc == 2 and "retiled: " in err and "dsl_tour.py:" in err
    assert "takes x, scale, flags, out, acc which the pair does not provide" in err
    assert "has no parameter for sh, routed_y_buf, num_tokens, ffn_out" in err
    assert "could not be run" not in err  # stopped before running any case


# ----------------------------------------------------------------------------------------
# Pairs from two files: verdicts through the registered moe.combine pair
# ----------------------------------------------------------------------------------------
def test_two_files_bit_exact_retile_is_equivalent():
    pair = combine_pair(ref("combine_v1.py"), ref("combine_v2_ok.py"))
    r = equiv.check(pair, shapes="T=8,D=1040,TOPK=2;T=5,D=64,TOPK=3", recipes=["realistic", "ties"])
    assert len(r.results) == 4 and r.ok
    assert {o.verdict for c in r.results for o in c.outputs.values()} == {"equivalent"}
    assert all(not c.errors for c in r.results)


def test_two_files_tail_drop_is_a_regression_with_the_unwritten_columns():
    pair = combine_pair(ref("combine_v1.py"), ref("combine_v2_tail.py"))
    res = run_case(pair, Case(Shape(T=8, D=1040, TOPK=2), "realistic", 0))
    out = res.outputs["ffn_out"]
    assert out.verdict == "regression"
    assert out.unwritten["retiled"]["ranges"] == [[[0, 8]], [[1024, 1040]]]
    assert "pre" not in out.unwritten
    ok = run_case(pair, Case(Shape(T=8, D=2048, TOPK=2), "realistic", 0))
    assert ok.outputs["ffn_out"].verdict == "equivalent"


def test_source_pair_keeps_reference_recipes_and_contract():
    base = COMBINE
    pair = combine_pair(ref("combine_v1.py"), ref("combine_v2_ok.py"))
    assert pair.reference is base.reference and pair.recipes is base.recipes
    assert pair.contract == base.contract and pair.shapes is base.shapes
    assert isinstance(pair.pre, SourceKernel) and pair.name == "moe.combine@source"
    with pytest.raises(SourceError, match="does not have"):
        source_pair(base, ref("combine_v1.py"), ref("combine_v2_ok.py"), bind={"Q": "hidden_size"})


def test_fuzzed_shapes_drive_the_files():
    pair = combine_pair(ref("combine_v1.py"), ref("combine_v2_tail.py"))
    small = dataclasses.replace(pair, shapes=dataclasses.replace(
        pair.shapes, dims={**pair.shapes.dims, "T": equiv.Dim(1, 8), "D": equiv.Dim(16, 1040, step=16,
                                                                                   favour=(1040,))},
        presets={"nominal": [dict(T=4, D=1040, TOPK=2)]}))
    r = equiv.check(small, shapes="fuzz", examples=6, recipes=["realistic"], shrink_budget=0)
    shapes = {c.case.shape["D"] for c in r.results}
    assert len(r.results) == 7 and len(shapes) > 1
    for c in r.results:  # every D < 1024 or not a multiple of 1024 loses columns
        verdict = c.outputs["ffn_out"].verdict
        assert verdict == ("equivalent" if c.case.shape["D"] % 1024 == 0 else "regression"), c.case


# ----------------------------------------------------------------------------------------
# Revisions of one file
# ----------------------------------------------------------------------------------------
@pytest.fixture()
def toy_repo(tmp_path):
    repo = tmp_path / "toylib"
    kdir = repo / "models" / "toy"
    kdir.mkdir(parents=True)

    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                              env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                                   "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}).stdout.strip()

    git("init", "-q")
    shutil.copy(os.path.join(LIB, "config.py"), kdir / "config.py")
    revs = {}
    for label, name in (("v1", "combine_v1.py"), ("ok", "combine_v2_ok.py"), ("tail", "combine_v2_tail.py")):
        shutil.copy(os.path.join(LIB, name), kdir / "combine.py")
        git("add", "-A")
        git("commit", "-q", "-m", label)
        revs[label] = git("rev-parse", "HEAD")
    # the working copy differs from every revision: revisions must be read from git
    (kdir / "combine.py").write_text("raise RuntimeError('working copy must not be read')\n")
    return repo, revs


@needs_git
def test_revisions_are_read_from_git_and_sites_name_the_revision(toy_repo):
    repo, revs = toy_repo
    loader = SourceLoader()
    r1 = SourceRef("models/toy/combine.py", "combine_test", revs["v1"], str(repo))
    r2 = r1.with_rev(f"{revs['tail']}")
    m1, m2 = loader.load(r1), loader.load(r2)
    assert m1.T_GROUP == 4 and m2.D_TILE == 1024 and not hasattr(m1, "D_TILE")
    assert m1.__file__ == f"{revs['v1'][:8]}:models/toy/combine.py"
    assert r2.with_rev("HEAD~1").commit == revs["ok"]
    with pytest.raises(SourceError, match="revision 'nosuchrev' not found"):
        loader.load(r1.with_rev("nosuchrev"))


@needs_git
def test_cli_check_of_two_revisions_reports_regression_and_repro(toy_repo, capsys):
    repo, revs = toy_repo
    rc = main(["check", "moe.combine", "--source", "models/toy/combine.py:combine_test",
               "--pre-rev", revs["v1"], "--retiled-rev", revs["tail"], "--repo", str(repo), "--bind", BIND_ARG,
               "--shapes", "T=8,D=1040,TOPK=2", "--recipe", "realistic", "--json", str(repo / "r.json")])
    out = capsys.readouterr().out
    out = re.sub(r" \\\n\s+", " ", out)  # a repro wrapped to the terminal's width is one command again
    assert rc == 1
    assert "regression" in out and "[1024, 1040)" in out and "unwritten" in out
    want = f"equiv check moe.combine --source models/toy/combine.py:combine_test --pre-rev {revs['v1']}"
    assert f"repro: {want}" in out
    import json

    data = json.load(open(repo / "r.json"))["checks"][0]
    assert data["counterexamples"] and all(r["repro"].startswith(want) for r in data["counterexamples"])


@needs_git
def test_cli_check_of_equivalent_revisions_exits_0(toy_repo, capsys):
    repo, revs = toy_repo
    rc = main(["check", "moe.combine", "--source", "models/toy/combine.py:combine_test",
               "--pre-rev", revs["v1"], "--retiled-rev", "HEAD~1", "--repo", str(repo), "--bind", BIND_ARG,
               "--shapes", "T=6,D=48,TOPK=2", "--recipe", "realistic"])
    out = capsys.readouterr().out
    assert rc == 0 and "OK (no regression)" in out


@needs_git
def test_cli_errors_are_usage_errors(toy_repo, capsys):
    repo, revs = toy_repo
    base = ["check", "moe.combine", "--source", "models/toy/combine.py:combine_test", "--repo", str(repo),
            "--bind", BIND_ARG, "--shapes", "T=8,D=64,TOPK=2"]
    assert main(base + ["--pre-rev", "nosuchrev", "--retiled-rev", revs["ok"]]) == 2
    assert "revision 'nosuchrev' not found" in capsys.readouterr().err
    assert main(base + ["--pre-rev", revs["v1"], "--retiled-rev", revs["ok"], "--config", "nonexistent=1"]) == 2
    assert "no constant or dataclass field named nonexistent" in capsys.readouterr().err
    assert main(["check", "--pre-rev", "x"]) == 2
    assert "belong to source mode" in capsys.readouterr().err


def test_pair_name_is_inferred_from_the_file():
    from equiv.commands.source_check import infer_pair_name

    assert infer_pair_name(SourceRef("models/deepseek/v4/moe.py", "combine")) == "moe.combine"
    from equiv.errors import UsageError

    with pytest.raises(UsageError, match="cannot tell which registered pair"):
        infer_pair_name(SourceRef("lib/zzz.py", "qqq"))


def test_contract_and_reference_from_the_command_line(tmp_path, capsys):
    extra = tmp_path / "mine.py"
    extra.write_text(
        "import torch\n"
        "def zero_reference(inputs, cfg):\n"
        "    return {'ffn_out': torch.zeros(cfg.T, cfg.D, dtype=torch.float64)}\n")
    rc = main(["check", "moe.combine", "--pre-source", os.path.join(LIB, "combine_v1.py") + ":combine_test",
               "--retiled-source", os.path.join(LIB, "combine_v2_ok.py"), "--bind", BIND_ARG,
               "--contract", "2", "--reference", f"{extra}:zero_reference", "--shapes", "T=4,D=32,TOPK=2",
               "--recipe", "realistic", "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert rc == 0 and "contract ≤ 2 BF16 ULP" in out
    import json

    data = json.load(open(tmp_path / "r.json"))
    errs = data["checks"][0]["results"][0]["outputs"]["ffn_out"]["error_vs_ref"]
    assert errs["pre"]["max"] > 1000  # measured against the all-zero reference given here


# ----------------------------------------------------------------------------------------
# The DSL names source mode added to equiv.tile
# ----------------------------------------------------------------------------------------
def test_tensor_dim_bind_dynamic_and_const():
    with running(RunContext(Options())):
        t = Tensor("t", (3, 5), FP32)
        assert tile.tensor.dim(t, 0) == 3 and tile.tensor.dim(t, -1) == 5
        with pytest.raises(tile.KernelError, match="axis 2 of a 2-d tensor"):
            tile.tensor.dim(t, 2)
        assert t.bind_dynamic(0, tile.dynamic("N")) is None
        with pytest.raises(tile.KernelError, match="has size 3, not 4"):
            t.bind_dynamic(0, 4)
    assert tile.const(3, tile.INDEX) == 3 and isinstance(tile.const(2.5, INT32), int)
    assert tile.const(1 + 2**-12, tile.BF16) == 1.0  # rounded to the type


def test_set_validshape_and_fillpad():
    with running(RunContext(Options())):
        t = tile.full([2, 4], INT32, 7)
        v = tile.set_validshape(t, 1, 3)
        assert v.valid == (1, 3)
        with pytest.raises(tile.KernelError, match="outside tile shape"):
            tile.set_validshape(t, 3, 1)
        lo = tile.fillpad(v, pad_value=tile.PadValue.min)
        assert lo.valid == (2, 4) and lo.data.tolist() == [[7, 7, 7, -(2**31)], [-(2**31)] * 4]
        hi = tile.fillpad(tile.set_validshape(tile.full([1, 2], FP32, 1.0), 1, 1), pad_value=tile.PadValue.max)
        assert hi.data.tolist() == [[1.0, float("inf")]]
        zero = tile.fillpad(tile.set_validshape(tile.full([1, 2], FP32, 1.0), 1, 0))
        assert zero.data.tolist() == [[0.0, 0.0]]


def test_assemble_plain_atomic_and_out_of_range():
    with running(RunContext(Options())) as ctx:
        dst = Tensor.from_torch("dst", torch.zeros(2, 4))
        out = tile.assemble(dst, tile.full([1, 2], FP32, 1.5), [1, 2])
        assert out is dst and dst.to_torch()[1].tolist() == [0, 0, 1.5, 1.5]
        for _ in tile.spmd(3):
            tile.assemble(dst, tile.full([1, 2], FP32, 2**-22), [1, 2], atomic=tile.AtomicType.Add)
        assert dst.to_torch()[1, 2].item() == 1.5 + 3 * 2**-22  # exact in fp32: no races, three adds
        assert not ctx.findings
        tile.assemble(dst, tile.full([1, 2], FP32, 1.0), [1, 3], atomic=tile.AtomicType.Add)
        assert [f.kind for f in ctx.findings.values()] == ["oob-write"]
        assert dst.to_torch()[1, 3].item() == 2.5 + 3 * 2**-22
        with pytest.raises(tile.KernelError, match="atomic add of a pl.BF16 tile"):
            tile.assemble(dst, tile.full([1, 2], BF16, 1.0), [0, 0], atomic=tile.AtomicType.Add)
        with pytest.raises(tile.KernelError, match="atomic mode 'max' is not covered"):
            tile.assemble(dst, tile.full([1, 2], FP32, 1.0), [0, 0], atomic="max")
