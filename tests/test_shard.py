"""``equiv check --all --shard K/N``: the shards together run exactly the unsharded cases, and
their results merged by `equiv report` carry the unsharded verdicts."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import pytest

import equiv
from equiv import registry
from equiv.check import in_shard, parse_shard, plan, shard_of
from equiv.cli import main
from equiv.results_files import merge_results
from tests import broken_combine

SHAPES = "T=3,D=16;T=5,D=32;T=4,D=16"  # small: a case costs milliseconds


@pytest.fixture
def two_pairs(monkeypatch):
    good = equiv.get("moe.combine")
    broken = dataclasses.replace(good, name="moe.combine.broken", retiled=broken_combine.round_toward_zero)
    monkeypatch.setattr(registry, "_PAIRS", {good.name: good, broken.name: broken})
    return good, broken


def _verdicts(doc: dict) -> dict[tuple[str, str], dict]:
    """(pair, case key) -> verdicts per output."""
    return {(c["pair"], json.dumps(r["case"], sort_keys=True)): r["verdicts"] for c in doc for r in c["results"]}


def test_shards_run_exactly_the_unsharded_cases_and_merge_to_its_verdicts(two_pairs, tmp_path, capsys):
    args = ["check", "--all", "--shapes", SHAPES, "--examples", "2", "--recipe", "realistic"]
    whole = tmp_path / "whole.json"
    assert main([*args, "--json", str(whole)]) == 1  # the broken pair regresses
    unsharded = _verdicts(json.loads(whole.read_text())["checks"])
    assert len(unsharded) == 2 * 3 * 2
    assert any("regression" in v.values() for v in unsharded.values())

    n = 3
    paths, seen = [], Counter()
    for k in range(1, n + 1):
        path = tmp_path / f"shard{k}.json"
        main([*args, "--shard", f"{k}/{n}", "--json", str(path)])
        doc = json.loads(path.read_text())["checks"]
        seen.update(_verdicts(doc).keys())
        if doc:
            paths.append(str(path))
    capsys.readouterr()
    assert set(seen) == set(unsharded) and max(seen.values()) == 1  # each case in exactly one shard
    assert len(paths) >= 2  # the work really was split
    assert _verdicts(merge_results(paths)) == unsharded
    merged = {c["pair"]: c["counts"] for c in merge_results(paths)}
    assert merged == {c["pair"]: c["counts"] for c in json.loads(whole.read_text())["checks"]}
    # the CLI merge writes the report of the merged shards
    assert main(["report", *paths, "-o", str(tmp_path / "all.html")]) == 0


def test_shard_assignment_is_stable_and_balanced():
    pair = equiv.get("moe.combine")
    cases = plan(pair, "fuzz", examples=40, seed=0)
    counts = Counter(shard_of(f"{pair.name}:{i}", 4) for i in range(4000))
    assert set(counts) == {1, 2, 3, 4} and min(counts.values()) > 900
    # the same case always lands in the same shard: a hash of its content, not of the process
    assert [in_shard(pair.name, c, (1, 2)) for c in cases] == [in_shard(pair.name, c, (1, 2)) for c in cases]
    assert shard_of("moe.combine:x", 7) == 7  # fixed: sha256, not Python's salted hash()


@pytest.mark.parametrize("bad", ["0/3", "4/3", "3", "a/b", "1/0"])
def test_malformed_shard_is_a_usage_error(bad, capsys):
    with pytest.raises(ValueError):
        parse_shard(bad)
    assert main(["check", "moe.combine", "--shapes", "T=3,D=16", "--shard", bad]) == 2
    assert "--shard" in capsys.readouterr().err


def test_worker_processes_give_the_serial_results_in_plan_order(tmp_path):
    # --jobs N: a registered pair's planned cases run in N worker processes.
    serial = equiv.check("moe.combine", shapes=SHAPES, examples=2, recipes=["realistic", "binades"])
    parallel = equiv.check("moe.combine", shapes=SHAPES, examples=2, recipes=["realistic", "binades"], jobs=2)
    assert [r.to_dict()["case"] for r in parallel.results] == [r.to_dict()["case"] for r in serial.results]
    strip = ("seconds",)
    for a, b in zip(serial.results, parallel.results):
        da, db = a.to_dict(), b.to_dict()
        for key in strip:
            da.pop(key, None), db.pop(key, None)
        assert da == db
    assert parallel.decisions == serial.decisions


def test_jobs_must_be_positive(capsys):
    assert main(["check", "moe.combine", "--jobs", "0"]) == 2
    assert "--jobs 0: must be ≥ 1" in capsys.readouterr().err
