"""One request object for a check (equiv.request.CheckRequest): registered pairs, source mode,
the pair-free check of a model file and the gates take it; the commands build it from their
arguments, and nothing below equiv/commands sees the command line."""

from __future__ import annotations

import os

import pytest

import equiv
from equiv.cli import main
from equiv.options import Options
from equiv.pairfree import run as pf
from equiv.request import CheckRequest
from tests.test_pairfree import FILE, commit, kernel, make_repo


def _doc(result):
    """The result's document without its timings."""
    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k != "seconds"}
        return [strip(x) for x in v] if isinstance(v, list) else v
    return strip(result.to_dict())


def test_a_request_and_the_same_fields_give_the_same_check():
    pair = equiv.get("moe.combine")
    request = CheckRequest(shapes="T=10,D=256", recipes=("realistic",), seed=2)
    by_request = equiv.check(pair, request)
    by_fields = equiv.check(pair, shapes="T=10,D=256", recipes=["realistic"], seed=2)
    assert _doc(by_request) == _doc(by_fields)
    assert [str(r.case.shape) for r in by_request.results] == ["T=10,D=256,TOPK=6"]
    assert by_request.seed == 2
    # fields given next to a request change it
    changed = equiv.check(pair, request, seed=3, shapes="T=4,D=32")
    assert changed.seed == 3 and [str(r.case.shape).startswith("T=4,D=32") for r in changed.results] == [True]


def test_a_field_the_request_lacks_is_an_error_naming_its_fields():
    with pytest.raises(TypeError, match=r"shape: not a field of CheckRequest \(.*shapes.*\)"):
        equiv.check("moe.combine", shape="T=4,D=32")


def test_the_pair_free_check_takes_its_budgets_options_and_log_from_the_request(tmp_path):
    repo = make_repo(tmp_path)
    a = commit(repo, {FILE: kernel(tile=4)})
    b = commit(repo, {FILE: kernel(tile=4, blocks="T // T_TILE - 1")})  # leaves rows [4, 8) unwritten
    lines: list[str] = []
    request = CheckRequest(recipes=("realistic",), seed=1, shrink_budget=0, log=lines.append,
                           options=Options(schedules=1))
    outcome = pf.check_file(pf.FileTarget(FILE, a, b, str(repo)), request)
    (entry,) = outcome.entries
    assert entry.outcome == "regression"
    assert [r.case.recipe for r in entry.result.results] == ["realistic"]
    assert entry.result.seed == 1 and entry.result.options["schedules"] == 1
    assert lines and lines[0].startswith("scale_test: modes")
    # the contract travels in the request too: a given one overrides the file's (none here)
    outcome = pf.check_file(pf.FileTarget(FILE, a, a, str(repo)),
                            request.replace(contract=equiv.within_ulp(4), contract_given=True))
    assert outcome.entries[0].contract == "≤ 4 BF16 ULP (--contract)"


def test_detectors_chosen_on_the_command_line_are_checked_by_name(capsys):
    code = main(["check", "moe.combine", "--shapes", "T=10,D=256", "--recipe", "realistic",
                 "--detectors", "races,out-of-range,decisions,attribution"])
    out, _ = capsys.readouterr()
    assert code == 0 and "pre-defect" in out
    code = main(["check", "moe.combine", "--detectors", "races,oob"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "'oob'" in err and "known: races, rank-races, out-of-range, decisions, cache-lines, attribution" in err


def test_no_module_below_the_commands_takes_the_command_line():
    root = os.path.dirname(equiv.__file__)
    offenders = []
    for folder, _, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        if rel == "commands" or rel.startswith("commands" + os.sep):
            continue
        for name in files:
            if name.endswith(".py") and not (rel == "." and name == "cli.py"):
                text = open(os.path.join(folder, name), encoding="utf-8").read()
                if "argparse.Namespace" in text:
                    offenders.append(os.path.join(rel, name))
    assert offenders == []
