"""`equiv bench` measures what a user pays: whole cases (every recipe and option variant, both
versions under every poison and schedule variant) against their float64 reference, and real
model files (wall time and peak memory of a same-revision pair-free check, in a process each)."""

from __future__ import annotations

import dataclasses
import time

import pytest

from equiv import registry
from equiv.bench import bench_cases, bench_preset, geometric_mean_overhead
from equiv.bench_files import bench_file
from equiv.options import Options
from equiv.runner import variants

PAUSE = 0.02


def _slow(kernel, calls: list):
    """`kernel`, PAUSE seconds slower per run (each run counted in `calls`)."""
    def slow(*args, **kwargs):
        calls.append(1)
        time.sleep(PAUSE)
        return kernel(*args, **kwargs)
    slow.__name__ = kernel.__name__
    return slow


def test_a_case_is_timed_whole_every_recipe_and_every_run_of_both_versions():
    pair = registry.get("moe.combine")
    shape = pair.shapes.preset("demo")[0]
    got = bench_cases(pair, shape, Options(), repeat=1)
    n = got["cases"]
    assert n == len(pair.recipes) * len(variants(pair)) and got["reference_s"] > 0
    assert 0 < got["inputs_s"] + got["runs_s"] + got["reference_s"] < 1.5 * got["case_s"]
    calls: list = []
    slow = dataclasses.replace(pair, retiled=_slow(pair.retiled, calls))
    slowed = bench_cases(slow, shape, Options(), repeat=1)
    n2, slow_seconds = slowed["cases"], slowed["case_s"]
    # Each case runs retiled at least twice (NaN poison, then the second schedule), and every
    # one of those runs is inside the time: a bench that timed one run per case, or one
    # recipe, would report less than the pauses alone.
    assert n2 == n and len(calls) >= 4 * n and slow_seconds >= len(calls) / 2 * PAUSE
    assert slowed["runs_s"] >= len(calls) / 2 * PAUSE  # the runs timed apart have them too


def test_per_case_rows_and_their_geometric_mean():
    (row,) = bench_preset(registry.get("hc_post"), "demo", Options(), per_case=True)
    assert row.cases == len(registry.get("hc_post").recipes)
    # a whole case costs more than one run of one version, and at least its own reference
    assert row.case_overhead > row.overhead and row.case_overhead >= 1
    (plain,) = bench_preset(registry.get("hc_post"), "demo", Options())
    assert plain.cases == 0 and geometric_mean_overhead([plain], per_case=True) != geometric_mean_overhead([row],
                                                                                                            per_case=True)


def test_a_model_file_is_benchmarked_in_a_process_of_its_own(tmp_path):
    from tests.test_pairfree import FILE, commit, kernel, make_repo

    r = make_repo(tmp_path)
    a = commit(r, {FILE: kernel()})
    row = bench_file(str(r), a, FILE, memory_limit_gib=8)
    assert row.outcome == "equivalent", row
    assert row.entries == [{"entry": "scale_test", "outcome": "equivalent", "counts": {"equivalent": 1},
                            "why": row.entries[0]["why"]}]
    assert 0.05 < row.peak_gib < 8 and row.seconds > 0
    # one with a defect says so (the same-revision check of a file that leaves rows unwritten)
    b = commit(r, {FILE: kernel(blocks="T // T_TILE - 1")})
    assert bench_file(str(r), b, FILE).outcome == "both-defect"


def test_a_file_over_the_memory_limit_is_stopped_not_left_to_take_the_machine(tmp_path):
    from tests.test_pairfree import FILE, commit, kernel, make_repo

    r = make_repo(tmp_path)
    a = commit(r, {FILE: kernel()})
    row = bench_file(str(r), a, FILE, memory_limit_gib=0.01)
    assert row.outcome == "stopped above the memory limit of 0.01 GiB" and row.peak_gib > 0.01


def test_bench_cli_names_files_with_repo_only(tmp_path, capsys):
    from equiv.cli import main
    from tests.test_pairfree import FILE, commit, kernel, make_repo

    assert main(["bench", "models/toy/scale.py"]) == 2
    assert "give --repo PATH" in capsys.readouterr().err
    r = make_repo(tmp_path)
    a = commit(r, {FILE: kernel()})
    out_json = tmp_path / "files.json"
    assert main(["bench", "--repo", str(r), "--rev", a, FILE, "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert f"{FILE} at {a}: equivalent" in out and "peak GiB" in out
    import json

    (row,) = json.loads(out_json.read_text())["files"]
    assert row["path"] == FILE and row["outcome"] == "equivalent"


def test_a_model_file_under_every_recipe_runs_what_equiv_check_runs(tmp_path):
    from tests.test_pairfree import FILE, commit, kernel, make_repo

    r = make_repo(tmp_path)
    a = commit(r, {FILE: kernel()})
    row = bench_file(str(r), a, FILE, recipes=())  # every recipe: realistic + 6 adversarial
    assert row.outcome == "equivalent" and row.entries[0]["counts"] == {"equivalent": 7}
    assert bench_file(str(r), a, FILE, recipes=("binades",)).entries[0]["counts"] == {"equivalent": 1}


def test_a_files_memory_counts_the_children_it_forks():
    """What a forked child allocates is counted in the file's memory; pages it shares with its
    parent are not counted twice."""
    import os
    import time

    from equiv.bench_files import tree_kib

    if not os.path.exists(f"/proc/{os.getpid()}/smaps_rollup"):
        pytest.skip("no /proc/PID/smaps_rollup here")
    shared = bytearray(64 * 2**20)
    shared[::4096] = b"\x01" * (len(shared) // 4096)  # the parent's pages, shared with the child after the fork
    before = tree_kib(os.getpid())
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        own = bytearray(128 * 2**20)
        own[::4096] = b"\x01" * (len(own) // 4096)  # the child's own pages, each touched once
        os.write(write_end, b"x")
        time.sleep(30)
        os._exit(len(own) & 0)
    os.close(write_end)
    try:
        assert os.read(read_end, 1) == b"x"
        grown = tree_kib(os.getpid()) - before
        assert 120 * 2**10 < grown < (128 + 48) * 2**10, grown  # the child's 128 MiB, not the shared 64 again
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(read_end)
    del shared


def test_a_shapes_inputs_are_timed_as_a_check_makes_them_the_shared_draw_once():
    """The realistic draw every adversarial recipe starts from is made once per shape
    (`inputs.remembered`), and the bench's inputs figure pays it once: not once per recipe,
    and not zero because a repeat found it remembered."""
    from equiv import bench
    from equiv.inputs import with_adversarial
    from equiv.results import Case
    from kernels.moe_combine.pair import realistic

    draws: list = []

    def slow_realistic(cfg, gen):
        draws.append(1)
        time.sleep(10 * PAUSE)
        return realistic(cfg, gen)

    pair = dataclasses.replace(registry.get("moe.combine"),
                               recipes=with_adversarial(slow_realistic, free_inputs=("sh",)))
    shape = pair.shapes.preset("demo")[0]
    cases = [Case(shape, recipe, 0) for recipe in pair.recipes]
    seconds = bench._timed(lambda: bench._inputs_in_order(pair, cases), "cpu", 3)
    assert len(draws) == 3  # once per repeat, for all the recipes of the shape
    assert 10 * PAUSE <= seconds < 2 * 10 * PAUSE + 0.5
