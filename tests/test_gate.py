"""The PR gate: changed files → pairs, the CI check, JUnit XML, exit codes, end to end in a git repo."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pytest

import equiv
from tests.broken_combine import reversed_sum
from equiv import gate
from equiv.cli import main
from equiv.pair import project_root

ROOT = project_root()
COMBINE = equiv.get("moe.combine")

# Stand-ins with the two attributes `select` reads, so the mapping is tested independently
# of which pairs are registered right now.
FAKES = [
    SimpleNamespace(name="moe.combine", sources=("kernels/moe_combine", "reference/moe_combine.py")),
    SimpleNamespace(name="expert_shared", sources=("kernels/expert_shared", "reference/expert_shared.py")),
    SimpleNamespace(name="hc_post", sources=("kernels/hc_post/", "./reference/hc_post.py")),
]


def names(sel):
    return sorted(sel.pairs)


# ---------------------------------------------------------------------------------------
# Mapping
# ---------------------------------------------------------------------------------------
def test_kernel_change_selects_its_pair_only():
    sel = gate.select(["kernels/moe_combine/retiled.py"], FAKES)
    assert names(sel) == ["moe.combine"]
    assert sel.because["moe.combine"] == ["kernels/moe_combine/retiled.py"]
    assert not sel.harness and not sel.docs_only


def test_reference_and_folder_sources_select_and_prefixes_do_not_leak():
    sel = gate.select(["reference/expert_shared.py", "kernels/hc_post/pre.py", "kernels/moe_combine_v2/pre.py",
                       "reference/moe_combine.pyc"], FAKES)
    assert names(sel) == ["expert_shared", "hc_post"]
    assert sel.other == ["kernels/moe_combine_v2/pre.py", "reference/moe_combine.pyc"]


def test_docs_only_change_selects_nothing():
    sel = gate.select(["docs/adding-a-pair.md", "README.md", "reports/README.md"], FAKES)
    assert sel.pairs == [] and sel.docs_only
    assert "documentation only" in sel.explain()


def test_harness_change_selects_every_pair():
    for path in ("equiv/compare.py", "equiv/commands/check.py", "pyproject.toml"):
        sel = gate.select([path, "docs/x.md"], FAKES)
        assert names(sel) == ["expert_shared", "hc_post", "moe.combine"], path
        assert sel.harness == [path] and not sel.docs_only


def test_test_only_change_selects_nothing_but_is_not_docs():
    sel = gate.select(["tests/test_numerics.py"], FAKES)
    assert sel.pairs == [] and not sel.docs_only and sel.other == ["tests/test_numerics.py"]


def test_markdown_inside_a_pair_folder_selects_the_pair():
    assert names(gate.select(["kernels/expert_shared/NOTES.md"], FAKES)) == ["expert_shared"]


def test_every_registered_pair_declares_sources_that_exist():
    for pair in equiv.all_pairs():
        assert pair.sources, f"{pair.name} declares no sources: the gate could never select it"
        for src in pair.sources:
            assert os.path.exists(os.path.join(ROOT, src)), f"{pair.name}: source {src} does not exist"
        sel = gate.select([pair.sources[0].rstrip("/") + "/x.py"], equiv.all_pairs())
        assert pair.name in sel.pairs


# ---------------------------------------------------------------------------------------
# The check, JUnit and exit code, in-process
# ---------------------------------------------------------------------------------------
FAST = gate.Profile(fuzz_examples=1, time_budget=120.0, shrink_budget=4)


def test_gate_fails_on_a_broken_retiled_and_writes_junit(tmp_path):
    broken = dataclasses.replace(COMBINE, retiled=reversed_sum)
    sel = gate.select(["kernels/moe_combine/retiled.py"], [broken])
    res = gate.run_gate(sel, {"moe.combine": broken}, FAST, cases_dir=str(tmp_path / "cases"))
    assert res.exit_code == 1
    assert list(res.failing) == ["moe.combine"] and "regression on ffn_out" in res.failing["moe.combine"]
    (r,) = res.results
    assert r.regressions and r.shapes.startswith("ci: presets")
    # every preset ran, under every recipe
    ran = {(str(x.case.shape), x.case.recipe) for x in r.results}
    for s in COMBINE.shapes.all_presets():
        for recipe in COMBINE.recipes:
            assert (str(s), recipe) in ran
    saved = res.saved["moe.combine"]
    assert saved and all(os.path.isfile(p) for p in saved.values())

    path = tmp_path / "junit.xml"
    gate.write_junit(gate.junit_xml(res.results, res.saved, res.errors), str(path))
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites" and root.get("tests") == "1" and root.get("failures") == "1"
    (tc,) = root.iter("testcase")
    assert tc.get("classname") == "equiv.moe.combine" and tc.get("name") == "ffn_out"
    failure = tc.find("failure")
    assert failure is not None and failure.get("type") == "regression"
    assert "break the contract" in failure.text
    assert "repro: equiv check moe.combine --shapes '" in failure.text
    assert "replay: equiv replay " in failure.text


def test_junit_passes_and_counts_outputs():
    ok = equiv.check(COMBINE, shapes="T=8,D=256,TOPK=2", recipes=["realistic"])
    root = gate.junit_xml([ok], errors={"broken.pair": "ImportError: no module"}).getroot()
    assert root.get("tests") == "2" and root.get("failures") == "0" and root.get("errors") == "1"
    cases = {tc.get("classname"): tc for tc in root.iter("testcase")}
    assert cases["equiv.moe.combine"].find("failure") is None
    assert cases["equiv.broken.pair"].find("error").get("message") == "ImportError: no module"


def test_cli_docs_only_exits_0_without_checking(tmp_path, capsys):
    report = tmp_path / "r.html"
    rc = main(["gate", "--files", "docs/adding-a-pair.md", "README.md", "--report", str(report),
               "--junit", str(tmp_path / "j.xml"), "--cases-dir", str(tmp_path / "cases")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "documentation only: no pair to check" in out and "gate: PASS — nothing to check" in out
    assert not report.exists() and not (tmp_path / "cases").exists()
    assert ET.parse(tmp_path / "j.xml").getroot().get("tests") == "0"


def test_cli_unknown_base_is_a_usage_error(capsys):
    assert main(["gate", "--base", "no-such-ref-xyz"]) == 2
    assert "unknown base ref 'no-such-ref-xyz'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# End to end: a commit that breaks moe.combine's retiled kernel, in a copy of the project
# ---------------------------------------------------------------------------------------
def _git(cwd, *args):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout


def project_copy(dest) -> str:
    """The project's tracked files as they are in the working tree, committed in a fresh repo."""
    if shutil.which("git") is None or not os.path.isdir(os.path.join(ROOT, ".git")):
        pytest.skip("needs git and a git checkout of the project")
    files = _git(ROOT, "ls-files", "-z").split("\0")
    for rel in filter(None, files):
        src = os.path.join(ROOT, rel)
        if os.path.isfile(src):
            os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
            shutil.copy2(src, os.path.join(dest, rel))
    _git(dest, "init", "-q")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "-m", "base")
    return str(dest)


def run_equiv(cwd, *args, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(cwd), "CI": "1"}
    return subprocess.run([sys.executable, "-m", "equiv.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_gate_end_to_end_in_a_git_repo(tmp_path):
    repo = project_copy(tmp_path / "repo")
    retiled = os.path.join(repo, "kernels", "moe_combine", "retiled.py")
    text = open(retiled).read()
    assert "for k in pl.range(TOPK):" in text, "moe.combine retiled changed shape; update this test's edit"
    with open(retiled, "w") as fh:
        fh.write(text.replace("for k in pl.range(TOPK):", "for k in pl.range(TOPK - 1, -1, -1):"))
    _git(repo, "commit", "-q", "-am", "add the routed rows in reverse order")

    p = run_equiv(repo, "gate", "--base", "HEAD~1", "--examples", "1", "--junit", "reports/gate.xml",
                  "--report", "reports/gate.html")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "moe.combine: kernels/moe_combine/retiled.py" in p.stdout
    assert "gate: FAIL — 1 of 1 pair fails: moe.combine (regression on ffn_out" in p.stdout
    assert "repro: equiv check moe.combine --shapes" in p.stdout
    failure = ET.parse(os.path.join(repo, "reports", "gate.xml")).getroot().find(".//failure")
    assert failure is not None and "moe.combine" in failure.get("message")
    html = open(os.path.join(repo, "reports", "gate.html"), encoding="utf-8").read()
    assert 'data-pair="moe.combine" data-status="regression"' in html
    saved = [f for f in os.listdir(os.path.join(repo, "reports", "cases", "moe.combine")) if f.endswith(".pt")]
    assert saved

    # a docs-only commit on top: nothing is selected, the gate passes
    with open(os.path.join(repo, "docs", "adding-a-pair.md"), "a") as fh:
        fh.write("\nOne more line.\n")
    _git(repo, "commit", "-q", "-am", "docs")
    p = run_equiv(repo, "gate", "--base", "HEAD~1")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "documentation only: no pair to check" in p.stdout

    # uncommitted harness edits count too and select every pair (selection only: --base HEAD, no run)
    with open(os.path.join(repo, "equiv", "summary.py"), "a") as fh:
        fh.write("\n")
    changed = gate.changed_files("HEAD", cwd=repo)
    assert changed == ["equiv/summary.py"]
    assert gate.select(changed, equiv.all_pairs()).pairs == equiv.names()


def test_a_narrowed_contract_fails_the_gate():
    narrowed = dataclasses.replace(COMBINE, retiled_requires=(("T % 8 == 0", lambda s: s.T % 8 == 0),))
    r = equiv.check(narrowed, shapes="T=10,D=256,TOPK=2", recipes=["realistic"], shrink_budget=0)
    assert r.narrowed and not r.regressions
    res = gate.GateResult(gate.select(["kernels/moe_combine/pair.py"], [narrowed]), results=[r])
    assert res.exit_code == 1 and "narrowed contract in 1 case" in res.failing["moe.combine"]
    failure = gate.junit_xml([r]).getroot().find(".//failure")
    assert failure.get("type") == "narrowed-contract" and "retiled rejects a shape pre accepts" in failure.text
    ok = equiv.check(narrowed, shapes="T=8,D=256,TOPK=2", recipes=["realistic"], shrink_budget=0)
    assert gate.GateResult(gate.select([], []), results=[ok]).exit_code == 0
