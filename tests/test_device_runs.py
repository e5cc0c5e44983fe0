"""Saved device runs: `equiv compare PRE_RUN RETILED_RUN` (equiv.device_runs)."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
import torch

import equiv
from equiv.cli import main
from equiv.errors import RunMismatch
from equiv.device_runs import capture, compare_runs, is_sentinel, load_run, save_run, sentinel
from equiv.inputs import generator
from kernels.moe_combine.pair import PAIR as COMBINE
from equiv.numerics import ulp_distance

T, D, TOPK = 4, 32, 2
SHAPE = f"T={T},D={D},TOPK={TOPK}"


def combine_inputs(seed: int = 0) -> dict:
    """moe.combine's realistic inputs, with num_tokens as the 0-dim tensor a harness saves."""
    inputs = COMBINE.recipes["realistic"](equiv.Shape(T=T, D=D, TOPK=TOPK), generator(seed))
    inputs["num_tokens"] = torch.tensor(T, dtype=torch.int32)  # every token active
    inputs["routed_y_buf"] = (torch.randn(T * TOPK, D, generator=generator(seed + 1)) * 0.08).to(torch.bfloat16)
    return inputs


def good_output(inputs: dict) -> torch.Tensor:
    """What a correct kernel writes: per-token fp32 sum of sh and the routed rows, rounded rint."""
    acc = inputs["sh"].float()
    routed = inputs["routed_y_buf"].float().reshape(T, TOPK, D)
    for k in range(TOPK):
        acc = acc + routed[:, k]
    return acc.to(torch.bfloat16)


def flip_lsb(t: torch.Tensor, index: tuple[int, ...]) -> torch.Tensor:
    out = t.clone()
    bits = out.view(torch.int16)
    bits[index] ^= 1
    return out


def make_run(root, name: str, inputs: dict, outputs: dict) -> str:
    path = os.path.join(str(root), name)
    save_run(path, inputs, outputs)
    return path


@pytest.fixture()
def runs(tmp_path):
    inputs = combine_inputs()
    out = good_output(inputs)
    pre = make_run(tmp_path, "pre", inputs, {"ffn_out": out})
    return tmp_path, inputs, out, pre


# ----------------------------------------------------------------------------------------
# Sentinel
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,bits", [(torch.bfloat16, 0x7FD5), (torch.float16, 0x7ED5),
                                        (torch.float32, 0x7FD5D5D5), (torch.int8, -128), (torch.int32, -(2**31))])
def test_sentinel_bits(dtype, bits):
    s = sentinel([2, 3], dtype)
    assert s.dtype == dtype and tuple(s.shape) == (2, 3) and bool(is_sentinel(s).all())
    raw = s.view({torch.bfloat16: torch.int16, torch.float16: torch.int16, torch.float32: torch.int32}.get(dtype, dtype))
    assert int(raw[0, 0]) == bits
    if dtype.is_floating_point:
        assert bool(torch.isnan(s).all())
        canonical = torch.full([1], float("nan"), dtype=dtype)
        assert not bool(is_sentinel(canonical).any())  # a NaN the kernel computes is not "unwritten"
    zero = torch.zeros(2, dtype=dtype)
    assert not bool(is_sentinel(zero).any())


# ----------------------------------------------------------------------------------------
# Verdicts
# ----------------------------------------------------------------------------------------
def test_identical_runs_are_equivalent(runs, capsys):
    root, inputs, out, pre = runs
    ret = make_run(root, "ret", inputs, {"ffn_out": out.clone()})
    assert main(["compare", pre, ret]) == 0
    text = capsys.readouterr().out
    assert "ffn_out: equivalent" in text and "0: 128" in text and "OK (no regression)" in text
    assert "inputs identical: 3 tensor(s) (num_tokens, routed_y_buf, sh)" in text


def test_flipped_bit_is_a_one_ulp_regression(runs, capsys):
    root, inputs, out, pre = runs
    ret = make_run(root, "ret", inputs, {"ffn_out": flip_lsb(out, (2, 7))})
    assert main(["compare", pre, ret, "--json", str(root / "r.json")]) == 1
    text = capsys.readouterr().out
    text = " ".join(text.replace(" \\\n", " ").split())  # lines wrapped to the terminal, read as one
    assert "ffn_out: regression — 128 elements compared, 1 differ, max ULP 1" in text
    assert "0: 127, 1: 1" in text and "first at [2, 7]" in text
    assert f"repro: equiv compare {pre} {root / 'ret'}" in text
    data = json.load(open(root / "r.json"))
    o = data["checks"][0]["results"][0]["outputs"]["ffn_out"]
    assert o["verdict"] == "regression" and o["first_difference"]["index"] == [2, 7]
    assert data["checks"][0]["results"][0]["repro"] == f"equiv compare {pre} {root / 'ret'}"


def test_flipped_bit_within_a_ulp_contract_is_equivalent(runs, capsys):
    root, inputs, out, pre = runs
    ret = make_run(root, "ret", inputs, {"ffn_out": flip_lsb(out, (2, 7))})
    assert main(["compare", pre, ret, "--contract", "1"]) == 0
    assert "contract ≤ 1 BF16 ULP" in capsys.readouterr().out


@pytest.mark.parametrize("with_prefill", [True, False])
def test_unwritten_tail_is_a_regression_naming_the_columns(runs, capsys, with_prefill):
    root, inputs, out, _ = runs
    fill = sentinel([T, D], torch.bfloat16)
    tail = out.clone()
    tail[:, 24:] = fill[:, 24:]  # the device never wrote columns 24..31: they keep the pre-fill
    extra = {"ffn_out": fill} if with_prefill else {}
    pre = make_run(root, "pre2", {**inputs, **extra}, {"ffn_out": out})
    ret = make_run(root, "ret", {**inputs, **extra}, {"ffn_out": tail})
    assert main(["compare", pre, ret]) == 1
    text = capsys.readouterr().out
    assert "retiled leaves all rows × cols [24, 32) of ffn_out unwritten (32 elements)" in text
    assert "ffn_out: regression — 96 elements compared, 0 differ" in text


def test_pre_with_unwritten_tail_and_full_retiled_is_pre_defect(runs, capsys):
    root, inputs, out, _ = runs
    tail = out.clone()
    tail[3:, :] = sentinel([1, D], torch.bfloat16)
    pre = make_run(root, "pre2", inputs, {"ffn_out": tail})
    ret = make_run(root, "ret", inputs, {"ffn_out": out})
    assert main(["compare", pre, ret]) == 0
    text = capsys.readouterr().out
    assert "ffn_out: pre-defect" in text and "pre leaves rows [3, 4) × all cols" in text


def test_prefill_mode_uses_the_recorded_prefill(runs):
    root, inputs, out, _ = runs
    noise = (torch.randn(T, D, generator=generator(9)) * 1e3).to(torch.bfloat16)
    tail = out.clone()
    tail[:, 30:] = noise[:, 30:]
    pre = load_run(make_run(root, "pre2", {**inputs, "ffn_out": noise}, {"ffn_out": out}))
    ret = load_run(make_run(root, "ret", {**inputs, "ffn_out": noise}, {"ffn_out": tail}))
    r = compare_runs(pre, ret, unwritten="prefill").outputs["ffn_out"]
    assert r.verdict == "regression" and r.unwritten["retiled"]["ranges"] == [[[0, 4]], [[30, 32]]]
    r = compare_runs(pre, ret, unwritten="sentinel").outputs["ffn_out"]  # noise is no sentinel: value mismatch
    assert r.verdict == "regression" and not r.unwritten and r.differing == 8
    r = compare_runs(pre, ret, unwritten="none").outputs["ffn_out"]
    assert r.verdict == "regression" and not r.unwritten


def test_different_inputs_are_refused(runs, capsys):
    root, inputs, out, pre = runs
    other = dict(inputs)
    other["sh"] = flip_lsb(inputs["sh"], (1, 5))
    ret = make_run(root, "ret", other, {"ffn_out": out})
    assert main(["compare", pre, ret]) == 2
    err = capsys.readouterr().err
    assert "did not see the same inputs" in err and "input sh: 1 of 128 elements differ, first at [1, 5]" in err
    missing = make_run(root, "ret2", {k: v for k, v in inputs.items() if k != "num_tokens"}, {"ffn_out": out})
    assert main(["compare", pre, missing]) == 2
    assert "only the pre run has inputs num_tokens" in capsys.readouterr().err


def test_nan_payloads_in_inputs_must_match_bit_for_bit(runs):
    root, inputs, out, pre = runs
    a = dict(inputs)
    a["sh"] = inputs["sh"].clone()
    a["sh"][0, 0] = float("nan")
    b = dict(a)
    b["sh"] = a["sh"].clone()
    b["sh"].view(torch.int16)[0, 0] = 0x7FC1  # another NaN
    with pytest.raises(RunMismatch, match="input sh: 1 of 128"):
        compare_runs(load_run(make_run(root, "a", a, {"ffn_out": out})), load_run(make_run(root, "b", b, {"ffn_out": out})))
    same = compare_runs(load_run(make_run(root, "c", a, {"ffn_out": out})), load_run(make_run(root, "d", a, {"ffn_out": out})))
    assert same.worst == "equivalent"


def test_mismatched_outputs_and_bad_directories_are_usage_errors(runs, tmp_path, capsys):
    root, inputs, out, pre = runs
    ret = make_run(root, "ret", inputs, {"ffn_out": out.float()})
    assert main(["compare", pre, ret]) == 2
    assert "output ffn_out is bfloat16[4, 32] in the pre run but float32[4, 32]" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["compare", pre, str(empty)]) == 2
    assert "not a saved run" in capsys.readouterr().err


def test_data_directory_itself_is_accepted(runs):
    root, inputs, out, pre = runs
    run = load_run(os.path.join(pre, "data"))
    assert set(run.inputs) == {"sh", "routed_y_buf", "num_tokens"} and set(run.outputs) == {"ffn_out"}


# ----------------------------------------------------------------------------------------
# Against a registered float64 reference
# ----------------------------------------------------------------------------------------
def test_reference_errors_from_the_saved_inputs(runs, capsys):
    root, inputs, out, pre = runs
    ret = make_run(root, "ret", inputs, {"ffn_out": out.clone()})
    assert main(["compare", pre, ret, "--pair", "moe.combine", "--shape", SHAPE]) == 0
    text = capsys.readouterr().out
    assert "reference moe.combine at " + SHAPE in text
    assert "pre error vs float64 reference (ULP): max" in text and "retiled error vs float64 reference" in text

    pair = COMBINE
    ref = pair.reference({**inputs, "num_tokens": T}, equiv.Shape(T=T, D=D, TOPK=TOPK))["ffn_out"]
    worse = out.clone()
    worse[0, 0] = (ref[0, 0] + 40 * ulp_step(ref[0, 0])).to(torch.bfloat16)
    r = compare_runs(load_run(pre), load_run(make_run(root, "worse", inputs, {"ffn_out": worse})),
                     pair=pair, shape=equiv.Shape(T=T, D=D, TOPK=TOPK), contract=equiv.within_ulp(1000))
    o = r.outputs["ffn_out"]
    assert o.verdict == "regression"  # within the contract, but less accurate than pre
    assert any("accuracy drop" in reason for reason in o.reasons)
    assert o.error_vs_ref["retiled"]["max"] > o.error_vs_ref["pre"]["max"] + 30


def ulp_step(x: torch.Tensor) -> torch.Tensor:
    """One bf16 ULP at x (float64)."""
    b = x.to(torch.bfloat16)
    nxt = b.view(torch.int16) + 1
    return (nxt.view(torch.bfloat16).double() - b.double()).abs()


def test_reference_shape_must_match_the_runs(runs, capsys):
    root, inputs, out, pre = runs
    ret = make_run(root, "ret", inputs, {"ffn_out": out})
    assert main(["compare", pre, ret, "--pair", "moe.combine", "--shape", "T=8,D=32,TOPK=2"]) == 2
    assert "declares outputs ffn_out bfloat16[8, 32] but the runs saved ffn_out bfloat16[4, 32]" in \
        capsys.readouterr().err
    assert main(["compare", pre, ret, "--pair", "moe.combine"]) == 2
    assert "needs --shape" in capsys.readouterr().err
    assert main(["compare", pre, ret, "--pair", "nosuch", "--shape", "T=1"]) == 2


def test_distance_matches_the_emulated_check_numerics(runs):
    root, inputs, out, pre = runs
    far = out.clone()
    far[1, 1] = (out[1, 1].float() * 1.5).to(torch.bfloat16)
    r = compare_runs(load_run(pre), load_run(make_run(root, "far", inputs, {"ffn_out": far})))
    assert r.outputs["ffn_out"].max_ulp == int(ulp_distance(out[1, 1:2], far[1, 1:2]).max())


# ----------------------------------------------------------------------------------------
# Capturing from a golden-harness script
# ----------------------------------------------------------------------------------------
@dataclasses.dataclass
class FakeTensorSpec:
    """Stands in for the harness's tensor spec (same attribute names)."""

    name: str
    shape: list
    dtype: torch.dtype
    init_value: object = None
    is_output: bool = False


@dataclasses.dataclass
class FakeScalarSpec:
    name: str
    dtype: torch.dtype
    value: torch.Tensor


def test_capture_prefills_outputs_and_saves_what_the_device_wrote(tmp_path):
    inputs = combine_inputs()
    specs = [FakeTensorSpec("sh", [T, D], torch.bfloat16, init_value=inputs["sh"]),
             FakeTensorSpec("routed_y_buf", [T * TOPK, D], torch.bfloat16, init_value=inputs["routed_y_buf"]),
             FakeScalarSpec("num_tokens", torch.int32, torch.tensor(T, dtype=torch.int32)),
             FakeTensorSpec("ffn_out", [T, D], torch.bfloat16, is_output=True)]
    seen = {}

    def strict(actual, expected, **kw):
        seen["kw"] = sorted(kw)
        return bool(torch.equal(actual, expected)), "differs"

    new_specs, compare_fn = capture(specs, str(tmp_path / "cap"), then={"ffn_out": strict})
    out_spec = new_specs[-1]
    assert out_spec.is_output and bool(is_sentinel(out_spec.init_value).all())  # device starts from the sentinel
    assert specs[-1].init_value is None  # the caller's specs are not modified
    # what the harness would do after the device run: device outputs vs golden
    device = good_output(inputs)
    device[:, 28:] = out_spec.init_value[:, 28:]
    ok, _ = compare_fn["ffn_out"](device, good_output(inputs), actual_outputs={"ffn_out": device},
                                  expected_outputs={}, inputs={"sh": inputs["sh"],
                                                               "routed_y_buf": inputs["routed_y_buf"]},
                                  rtol=1e-3, atol=1e-3)
    assert not ok and seen["kw"] == ["actual_outputs", "atol", "expected_outputs", "inputs", "rtol"]
    run = load_run(str(tmp_path / "cap"))
    assert set(run.inputs) == {"sh", "routed_y_buf", "num_tokens", "ffn_out"}
    assert bool(is_sentinel(run.prefill("ffn_out")).all())
    assert torch.equal(run.outputs["ffn_out"].view(torch.int16), device.view(torch.int16))
    # a second capture of a full run compares against it
    full_specs, full_fn = capture(specs, str(tmp_path / "cap_full"))
    ok, _ = full_fn["ffn_out"](good_output(inputs), good_output(inputs), inputs={"sh": inputs["sh"],
                               "routed_y_buf": inputs["routed_y_buf"]}, rtol=1e-3, atol=1e-3)
    assert ok
    r = compare_runs(load_run(str(tmp_path / "cap_full")), run).outputs["ffn_out"]
    assert r.verdict == "regression" and r.unwritten["retiled"]["ranges"] == [[[0, 4]], [[28, 32]]]
