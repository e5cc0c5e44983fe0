"""The command line: verdict output, exit codes, usage errors with the fix in them, determinism."""

import json
import os
import subprocess
import sys

import pytest
import torch

from equiv.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_names_every_pair(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0 and "moe.combine" in out and "bit-exact" in out


def test_check_pre_defect_prints_region_counterexample_and_repro(capsys):
    code, out, _ = run(capsys, "check", "moe.combine", "--shapes", "T=10,D=256", "--recipe", "realistic")
    assert code == 0
    assert "pre-defect" in out
    assert "rows [8, 10) × all cols of ffn_out unwritten" in out
    assert "repro: equiv check moe.combine --shapes '" in out


def test_check_regression_exits_1(capsys, monkeypatch):
    import dataclasses

    import equiv
    from equiv import registry
    from tests import broken_combine

    pair = equiv.get("moe.combine")
    monkeypatch.setitem(registry._PAIRS, "moe.combine", dataclasses.replace(pair, retiled=broken_combine.drops_tail))
    code, out, _ = run(capsys, "check", "moe.combine", "--shapes", "T=8,D=64", "--recipe", "realistic")
    assert code == 1 and "REGRESSION" in out and "rows [7, 8)" in out


def test_json_output_is_written(capsys, tmp_path):
    path = tmp_path / "r.json"
    code, _, _ = run(capsys, "check", "moe.combine", "--shapes", "T=4,D=32", "--recipe", "ties", "--json", str(path))
    data = json.loads(path.read_text())
    assert code == 0 and data["checks"][0]["pair"] == "moe.combine"
    assert data["checks"][0]["results"][0]["verdicts"] == {"ffn_out": "equivalent"}


@pytest.mark.parametrize("argv, message", [
    (["check", "moe.combin"], "did you mean moe.combine"),
    (["check", "moe.combine", "--shapes", "T=ten"], "malformed shape"),
    (["check", "moe.combine", "--shapes", "T=0,D=64"], "T=0 outside the domain 1..160"),
    (["check", "moe.combine", "--shapes", "Q=3"], "unknown dimension(s) Q"),
    (["check", "moe.combine", "--shapes", "huge"], "unknown shape set 'huge'"),
    (["check", "moe.combine", "--recipe", "nope"], "no input recipe nope"),
    (["check"], "give one pair name or --all"),
])
def test_usage_errors_exit_2_with_a_clear_message(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_a_usage_error(capsys):
    code, _, err = run(capsys, "check", "moe.combine", "--device", "cuda")
    assert code == 2 and "no CUDA device" in err and "--device cpu" in err


def test_same_seed_prints_identical_results():
    argv = [sys.executable, "-m", "equiv.cli", "check", "moe.combine", "--shapes", "fuzz", "--examples", "2",
            "--seed", "7", "--recipe", "realistic"]
    outs = [subprocess.run(argv, capture_output=True, text=True, check=False) for _ in range(2)]
    strip = lambda s: "\n".join(l for l in s.splitlines() if " cases in " not in l)
    assert outs[0].returncode == outs[1].returncode == 0, outs[0].stderr
    assert strip(outs[0].stdout) == strip(outs[1].stdout)
    assert "moe.combine" in outs[0].stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tuning is Linux-only")
def test_the_cli_keeps_freed_blocks_for_reuse_unless_the_user_tuned_malloc(monkeypatch):
    from equiv import cli

    for name in [k for k in os.environ if k.startswith("MALLOC_")]:
        monkeypatch.delenv(name)
    for name in cli._MALLOC:
        monkeypatch.setenv(name, "")  # restored after the test
        monkeypatch.delenv(name)
    cli._reuse_freed_memory()
    assert {k: int(os.environ[k]) for k in cli._MALLOC} == cli._MALLOC  # worker processes inherit it
    for name in cli._MALLOC:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    cli._reuse_freed_memory()
    assert not any(k in os.environ for k in cli._MALLOC)


def test_bench_reports_stages_batched_and_loops_run_as_lanes(capsys):
    from equiv import registry
    from equiv.bench import bench_preset
    from equiv.options import Options

    row, = bench_preset(registry.get("hc_post"), "demo", Options(), repeat=1)
    assert row.batched == "2/2" and row.as_lanes == "2/2" and row.reference_s > 0
    row, = bench_preset(registry.get("hc_post"), "demo", Options(batch_blocks=False), repeat=1)
    assert row.batched == "-" and row.as_lanes == "-"
    code, out, err = run(capsys, "bench", "hc_post", "--presets", "demo", "--fuzz-examples", "0")
    assert code == 0 and "loops" in out and "geometric mean overhead" in out
    assert "bench: hc_post done (1/1 pairs, 1 rows" in err  # alive before the table, on stderr


def test_bench_names_a_missing_preset_before_measuring_anything(capsys):
    code, out, err = run(capsys, "bench", "hc_post", "moe.combine", "--presets", "demo,nope", "--fuzz-examples", "0")
    assert code == 2 and "hc_post has no preset 'nope'" in err and " done (" not in err
