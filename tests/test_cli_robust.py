"""The command line under bad input and hostile use: every refusal is exit 2 with one line on
stderr and no traceback, nothing is half-written, and the wrong-result cases now give the
right verdict (contract dtype, saved runs against the pair's declaration, narrowed contracts)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys

import pytest
import torch

import equiv
from equiv import registry
from equiv import gate
from equiv import cases
from equiv.errors import CaseError
from equiv.cli import main
from equiv.compare import _distance
from equiv.device_runs import save_run
from equiv.inputs import generator
from equiv.pair import parse_contract
from equiv.pair import project_root
from tests.broken_combine import drops_tail

COMBINE = equiv.get("moe.combine")
SMALL = "T=4,D=32"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, *argv, message: str) -> str:
    """Exit 2, exactly one line on stderr naming the problem, no traceback."""
    code, out, err = run(capsys, *argv)
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert message in lines[0], err
    assert "Traceback" not in err + out
    return lines[0]


# ----------------------------------------------------------------------------------------
# Contract dtype: validated everywhere, and ULPs counted in it
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["1:bogus", "1:", "x", "-1", "1:int8"])
def test_a_contract_in_no_float_format_is_refused(text):
    with pytest.raises(ValueError, match="contract"):
        parse_contract(text)


def test_pairs_cannot_declare_a_contract_in_an_unknown_dtype():
    with pytest.raises(ValueError, match="bf16, fp16 or fp32"):
        equiv.within_ulp(1, "bogus")
    with pytest.raises(ValueError, match="integer ≥ 0"):
        equiv.Contract(-1)
    assert equiv.within_ulp(2, "float32").dtype == "fp32" and str(equiv.within_ulp(2, "bfloat16")) == "≤ 2 BF16 ULP"


def _bf16_ulps(a: float, b: float) -> int:
    """Independent: |a - b| in units of the BF16 spacing at max(|a|, |b|), rounded up."""
    if a == b:
        return 0
    m = max(abs(a), abs(b))
    exponent = max(math.frexp(m)[1] - 1, -126)   # floor(log2 m), clamped to BF16's smallest normal
    return math.ceil(abs(a - b) / 2.0 ** (exponent - 7))


def test_fp32_outputs_under_a_bf16_contract_are_measured_in_bf16_ulps():
    a = torch.tensor([1.0, 1.0, 1.0, 3.0, -0.75, 1e-3, 0.0], dtype=torch.float32)
    b = torch.tensor([1.0, 1.0 + 2**-20, 1.0 + 3 * 2**-7, 3.0 + 2**-6, -0.75 - 2**-9, 1e-3 * (1 + 2**-9), 0.0],
                     dtype=torch.float32)
    got = _distance(a, b, "bf16").tolist()
    want = [_bf16_ulps(float(x), float(y)) for x, y in zip(a.tolist(), b.tolist())]
    assert got == want == [0, 1, 3, 1, 1, 1, 0]
    # in the output's own dtype the step count is unchanged
    assert _distance(a, b, "fp32")[1].item() == 8  # 2**-20 at 1.0 is 8 fp32 steps


@pytest.fixture()
def fp32_runs(tmp_path):
    x = torch.linspace(-2, 2, 64, dtype=torch.float32).reshape(4, 16)
    pre = x * 1.5 + 0.25
    near = pre.clone()
    near[0, 3] = torch.nextafter(near[0, 3], torch.tensor(10.0))  # 1 fp32 ULP: well under 1 BF16 ULP
    for k in range(1, 40):
        near[1, 5] = torch.nextafter(near[1, 5], torch.tensor(10.0))  # 39 fp32 ULP: still ≤ 1 BF16 ULP
    far = pre.clone()
    far[2, 7] = far[2, 7] + 3 * 2.0 ** (math.frexp(abs(float(far[2, 7])))[1] - 1 - 7)  # 3 BF16 ULP
    paths = {}
    for name, out in (("pre", pre), ("near", near), ("far", far)):
        paths[name] = str(tmp_path / name)
        save_run(paths[name], {"x": x}, {"y": out})
    return paths


def test_compare_counts_ulps_in_the_contracts_dtype(fp32_runs, capsys):
    code, out, _ = run(capsys, "compare", fp32_runs["pre"], fp32_runs["near"], "--contract", "1:bf16")
    assert code == 0 and "contract ≤ 1 BF16 ULP" in out, out
    code, out, _ = run(capsys, "compare", fp32_runs["pre"], fp32_runs["far"], "--contract", "1:bf16")
    assert code == 1 and "REGRESSION" in out and "(3 ULP, allowed 1)" in out, out
    code, _, _ = run(capsys, "compare", fp32_runs["pre"], fp32_runs["far"], "--contract", "3:bf16")
    assert code == 0
    # counted in fp32 the same runs are 39 ULP apart: over a 1 ULP fp32 contract
    code, out, _ = run(capsys, "compare", fp32_runs["pre"], fp32_runs["near"], "--contract", "1:fp32")
    assert code == 1 and "(39 ULP, allowed 1)" in out, out


def test_compare_refuses_a_contract_dtype_it_cannot_count_in(fp32_runs, capsys):
    refused(capsys, "compare", fp32_runs["pre"], fp32_runs["near"], "--contract", "1:bogus",
            message="--contract '1:bogus'")


def test_source_mode_refuses_a_bogus_contract_dtype(capsys):
    refused(capsys, "check", "moe.combine", "--pre-source", "a.py:f", "--retiled-source", "b.py:f",
            "--contract", "1:bogus", message="bf16, fp16 or fp32")


# ----------------------------------------------------------------------------------------
# Saved runs checked against the pair's declaration
# ----------------------------------------------------------------------------------------
def _combine_run(tmp_path, name: str, T=4, D=32, TOPK=2, sh_dtype=torch.bfloat16) -> str:
    inputs = COMBINE.recipes["realistic"](equiv.Shape(T=T, D=D, TOPK=TOPK), generator(0))
    inputs["num_tokens"] = torch.tensor(T, dtype=torch.int32)
    acc = inputs["sh"].float() + inputs["routed_y_buf"].float().reshape(T, TOPK, D).sum(1)
    inputs["sh"] = inputs["sh"].to(sh_dtype)
    path = str(tmp_path / name)
    save_run(path, inputs, {"ffn_out": acc.to(torch.bfloat16)})
    return path


def test_compare_refuses_runs_saved_at_another_shape(tmp_path, capsys):
    pre, ret = _combine_run(tmp_path, "pre"), _combine_run(tmp_path, "ret")
    # the right shape: judged (against the reference computed from the saved inputs)
    code, out, _ = run(capsys, "compare", pre, ret, "--pair", "moe.combine", "--shapes", "T=4,D=32,TOPK=2")
    assert code == 0, out
    # TOPK=3: the output shape alone matches, the inputs do not
    refused(capsys, "compare", pre, ret, "--pair", "moe.combine", "--shapes", "T=4,D=32,TOPK=3",
            message="input routed_y_buf is bfloat16[12, 32] in moe.combine")
    # --shape stays an alias
    refused(capsys, "compare", pre, ret, "--pair", "moe.combine", "--shape", "T=4,D=32,TOPK=3",
            message="do not match moe.combine")


def test_compare_refuses_an_input_saved_in_another_dtype(tmp_path, capsys):
    pre = _combine_run(tmp_path, "pre", sh_dtype=torch.float32)
    ret = _combine_run(tmp_path, "ret", sh_dtype=torch.float32)
    refused(capsys, "compare", pre, ret, "--pair", "moe.combine", "--shapes", "T=4,D=32,TOPK=2",
            message="input sh is bfloat16[4, 32] in moe.combine at T=4,D=32,TOPK=2 but saved as float32[4, 32]")


# ----------------------------------------------------------------------------------------
# One rule for check and gate: a narrowed contract fails both
# ----------------------------------------------------------------------------------------
def test_check_fails_a_narrowed_contract_as_the_gate_does(capsys, monkeypatch):
    narrowed = dataclasses.replace(COMBINE, retiled_requires=(("T % 8 == 0", lambda s: s.T % 8 == 0),))
    monkeypatch.setitem(registry._PAIRS, "moe.combine", narrowed)
    code, out, _ = run(capsys, "check", "moe.combine", "--shapes", "T=10,D=32,TOPK=2", "--recipe", "realistic")
    assert code == 1 and "result: NARROWED CONTRACT" in out, out
    r = equiv.check(narrowed, shapes="T=10,D=32,TOPK=2", recipes=["realistic"], shrink_budget=0)
    assert r.failed and not r.regressions
    assert gate.GateResult(gate.select(["kernels/moe_combine/pair.py"], [narrowed]), results=[r]).exit_code == 1
    # a shape both accept passes both
    code, out, _ = run(capsys, "check", "moe.combine", "--shapes", "T=8,D=32,TOPK=2", "--recipe", "realistic")
    ok = equiv.check(narrowed, shapes="T=8,D=32,TOPK=2", recipes=["realistic"], shrink_budget=0)
    assert code == 0 and gate.GateResult(gate.select(["x/y.py"], [narrowed]), results=[ok]).exit_code == 0


# ----------------------------------------------------------------------------------------
# Output paths: validated before running, nothing created
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("option", ["--json", "--report", "--markdown"])
def test_an_output_path_that_is_a_directory_is_refused_before_running(tmp_path, capsys, option):
    refused(capsys, "check", "moe.combine", "--shapes", SMALL, option, str(tmp_path), message="is a directory")


def test_an_output_in_a_missing_directory_is_refused_and_not_created(tmp_path, capsys):
    missing = tmp_path / "nonexist"
    refused(capsys, "check", "moe.combine", "--shapes", SMALL, "--markdown", str(missing / "x.md"),
            message="does not exist")
    assert not missing.exists()
    refused(capsys, "check", "moe.combine", "--shapes", SMALL, "--save-cases", str(missing / "deeper" / "cases"),
            message="does not exist")
    assert not missing.exists()


def test_an_output_in_a_place_nobody_can_write_is_refused(capsys):
    # /proc refuses new files even to root (permission bits would not: the check probes)
    refused(capsys, "check", "moe.combine", "--shapes", SMALL, "--json", "/proc/equiv-results.json",
            message="cannot write in /proc")


def test_an_output_under_a_regular_file_is_refused(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    refused(capsys, "check", "moe.combine", "--shapes", SMALL, "--report", str(f / "r.html"),
            message="is not a directory")
    refused(capsys, "check", "moe.combine", "--shapes", SMALL, "--save-cases", str(f), message="not a directory")


def test_two_outputs_on_one_path_are_refused(tmp_path, capsys):
    p = str(tmp_path / "same")
    refused(capsys, "check", "moe.combine", "--shapes", SMALL, "--json", p, "--report", p, message="also given to")
    assert not os.path.exists(p)


@pytest.mark.parametrize("argv, message", [
    (["report", "R", "-o", "DIR"], "-o"),
    (["bench", "moe.combine", "--presets", "demo", "--json", "DIR"], "--json"),
    (["gate", "--files", "README.md", "--junit", "DIR"], "--junit"),
    (["gate", "--files", "README.md", "--json", "DIR"], "--json"),
    (["compare", "A", "B", "--json", "DIR"], "--json"),
])
def test_every_subcommand_validates_its_output_paths(tmp_path, capsys, argv, message):
    (tmp_path / "R").write_text(json.dumps({"checks": []}))
    argv = [str(tmp_path / a) if a in ("R", "A", "B") else (str(tmp_path) if a == "DIR" else a) for a in argv]
    line = refused(capsys, *argv, message="is a directory")
    assert message in line
    assert sorted(os.listdir(tmp_path)) == ["R"]


# ----------------------------------------------------------------------------------------
# A closed stdout: files first, the real exit code, no traceback
# ----------------------------------------------------------------------------------------
def _closed_stdout(argv: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    p = subprocess.Popen([sys.executable, "-m", "equiv.cli", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         cwd=project_root(), env=env)
    p.stdout.close()  # the reader is gone before the first line (`equiv ... | true`)
    err = p.stderr.read().decode()
    return subprocess.CompletedProcess(argv, p.wait(timeout=120), "", err)


def test_a_closed_stdout_keeps_the_files_and_the_exit_code(tmp_path):
    path = tmp_path / "r.json"
    p = _closed_stdout(["check", "moe.combine", "--shapes", SMALL, "--recipe", "ties", "--json", str(path)])
    assert p.returncode == 0 and "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr, p.stderr
    assert json.loads(path.read_text())["checks"][0]["pair"] == "moe.combine"
    p = _closed_stdout(["list"])
    assert p.returncode == 0 and p.stderr == "", p.stderr


# ----------------------------------------------------------------------------------------
# Devices, bench, shapes, examples
# ----------------------------------------------------------------------------------------
def test_replay_refuses_an_unknown_device(tmp_path, capsys):
    pair = dataclasses.replace(COMBINE, retiled=drops_tail)
    r = equiv.check(pair, shapes="T=8,D=64,TOPK=2", recipes=["binades"], shrink_budget=0)
    (path,) = cases.save_results(pair, r, str(tmp_path / "cases"))
    refused(capsys, "replay", path, "--device", "tpu", message="--device 'tpu': expected cpu or cuda")


def test_bench_refuses_zero_repeats(capsys):
    refused(capsys, "bench", "moe.combine", "--repeat", "0", message="--repeat 0: must be ≥ 1")
    with pytest.raises(ValueError, match="repeat must be ≥ 1"):
        from equiv.bench import bench_preset

        bench_preset(COMBINE, "demo", equiv.Options(), repeat=0)


@pytest.mark.parametrize("shape, message", [
    ("T=8,T=9", "gives T twice"),
    ("T=٨", "ASCII digits"),
    ("T=８,D=32", "ASCII digits"),
])
def test_shapes_refuse_repeated_dimensions_and_non_ascii_digits(capsys, shape, message):
    refused(capsys, "check", "moe.combine", "--shapes", shape, message=message)
    with pytest.raises(equiv.ShapeError):
        COMBINE.shapes.parse(shape)


def test_zero_or_negative_examples_with_a_literal_shape_are_refused(capsys):
    refused(capsys, "check", "moe.combine", "--shapes", SMALL, "--examples", "0", message="runs no case")
    refused(capsys, "check", "moe.combine", "--shapes", SMALL, "--examples", "-1", message="--examples must be ≥ 0")


def test_argparse_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["check", "moe.combine", "--examples", "many"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1 and "invalid int value" in err


# ----------------------------------------------------------------------------------------
# Discoverability: --version, examples in every --help, names alike
# ----------------------------------------------------------------------------------------
def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"equiv {equiv.__version__}"


@pytest.mark.parametrize("command", ["check", "list", "bench", "report", "gate", "replay", "compare"])
def test_every_help_has_examples(capsys, command):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and f"equiv {command}" in out.split("examples:")[1]


def test_check_takes_shape_as_an_alias_of_shapes(capsys):
    code, out, _ = run(capsys, "check", "moe.combine", "--shape", SMALL, "--recipe", "ties")
    assert code == 0 and "shapes T=4,D=32: T=4,D=32,TOPK=6" in out


def test_replay_takes_several_paths(tmp_path, capsys):
    pair = dataclasses.replace(COMBINE, retiled=drops_tail)
    r = equiv.check(pair, shapes="T=8,D=64,TOPK=2", recipes=["binades", "realistic"], shrink_budget=0)
    paths = cases.save_results(pair, r, str(tmp_path / "cases"))
    assert len(paths) == 2
    code, out, err = run(capsys, "replay", *paths)
    assert code == 0 and out.count("reproduced:") == 2 and "2 cases replayed" in err


def test_check_all_with_a_recipe_skips_pairs_without_it(capsys, monkeypatch):
    other = dataclasses.replace(COMBINE, name="moe.combine-noties",
                                recipes={k: v for k, v in COMBINE.recipes.items() if k != "ties"})
    monkeypatch.setattr(registry, "_PAIRS", {"moe.combine": COMBINE, "moe.combine-noties": other})
    code, out, err = run(capsys, "check", "--all", "--shapes", SMALL, "--recipe", "ties")
    assert code == 0
    assert "note: moe.combine-noties skipped: it has no input recipe ties" in err
    assert "moe.combine: OK" in out and "moe.combine-noties —" not in out
    refused(capsys, "check", "--all", "--shapes", SMALL, "--recipe", "nope", message="no pair has input recipe nope")


# ----------------------------------------------------------------------------------------
# Python API
# ----------------------------------------------------------------------------------------
def test_check_takes_a_registered_name_and_prints_readably():
    r = equiv.check("moe.combine", shapes=SMALL, recipes=["ties"])
    assert r.pair == "moe.combine" and r.ok
    text = str(r)
    assert text.startswith("moe.combine — contract bit-exact") and "result: OK (no regression)" in text
    with pytest.raises(KeyError, match="did you mean moe.combine"):
        equiv.check("moe.combin", shapes=SMALL)


@pytest.mark.parametrize("examples", [-1, 1.5, True])
def test_check_rejects_bad_example_counts_as_the_cli_does(examples):
    with pytest.raises(ValueError, match="examples"):
        equiv.check("moe.combine", shapes="fuzz", examples=examples)


def test_a_kernel_with_the_wrong_signature_is_misuse_not_regressions():
    def combine(sh, ffn_out, cfg):  # forgot routed_y_buf and num_tokens
        pass

    with pytest.raises(TypeError, match="retiled kernel .*combine.* cannot be called with the pair's arguments"):
        equiv.check(dataclasses.replace(COMBINE, retiled=combine), shapes=SMALL)
    # a broken kernel with the right signature is still a regression, not misuse
    r = equiv.check(dataclasses.replace(COMBINE, retiled=drops_tail), shapes="T=8,D=64", recipes=["realistic"],
                    shrink_budget=0)
    assert r.regressions


# ----------------------------------------------------------------------------------------
# Saved cases: inputs stored once per content digest, replay still bit for bit
# ----------------------------------------------------------------------------------------
def test_saved_inputs_are_stored_once_per_content(tmp_path, capsys):
    # the same inputs under three option variants: three cases, one copy of each input tensor
    pair = dataclasses.replace(COMBINE, retiled=drops_tail,
                               sweep={"row_sum_order": ("sequential", "pairwise", "a2a3")})
    r = equiv.check(pair, shapes="T=8,D=256,TOPK=6", recipes=["binades"], shrink_budget=0)
    paths = cases.save_results(pair, r, str(tmp_path / "cases"))
    assert len(paths) == 3
    folder = os.path.dirname(paths[0])
    blobs = os.listdir(os.path.join(folder, cases.BLOB_DIR))
    inputs = equiv.runner.make_inputs(pair, r.results[0].case)
    tensors = [v for v in inputs.values() if isinstance(v, torch.Tensor)]
    assert len(blobs) == len(tensors) == 2
    tensor_bytes = sum(t.numel() * t.element_size() for t in tensors)
    case_bytes = sum(os.path.getsize(p) for p in paths)
    blob_bytes = sum(os.path.getsize(os.path.join(folder, cases.BLOB_DIR, b)) for b in blobs)
    assert case_bytes < tensor_bytes          # no case file holds the inputs
    assert blob_bytes < 1.5 * tensor_bytes    # one copy, not three
    for p in paths:
        rep = cases.replay(p)
        assert rep.reproduced and rep.inputs_from == "saved"
    code, out, _ = run(capsys, "replay", str(tmp_path / "cases"))
    assert code == 0 and out.count("reproduced:") == 3  # content files are not taken for cases


def test_cases_kept_from_the_check_are_saved_without_a_rerun_and_replay_bit_for_bit(tmp_path, monkeypatch):
    pair = dataclasses.replace(COMBINE, retiled=drops_tail)
    r = equiv.check(pair, shapes="T=8,D=64,TOPK=2;T=4,D=32,TOPK=2", recipes=["realistic"], shrink_budget=0,
                    keep_runs=True)
    assert all(res.runs is not None for res in r.regressions)
    reruns = []
    monkeypatch.setattr(cases, "digest_runs", lambda *a, **k: reruns.append(a) or {})
    paths = cases.save_results(pair, r, str(tmp_path / "cases"))
    assert len(paths) == 2 and reruns == []
    monkeypatch.undo()
    for p in paths:
        data = cases.load_case(p)
        case = equiv.Case.from_dict(data["case"])
        assert data["digest"] == cases.digest_runs(pair, case, data["inputs"], equiv.Options())["all"]
        assert cases.replay(p).reproduced


def test_a_damaged_input_file_is_refused(tmp_path):
    pair = dataclasses.replace(COMBINE, retiled=drops_tail)
    r = equiv.check(pair, shapes="T=8,D=64,TOPK=2", recipes=["binades"], shrink_budget=0)
    (path,) = cases.save_results(pair, r, str(tmp_path / "cases"))
    folder = os.path.join(os.path.dirname(path), cases.BLOB_DIR)
    blob = os.path.join(folder, sorted(os.listdir(folder))[0])
    torch.save(torch.zeros(3), blob)
    with pytest.raises(CaseError, match="does not match its digest"):
        cases.replay(path)
