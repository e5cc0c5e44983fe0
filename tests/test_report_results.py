"""Results JSON: a schema version, `equiv report` refusing what it cannot report truthfully, and
several result files (shards of one run) merged into one report."""

from __future__ import annotations

import dataclasses
import json

import pytest

import equiv
from equiv import results_files
from equiv.errors import ResultsError
from equiv.cli import main
from tests.broken_combine import drops_tail

COMBINE = equiv.get("moe.combine")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """`equiv check --json` of moe.combine, in two shards by recipe, and a regressing variant."""
    root = tmp_path_factory.mktemp("results")
    paths = {}
    for name, recipe in (("a", "realistic"), ("b", "ties")):
        paths[name] = root / f"{name}.json"
        assert main(["check", "moe.combine", "--shapes", "T=4,D=32;T=8,D=32", "--recipe", recipe,
                     "--json", str(paths[name])]) == 0
    broken = equiv.check(dataclasses.replace(COMBINE, name="moe.combine-broken", retiled=drops_tail),
                         shapes="T=8,D=64", recipes=["realistic"], shrink_budget=0)
    paths["broken"] = root / "broken.json"
    paths["broken"].write_text(json.dumps({"schema_version": results_files.SCHEMA_VERSION,
                                           "checks": [broken.to_dict()]}))
    return root, paths


def test_results_carry_a_schema_version(saved):
    _, paths = saved
    data = json.loads(paths["a"].read_text())
    assert data["schema_version"] == results_files.SCHEMA_VERSION == 1
    assert data["checks"][0]["pair"] == "moe.combine" and len(data["checks"][0]["results"]) == 2


def _refused(capsys, tmp_path, content: str | None, message: str) -> None:
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    out = tmp_path / "r.html"
    assert main(["report", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err, err
    assert not out.exists()


@pytest.mark.parametrize("content, message", [
    ("", "empty file"),
    ("{}", "not saved check results"),
    ('{"schema_version": 1, "checks": []}', "holds no checks"),
    ("[]", "holds no checks"),
    ('{"checks": [{"pair": "x"}]}', "lacks contract, shapes, counts, results: partial results"),
    ('{"checks": [{"pair": "x", "contract": "bit-exact", "shapes": "nominal", "counts": {}, "results": []}]}',
     "has no cases"),
    ('{"schema_version": 99, "checks": []}', "schema version 99"),
    ('{"checks": [', "truncated or not JSON"),
])
def test_report_refuses_empty_or_partial_results(tmp_path, capsys, content, message):
    _refused(capsys, tmp_path, content, message)


def test_report_refuses_a_check_whose_counts_do_not_match_its_cases(tmp_path, capsys, saved):
    _, paths = saved
    data = json.loads(paths["a"].read_text())
    data["checks"][0]["results"] = data["checks"][0]["results"][:1]  # a shard cut short
    _refused(capsys, tmp_path, json.dumps(data), "counts cover 2 cases but it holds 1: partial results")


def test_report_refuses_a_missing_file_and_a_directory(tmp_path, capsys):
    _refused(capsys, tmp_path, None, "no such results file")
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "r.html")]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_shards_of_one_pair_merge_into_one_check(saved):
    _, paths = saved
    merged = results_files.merge_results([str(paths["a"]), str(paths["b"]), str(paths["broken"])])
    assert [c["pair"] for c in merged] == ["moe.combine", "moe.combine-broken"]
    combine = merged[0]
    assert len(combine["results"]) == 4
    assert {r["case"]["recipe"] for r in combine["results"]} == {"realistic", "ties"}
    assert combine["counts"]["ffn_out"]["equivalent"] == 4 and sum(combine["counts"]["ffn_out"].values()) == 4
    assert combine["shapes"] == "T=4,D=32;T=8,D=32"
    # a shard given twice adds nothing
    again = results_files.merge_results([str(paths["a"]), str(paths["a"])])
    assert len(again[0]["results"]) == 2


def test_merging_one_pair_under_two_contracts_is_refused(saved, tmp_path):
    _, paths = saved
    data = json.loads(paths["b"].read_text())
    data["checks"][0]["contract"] = "≤ 1 BF16 ULP"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="cannot be merged"):
        results_files.merge_results([str(paths["a"]), str(other)])


def test_equiv_report_merges_shards_into_one_section_per_pair(saved, tmp_path, capsys):
    _, paths = saved
    out = tmp_path / "merged.html"
    assert main(["report", str(paths["a"]), str(paths["b"]), str(paths["broken"]), "-o", str(out)]) == 0
    assert "report of 2 checks from 3 files written" in capsys.readouterr().err
    html = out.read_text(encoding="utf-8")
    assert html.count('<section class="pair"') == 2
    assert '<tr data-pair="moe.combine-broken" data-status="regression">' in html
