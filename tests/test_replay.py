"""Saved cases and `equiv replay`: bit-for-bit reproduction, stale sources, variants, atomic writes."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys

import pytest
import torch

import equiv
from tests.broken_combine import reversed_sum
from equiv import cases
from equiv.errors import CaseError
from equiv.cli import main
from equiv.pair import project_root
from equiv.results import Case

ROOT = project_root()
COMBINE = equiv.get("moe.combine")
SMALL = "T=8,D=1024,TOPK=6"


def broken_check(tmp_path, kernel=reversed_sum):
    pair = dataclasses.replace(COMBINE, retiled=kernel)
    r = equiv.check(pair, shapes=SMALL, recipes=["binades"], shrink_budget=0)
    assert [res.verdicts for res in r.results] == [{"ffn_out": "regression"}]
    (path,) = cases.save_results(pair, r, str(tmp_path / "cases"))
    return pair, r, path


# ---------------------------------------------------------------------------------------
# moe.combine with a broken retiled kernel
# ---------------------------------------------------------------------------------------
def test_saved_case_holds_inputs_verdicts_and_digests(tmp_path):
    pair, r, path = broken_check(tmp_path)
    assert path.startswith(str(tmp_path / "cases" / "moe.combine"))
    assert "__binades__s0__variant-" in os.path.basename(path)  # not the registered kernels: own name
    data = cases.load_case(path)
    (res,) = r.results
    assert data["pair"] == "moe.combine" and data["verdicts"] == {"ffn_out": "regression"}
    assert data["case"] == res.case.to_dict() and data["repro"] == res.repro()
    assert data["source_hash"] == COMBINE.source_hash()
    assert data["kernels"]["retiled"].endswith(":reversed_sum") and data["variant_of_registered"]
    assert torch.equal(data["inputs"]["sh"], equiv.runner.make_inputs(pair, res.case)["sh"])
    assert len(data["digest"]) == 64 and set(data["digests"]) == {"pre", "retiled"}
    assert data["digests"]["pre"]["ffn_out"] != data["digests"]["retiled"]["ffn_out"]
    assert not [f for f in os.listdir(os.path.dirname(path)) if f.startswith(".tmp-")]


def test_replay_reproduces_a_module_level_variant_bit_for_bit(tmp_path, capsys):
    _, _, path = broken_check(tmp_path)
    rep = cases.replay(path)
    assert rep.reproduced and rep.verdicts == {"ffn_out": "regression"} and rep.inputs_from == "saved"
    assert rep.digest == cases.load_case(path)["digest"]
    assert main(["replay", path]) == 0
    out = capsys.readouterr().out
    assert out.startswith("reproduced: moe.combine T=8,D=1024,TOPK=6 recipe binades seed 0: ffn_out regression")
    assert "output bits identical" in out


def test_replay_detects_different_bits(tmp_path, capsys):
    """A saved case whose inputs were altered (and re-digested) no longer reproduces the saved output bits."""
    _, _, path = broken_check(tmp_path)
    data = cases.load_case(path)
    data["inputs"]["sh"] = (data["inputs"]["sh"].float() * 2).to(torch.bfloat16)
    data["inputs_digest"] = cases.input_digest(data["inputs"])
    cases.save_atomic(data, path)
    rep = cases.replay(path)
    assert not rep.same_bits and "retiled/ffn_out" in rep.differing_digests and not rep.reproduced
    assert main(["replay", path]) == 1
    assert "NOT reproduced" in capsys.readouterr().out


def test_replay_refuses_when_the_sources_changed(tmp_path, capsys):
    _, _, path = broken_check(tmp_path)
    data = cases.load_case(path)
    data["source_hash"] = "0" * 64
    cases.save_atomic(data, path)
    with pytest.raises(CaseError, match="sources of moe.combine .* changed since the case was saved"):
        cases.replay(path)
    assert main(["replay", path]) == 2
    assert "--force" in capsys.readouterr().err
    rep = cases.replay(path, force=True)
    assert rep.reproduced and rep.stale


def test_local_variant_cannot_be_found_again(tmp_path, capsys):
    def local_broken(**kw):  # a function inside a function: no importable name
        return reversed_sum(**kw)

    _, _, path = broken_check(tmp_path, local_broken)
    assert "<locals>" in cases.load_case(path)["kernels"]["retiled"]
    with pytest.raises(CaseError, match="cannot be found again"):
        cases.replay(path)
    assert main(["replay", path]) == 2
    # --force replays the registered pair instead: equivalent now, so not reproduced
    rep = cases.replay(path, force=True)
    assert rep.verdicts == {"ffn_out": "equivalent"} and not rep.reproduced


def test_case_saved_without_inputs_regenerates_and_verifies_them(tmp_path):
    pair = dataclasses.replace(COMBINE, retiled=reversed_sum)
    r = equiv.check(pair, shapes=SMALL, recipes=["binades"], shrink_budget=0)
    (path,) = cases.save_results(pair, r, str(tmp_path), max_input_bytes=1024)
    data = cases.load_case(path)
    assert data["inputs"] is None and data["inputs_bytes"] > 1024
    rep = cases.replay(path)
    assert rep.reproduced and rep.inputs_from == "regenerated"
    data["inputs_digest"] = "f" * 64
    cases.save_atomic(data, path)
    with pytest.raises(CaseError, match="now generates different inputs"):
        cases.replay(path)


def test_an_interrupted_save_leaves_no_case(tmp_path, monkeypatch):
    pair, r, path = broken_check(tmp_path)
    os.unlink(path)
    real_save = torch.save

    def interrupted(obj, fh, *a, **kw):
        real_save({"format": "half"}, fh)  # some bytes reach the temporary file, then:
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cases.save_results(pair, r, str(tmp_path / "cases"))
    folder = os.path.dirname(path)
    assert [f for f in os.listdir(folder) if f != cases.BLOB_DIR] == []  # inputs/: content-addressed, shared
    assert not [f for f in os.listdir(os.path.join(folder, cases.BLOB_DIR)) if f.startswith(".tmp-")]


def test_replay_of_unreadable_or_missing_cases_is_a_usage_error(tmp_path, capsys):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not a case")
    assert main(["replay", str(bad)]) == 2
    assert "not a readable saved case" in capsys.readouterr().err
    assert main(["replay", str(tmp_path / "missing.pt")]) == 2
    assert main(["replay", str(tmp_path / "empty")]) == 2


def test_check_save_cases_then_replay_folder(tmp_path, capsys):
    """`equiv check --save-cases DIR` saves the non-equivalent cases of a registered pair; replay of the folder."""
    d = str(tmp_path / "cases")
    assert main(["check", "moe.combine", "--shapes", "T=10,D=256,TOPK=2", "--recipe", "realistic",
                 "--save-cases", d]) == 0
    saved = cases.find_cases(d)
    assert any("T=10,D=256,TOPK=2__realistic__s0.pt" in p for p in saved)
    capsys.readouterr()
    assert main(["replay", d]) == 0
    out = capsys.readouterr().out
    assert out.count("reproduced: moe.combine") == len(saved) and "ffn_out pre-defect" in out


# ---------------------------------------------------------------------------------------
# expert_shared at pro: the PR #672 regression, reproduced bit for bit
# ---------------------------------------------------------------------------------------
def test_expert_shared_pro_regression_replays_bit_for_bit(tmp_path, capsys):
    if "expert_shared" not in equiv.names():
        pytest.skip("the expert_shared pair is not registered yet")
    pair = equiv.get("expert_shared")
    (shape,) = pair.shapes.preset("pro")
    options = equiv.Options()
    # one run gives the verdicts and the output digest (save_results would rerun the case to hash it)
    res, digests = cases.run_case_capturing(pair, Case(shape, "realistic", 0), options)
    assert set(res.verdicts.values()) == {"regression"}
    path = cases.save_case(pair, res, options, str(tmp_path), digests=digests)
    assert os.path.basename(path) == "T=8,D=7168,I=3072,L=10__realistic__s0.pt"
    assert cases.load_case(path)["inputs"] is not None  # the inputs themselves, not only their digest
    rep = cases.replay(path)
    assert rep.reproduced, (rep.verdicts, rep.differing_digests)
    assert rep.verdicts == res.verdicts
    for name, o in rep.result.outputs.items():
        assert o.unwritten["retiled"] == res.outputs[name].unwritten["retiled"]
        assert "cols [4096, 7168)" in o.unwritten["retiled"]["text"]


# ---------------------------------------------------------------------------------------
# End to end: the pair's source changes after the case was saved
# ---------------------------------------------------------------------------------------
def _copy_tracked(dest):
    if shutil.which("git") is None or not os.path.isdir(os.path.join(ROOT, ".git")):
        pytest.skip("needs git and a git checkout of the project")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    for rel in filter(None, out.split("\0")):
        src = os.path.join(ROOT, rel)
        if os.path.isfile(src):
            os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
            shutil.copy2(src, os.path.join(dest, rel))
    return str(dest)


def test_replay_after_editing_the_retiled_kernel(tmp_path):
    repo = _copy_tracked(tmp_path / "repo")
    env = {**os.environ, "PYTHONPATH": repo, "CI": "1"}

    def equiv_cli(*args):
        return subprocess.run([sys.executable, "-m", "equiv.cli", *args], cwd=repo, env=env, capture_output=True,
                              text=True, timeout=120)

    retiled = os.path.join(repo, "kernels", "moe_combine", "retiled.py")
    good = open(retiled).read()
    assert "for k in pl.range(TOPK):" in good
    with open(retiled, "w") as fh:
        fh.write(good.replace("for k in pl.range(TOPK):", "for k in pl.range(TOPK - 1, -1, -1):"))
    p = equiv_cli("check", "moe.combine", "--shapes", SMALL, "--recipe", "binades", "--save-cases", "saved")
    assert p.returncode == 1, p.stdout + p.stderr
    p = equiv_cli("replay", "saved")
    assert p.returncode == 0 and "reproduced: moe.combine" in p.stdout and "regression" in p.stdout, p.stderr

    with open(retiled, "w") as fh:  # the fix lands: the saved case is now stale
        fh.write(good)
    p = equiv_cli("replay", "saved")
    assert p.returncode == 2
    assert "the sources of moe.combine (kernels/moe_combine, reference/moe_combine.py) changed" in p.stderr
    p = equiv_cli("replay", "saved", "--force")
    assert p.returncode == 1 and "NOT reproduced" in p.stdout and "replayed verdicts: ffn_out equivalent" in p.stdout
