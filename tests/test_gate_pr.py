"""`equiv gate` on a pull request of a repository of model files, as its engineers make it:
files reached through imports, unchanged programs not run, the working tree as head, interface
changes judged, every defect shown, a budget for the whole pull request.

The fixture repository comes from test_pairfree (``models/toy/config.py`` and a kernel file
whose ``__main__`` calls ``golden.run_jit``); each test commits its own revisions.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from equiv.cli import main
from equiv.pairfree import fingerprint as fp
from equiv.pairfree import plan as planning
from equiv.pairfree import run as pf
from tests.test_pairfree import FILE, commit, git, kernel, repo  # noqa: F401 - `repo` is a fixture

HELPER = "models/toy/tiling.py"
STORE_LINE = "pl.store(pl.mul(t, 2.0), [b * T_TILE, 0], y)"


def gate(repo, base: str, *extra: str) -> int:  # noqa: F811
    return main(["gate", "--repo", str(repo), "--base", base, "--report", "", *extra])


def importing_kernel(tile: int = 4) -> str:
    """The toy kernel, its block count taken from a helper module imported by bare name."""
    return kernel(tile=tile, blocks="T // T_TILE - SKIP_BLOCKS").replace(
        "from config import DEMO as M, TOKENS", "from config import DEMO as M, TOKENS\nfrom tiling import SKIP_BLOCKS")


def helper(skip: int) -> str:
    return f'"""Tiling helpers (no __main__)."""\n\nSKIP_BLOCKS = {skip}\n\n\ndef unused():\n    return 1\n'


def no_kernel_runs(monkeypatch) -> list:
    """Record every pair-free check the gate starts (an unchanged entry must start none)."""
    started = []
    real = pf.check_file

    def spy(*args, **kwargs):
        started.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(pf, "check_file", spy)
    return started


# ----------------------------------------------------------------------------------------
# Selection through imports
# ----------------------------------------------------------------------------------------
def test_helper_module_change_is_gated_through_its_importer(repo, capsys):  # noqa: F811
    base = commit(repo, {HELPER: helper(0), FILE: importing_kernel()})
    head = commit(repo, {HELPER: helper(1)})  # the helper alone: the importer now skips a block
    assert gate(repo, base, "--head", head) == 1
    out = capsys.readouterr().out
    assert f"{FILE} (imports {HELPER})" in out
    assert "gate: FAIL" in out and "unwritten" in out and "rows [4, 8)" in out


def test_helper_change_that_keeps_the_program_passes(repo, capsys):  # noqa: F811
    base = commit(repo, {HELPER: helper(0), FILE: importing_kernel(tile=4)})
    head = commit(repo, {HELPER: helper(0) + "\n\nEXTRA = 2\n", FILE: importing_kernel(tile=2)})
    assert gate(repo, base, "--head", head) == 0
    assert "gate: PASS" in capsys.readouterr().out


def test_transitive_importers_are_selected_and_others_are_not(repo):  # noqa: F811
    from equiv.pairfree import selection

    other = "models/toy/other.py"
    deeper = "models/toy/deeper.py"
    base = commit(repo, {HELPER: helper(0), "models/toy/mid.py": "from tiling import SKIP_BLOCKS\n",
                         FILE: importing_kernel(), other: kernel(tile=2),
                         deeper: kernel(tile=2).replace("T_TILE = 2", "from mid import SKIP_BLOCKS\nT_TILE = 2")})
    head = commit(repo, {HELPER: helper(1)})
    sel = selection.select_change(str(repo), base, head)
    assert sel.files == {FILE: f"imports {HELPER}", deeper: "imports models/toy/mid.py"}


# ----------------------------------------------------------------------------------------
# Unchanged programs
# ----------------------------------------------------------------------------------------
def renamed_flag(text: str) -> str:
    """A __main__-only edit that changes nothing the check runs: a CLI flag renamed and passed
    on to the device-only runtime_cfg."""
    return text.replace('parser.add_argument("-p", "--platform", default="a2a3")',
                        'parser.add_argument("-p", "--platform", default="a2a3")\n'
                        '    parser.add_argument("--enable-chip-swimlane", type=int, default=0)').replace(
        "rtol=1e-5, atol=1e-5,", "rtol=1e-5, atol=1e-5, runtime_cfg=dict(chip=args.enable_chip_swimlane),")


def test_main_only_change_is_unchanged_and_runs_no_kernel(repo, capsys, monkeypatch, tmp_path):  # noqa: F811
    base = commit(repo, {FILE: kernel(tile=4, blocks="T // T_TILE - 1")})  # a hole: a run would show it
    head = commit(repo, {FILE: renamed_flag(kernel(tile=4, blocks="T // T_TILE - 1")) + "\n# a comment\n"})
    started = no_kernel_runs(monkeypatch)
    junit = tmp_path / "gate.xml"
    assert gate(repo, base, "--head", head, "--junit", str(junit)) == 0
    out = capsys.readouterr().out
    assert started == []
    assert f"UNCHANGED     {FILE}:scale_test" in out and "change no recorded run_jit call" in out
    assert "gate: PASS — 1 entry in 1 file, 1 unchanged" in out
    skipped = ET.parse(junit).getroot().find(".//skipped")
    assert skipped is not None and skipped.get("message").startswith("unchanged")


def test_main_change_that_changes_the_recorded_call_runs(repo, capsys, monkeypatch):  # noqa: F811
    base = commit(repo, {FILE: kernel(tile=4)})
    head = commit(repo, {FILE: kernel(tile=4).replace("rtol=1e-5, atol=1e-5", "rtol=1e-2, atol=1e-2")})
    started = no_kernel_runs(monkeypatch)
    assert gate(repo, base, "--head", head) == 0
    out = capsys.readouterr().out
    assert started and "the recorded run_jit call changed: default: atol, rtol" in out


def test_unreached_definition_change_is_unchanged_but_a_reached_config_value_is_not(repo):  # noqa: F811
    base = commit(repo, {FILE: kernel(tile=4) + "\n\ndef helper_never_called():\n    return 1\n"})
    head = commit(repo, {FILE: kernel(tile=4) + "\n\ndef helper_never_called():\n    return 2\n"})
    (c,) = fp.compare_file(str(repo), base, FILE, head, FILE)
    assert c.unchanged, c.why
    cfg = "models/toy/config.py"
    head2 = commit(repo, {cfg: (repo / cfg).read_text().replace("TOKENS = 8", "TOKENS = 16")})
    (c,) = fp.compare_file(str(repo), head, FILE, head2, FILE)
    assert not c.unchanged and f"{cfg}:TOKENS" in c.why
    head3 = commit(repo, {cfg: (repo / cfg).read_text() + "\nUNUSED = 3\n"})
    (c,) = fp.compare_file(str(repo), head2, FILE, head3, FILE)
    assert c.unchanged, c.why


# ----------------------------------------------------------------------------------------
# The working tree is head
# ----------------------------------------------------------------------------------------
def test_uncommitted_edit_is_gated(repo, capsys):  # noqa: F811
    base = commit(repo, {FILE: kernel(tile=4)})
    (repo / FILE).write_text(kernel(tile=4, blocks="T // T_TILE - 1"))  # edited, not committed
    assert gate(repo, base) == 1
    out = capsys.readouterr().out
    assert "the working tree (uncommitted and untracked files included)" in out
    assert "gate: FAIL" in out and "rows [4, 8)" in out


def test_untracked_model_file_is_gated_and_a_clean_tree_passes(repo, capsys):  # noqa: F811
    base = commit(repo, {FILE: kernel(tile=4)})
    assert gate(repo, base) == 0
    assert "gate: PASS — 0 entries in 0 files" in capsys.readouterr().out
    (repo / "models/toy/fresh.py").write_text(kernel(tile=4, blocks="T // T_TILE - 1"))
    assert gate(repo, base) == 1
    out = capsys.readouterr().out
    assert "models/toy/fresh.py" in out and "new file, checked against itself" in out


# ----------------------------------------------------------------------------------------
# Interface changes judged
# ----------------------------------------------------------------------------------------
def bf16_input(text: str) -> str:
    return text.replace("x: pl.Tensor[[T, D], pl.FP32]", "x: pl.Tensor[[T, D], pl.BF16]").replace(
        '"x", [T, D], torch.float32', '"x", [T, D], torch.bfloat16')


def test_interface_change_adding_an_out_of_range_read_fails_naming_it(repo, capsys, tmp_path):  # noqa: F811
    base = commit(repo, {FILE: kernel(tile=4)})
    body = "pl.store(pl.cast(pl.mul(pl.load(x, [b * T_TILE + 2, 0], [T_TILE, D]), 2.0), pl.FP32), [b * T_TILE, 0], y)"
    head = commit(repo, {FILE: bf16_input(kernel(tile=4, body=body))})
    junit = tmp_path / "gate.xml"
    assert gate(repo, base, "--head", head, "--junit", str(junit)) == 1
    out = capsys.readouterr().out
    assert "interface changed: x: x [8, 16] float32 (input) -> x [8, 16] bfloat16 (input)" in out
    assert "x: head has a oob-read hazard base's own run does not" in out
    assert "head: oob-read on x at" in out and "read of x[6:10, 0:16] but x has shape [8, 16]" in out
    assert "SKIPPED" not in out and "gate: FAIL" in out
    assert ET.parse(junit).getroot().find(".//failure") is not None


def test_interface_change_with_no_new_defect_passes_listing_the_changes(repo, capsys):  # noqa: F811
    base = commit(repo, {FILE: kernel(tile=4)})
    body = "pl.store(pl.cast(pl.mul(t, 2.0), pl.FP32), [b * T_TILE, 0], y)"
    head = commit(repo, {FILE: bf16_input(kernel(tile=2, body=body))})
    assert gate(repo, base, "--head", head) == 0
    out = capsys.readouterr().out
    assert f"PASS          {FILE}:scale_test" in out
    assert "interface changed: x: x [8, 16] float32 (input) -> x [8, 16] bfloat16 (input)" in out
    assert "y: error against each side's own golden" in out and "not compared element by element" in out


# ----------------------------------------------------------------------------------------
# The budget for the pull request, and shards
# ----------------------------------------------------------------------------------------
def test_budget_too_small_lists_unchecked_entries_and_exits_2(repo, capsys, tmp_path):  # noqa: F811
    second = "models/toy/second.py"
    base = commit(repo, {FILE: kernel(tile=4), second: kernel(tile=4)})
    head = commit(repo, {FILE: kernel(tile=2), second: kernel(tile=2)})
    junit = tmp_path / "gate.xml"
    assert gate(repo, base, "--head", head, "--time-budget", "0.001", "--junit", str(junit)) == 2
    out = capsys.readouterr().out
    assert "NOT CHECKED" in out and "budget of 0.001 s was spent" in out
    # two files × (the file's own model instance + PRO + TOKENS=136): planning alone spends the
    # budget, so none starts
    assert "gate: INCOMPLETE" in out and "6 not checked" in out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "6" and suite.get("skipped") == "6" and suite.get("failures") == "0"
    assert "not checked" in suite.find(".//skipped").get("message")


def test_an_entry_running_past_the_budget_is_stopped_and_not_judged(repo, capsys, tmp_path):  # noqa: F811
    """The budget is for the whole pull request (the CI job is killed at its own timeout): an
    entry whose cases run far past its estimate is stopped where the budget ends, listed as
    not checked, and the gate still writes its verdict and JUnit."""
    import time

    spin = "for i in pl.range(300000):\n            t = pl.add(t, 0.0)\n        " + STORE_LINE
    base = commit(repo, {FILE: kernel(tile=4, body=spin)})
    head = commit(repo, {FILE: kernel(tile=2, body=spin)})
    junit = tmp_path / "gate.xml"
    t0 = time.perf_counter()
    assert gate(repo, base, "--head", head, "--time-budget", "8", "--junit", str(junit)) == 2
    wall = time.perf_counter() - t0
    out = capsys.readouterr().out
    assert wall < 30, f"the gate ran {wall:.0f} s on a budget of 8 s"  # unstopped: about a minute per entry
    assert re.search(r"stopped after \d+ s, when the pull request's budget of 8 s ran out", out)
    assert "gate: INCOMPLETE" in out and "3 not checked" in out and "PASS " not in out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("skipped") == "3" and suite.get("failures") == "0"


def test_an_entry_far_past_its_estimate_does_not_starve_the_others(repo, capsys, monkeypatch):  # noqa: F811
    """Both files declare the same bytes (the same estimate); the slow one sorts first. It gets a
    share of its estimate, is put back after the other, which is judged, and then gets what is
    left of the budget."""
    from equiv.pairfree import budget

    monkeypatch.setattr(budget, "SHARE_FLOOR", 4.0)
    monkeypatch.setattr(budget, "SHARE_FACTOR", 0.0)
    slow = "models/toy/a_slow.py"
    spin = "for i in pl.range(3000000):\n            t = pl.add(t, 0.0)\n        " + STORE_LINE
    base = commit(repo, {slow: kernel(tile=4, body=spin), FILE: kernel(tile=4)})
    head = commit(repo, {slow: kernel(tile=2, body=spin), FILE: kernel(tile=2)})
    assert gate(repo, base, "--head", head, "--time-budget", "25", "--model", "DEMO", "--recipe", "realistic") == 2
    out = capsys.readouterr().out
    assert f"PASS          {FILE}:scale_test" in out
    assert f"NOT CHECKED   {slow}:scale_test" in out and "its first try ran 4 s, past its share" in out
    assert out.index(f"{slow}: scale_test: past its share of 4 s") < out.index(f"{FILE}: base -> head")


def test_selection_and_planning_count_against_the_budget(repo, capsys, monkeypatch):  # noqa: F811
    """The budget is for the whole gate: time spent planning is not given again to the entries."""
    import time

    real = planning.plan_changes

    def slow(*args, **kwargs):
        time.sleep(2.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(planning, "plan_changes", slow)
    base = commit(repo, {FILE: kernel(tile=4)})
    head = commit(repo, {FILE: kernel(tile=2)})
    assert gate(repo, base, "--head", head, "--time-budget", "2") == 2
    out = capsys.readouterr().out
    assert "selection and planning took 3 s of it" in out or "selection and planning took 2 s of it" in out
    assert "gate: INCOMPLETE" in out and "3 not checked" in out and "PASS " not in out


def test_a_process_whose_deadline_abandoned_threads_exits_with_the_gate_s_code():
    import subprocess
    import sys

    code = ("import threading, time, equiv.deadline as d\n"
            "try:\n"
            "    with d.hard_deadline(0.2):\n"
            "        threading.Thread(target=lambda: time.sleep(60), daemon=True).start()\n"
            "        time.sleep(5)\n"
            "except d.DeadlineReached:\n"
            "    print('stopped', flush=True)\n"
            "d.exit_process(2)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "stopped" and done.returncode == 2


def test_shards_are_balanced_by_estimated_cost():
    entries = [planning.PlannedEntry("f.py", f"e{i}", False, "changed", estimate=c)
               for i, c in enumerate([100, 90, 10, 10, 10, 5])]
    loads = [sum(e.estimate for e in planning.shard(entries, k, 2)) for k in (1, 2)]
    assert sorted(loads) == [110, 115]
    assert sorted(e.entry for k in (1, 2) for e in planning.shard(entries, k, 2)) == [e.entry for e in entries]


def test_cheapest_entry_runs_first():
    entries = [planning.PlannedEntry("a.py", "big", False, "", estimate=50),
               planning.PlannedEntry("b.py", "small", False, "", estimate=5),
               planning.PlannedEntry("c.py", "same", True, "")]
    assert [e.entry for e in planning.order(entries)] == ["small", "big"]


def test_an_instance_of_an_unsized_entry_is_estimated_unknown_not_at_the_floor(monkeypatch):
    # the head recording has no call of the entry (its block did not run on the meta device):
    # its cost at another model instance is as unknown as at its own, never a few seconds
    models = {"DEMO": {"hidden": 16, "default": True, "bytes": 1024},
              "PRO": {"hidden": 7168, "bytes": 2048}}
    monkeypatch.setattr(fp, "compare_file", lambda *a, **k: [fp.EntryChange("big_test", False, "changed")])
    monkeypatch.setattr(fp, "record", lambda *a, **k: {"<models>": models, "sized_test": {"default": []}})
    got = {p.label: p.estimate for p in planning.plan_file("r", "b", "f.py", "h", "f.py")}
    assert got == {"big_test": planning.UNKNOWN_SECONDS, "big_test [model PRO]": planning.UNKNOWN_SECONDS}


def test_dry_run_lists_unchanged_and_to_run_without_running(repo, capsys, monkeypatch):  # noqa: F811
    second = "models/toy/second.py"
    base = commit(repo, {FILE: kernel(tile=4), second: kernel(tile=4)})
    head = commit(repo, {FILE: kernel(tile=2), second: renamed_flag(kernel(tile=4))})
    started = no_kernel_runs(monkeypatch)
    assert gate(repo, base, "--head", head, "--dry-run") == 0
    out = capsys.readouterr().out
    assert started == []
    assert "scale_test: to run, estimated" in out and "scale_test [default]: outputs y[8, 16]; inputs x[8, 16]" in out
    assert "scale_test: unchanged" in out
    assert "scale_test [model PRO]: to run" in out
    assert "scale_test [TOKENS=136]: to run" in out and "the file's 8 fits one 128-token tile" in out
    assert "2 files, 4 entries: 1 unchanged, 3 to run" in out


def test_texts_at_a_commit_are_read_once_per_gate_and_the_working_tree_never_cached(repo, monkeypatch):  # noqa: F811
    from equiv.pairfree import reach

    a = commit(repo, {FILE: kernel(tile=4)})
    reads = []
    real = reach.texts_at
    monkeypatch.setattr(reach, "texts_at", lambda r, rev, paths: reads.append((rev, *paths)) or real(r, rev, paths))
    first, second = reach.Source(str(repo), a), reach.Source(str(repo), a)
    text = first.text(FILE)
    assert text and "T_TILE = 4" in text and second.text(FILE) == text
    assert reads == [(a, FILE)]  # the second Source of the same commit reads nothing
    assert reach.Source(str(repo), "HEAD").text(FILE) and reads[-1] == ("HEAD", FILE)  # a ref may move
    before = reach.Source(str(repo), None).text(FILE)
    (repo / FILE).write_text(kernel(tile=2))
    assert reach.Source(str(repo), None).text(FILE) != before  # the working tree is read again


@pytest.mark.parametrize("tile", [2])
def test_same_program_twice_is_unchanged_by_fingerprint(repo, tile):  # noqa: F811
    a = commit(repo, {FILE: kernel(tile=tile)})
    b = commit(repo, {FILE: '"""A docstring now."""\n' + kernel(tile=tile)})
    (c,) = fp.compare_file(str(repo), a, FILE, b, FILE)
    assert c.unchanged


# ----------------------------------------------------------------------------------------
# `equiv check FILE`: HEAD against the working tree; defects never "equivalent"
# ----------------------------------------------------------------------------------------
def test_check_a_path_means_head_against_the_working_tree(repo, capsys, monkeypatch):  # noqa: F811
    commit(repo, {FILE: kernel(tile=4)})
    (repo / FILE).write_text(kernel(tile=4, blocks="T // T_TILE - 1"))  # edited, not committed
    monkeypatch.chdir(repo)
    assert main(["check", FILE, "--recipe", "realistic"]) == 1
    out = capsys.readouterr().out
    assert f"pre = {FILE} at HEAD, retiled = {FILE} in the working tree" in out
    assert "scale_test: REGRESSION" in out and "rows [4, 8)" in out


def test_check_source_without_revisions_clean_tree_is_equivalent(repo, capsys, monkeypatch):  # noqa: F811
    commit(repo, {FILE: kernel(tile=4)})
    assert main(["check", "--source", FILE, "--repo", str(repo), "--recipe", "realistic"]) == 0
    out = capsys.readouterr().out
    assert "no revisions given: pre = models/toy/scale.py at HEAD" in out and "result: EQUIVALENT" in out


def test_same_revision_check_with_defects_says_defects_found(repo, capsys):  # noqa: F811
    body = "pl.store(pl.mul(pl.load(x, [b * T_TILE + 2, 0], [T_TILE, D]), 2.0), [b * T_TILE, 0], y)"
    a = commit(repo, {FILE: kernel(tile=4, body=body)})
    args = ["check", "--source", FILE, "--pre-rev", a, "--retiled-rev", a, "--repo", str(repo), "--pair-free",
            "--recipe", "realistic"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "EQUIVALENT" not in out and "result: DEFECTS FOUND" in out
    assert "scale_test: DEFECTS FOUND (one revision on both sides)" in out
    assert "oob-read on x at" in out and "read of x[6:10, 0:16] but x has shape [8, 16]" in out
    assert main(args + ["--strict"]) == 1


# ----------------------------------------------------------------------------------------
# Inputs that find bugs
# ----------------------------------------------------------------------------------------
def test_gate_default_inputs_include_the_adversarial_recipes(repo, capsys):  # noqa: F811
    # x * 2^-100 * 2^101 is x * 2 bit for bit, until x * 2^-100 underflows: only tiny inputs tell
    base = commit(repo, {FILE: kernel(tile=4)})
    head = commit(repo, {FILE: kernel(tile=4, body="pl.store(pl.mul(pl.mul(t, 2.0 ** -100), 2.0 ** 101), [b * T_TILE, 0], y)")})
    assert gate(repo, base, "--head", head, "--recipe", "realistic") == 0
    capsys.readouterr()
    assert gate(repo, base, "--head", head) == 1
    out = capsys.readouterr().out
    assert "gate: FAIL" in out and "regression" in out


def via_main_function(text: str) -> str:
    """The __main__ block's body moved into a module-level ``main()`` the block calls (run_jit is
    then reached through a function: no entry is named in the block itself)."""
    return text.replace('if __name__ == "__main__":', "def main():") + '\n\nif __name__ == "__main__":\n    main()\n'


def test_harness_function_edit_is_unchanged_but_a_kernel_edit_is_not(repo):  # noqa: F811
    base = commit(repo, {FILE: via_main_function(kernel(tile=4))})
    head = commit(repo, {FILE: via_main_function(renamed_flag(kernel(tile=4)))})
    (c,) = fp.compare_file(str(repo), base, FILE, head, FILE)
    assert c.entry == "scale_test" and c.unchanged, c.why
    assert "models/toy/scale.py:main (harness only)" in c.why
    head2 = commit(repo, {FILE: via_main_function(renamed_flag(kernel(tile=2)))})
    (c,) = fp.compare_file(str(repo), head, FILE, head2, FILE)
    assert c.entry == "scale_test" and not c.unchanged and "models/toy/scale.py:T_TILE" in c.why


def test_gate_checks_the_config_s_other_model_instances(repo, capsys):  # noqa: F811
    # head refuses a hidden size its tile does not divide: DEMO's 16 passes, PRO's 24 does not
    base = commit(repo, {FILE: kernel(tile=4)})
    head = commit(repo, {FILE: kernel(tile=2, module_assert="assert D % 16 == 0")})
    assert gate(repo, base, "--head", head, "--recipe", "realistic") == 1
    out = capsys.readouterr().out
    assert f"PASS          {FILE}:scale_test" in out
    assert f"FAIL          {FILE}:scale_test [model PRO]" in out and "narrowed contract" in out
    assert gate(repo, base, "--head", head, "--recipe", "realistic", "--model", "DEMO") == 0


def with_second_entry(text: str, blocks: str = "T // T_TILE") -> str:
    """The toy file with a second entry (``twice_test``) handed to run_jit too."""
    second = '''

@pl.jit
def twice_test(x: pl.Tensor[[T, D], pl.FP32], y: pl.Out[pl.Tensor[[T, D], pl.FP32]]):
    for b in pl.spmd(BLOCKS2, name_hint="rows"):
        t = pl.load(x, [b * T_TILE, 0], [T_TILE, D])
        pl.store(pl.mul(t, 2.0), [b * T_TILE, 0], y)
    return y
'''.replace("BLOCKS2", blocks)
    text = text.replace("\n\ndef golden_scale(tensors):", second + "\n\ndef golden_scale(tensors):")
    return text.replace("            compare_fn={\"y\": ratio_allclose()})",
                        "            compare_fn={\"y\": ratio_allclose()})\n"
                        "    run_jit(fn=twice_test, specs=build_tensor_specs(), golden_fn=golden_scale)")


def test_entry_added_to_an_existing_file_is_checked_on_its_own(repo, capsys):  # noqa: F811
    base = commit(repo, {FILE: kernel(tile=4)})
    head = commit(repo, {FILE: with_second_entry(kernel(tile=4), blocks="T // T_TILE - 1")})
    assert gate(repo, base, "--head", head, "--recipe", "realistic", "--model", "DEMO") == 1
    out = capsys.readouterr().out
    assert f"UNCHANGED     {FILE}:scale_test" in out
    assert f"FAIL          {FILE}:twice_test" in out and "entry twice_test is called by the __main__ block at " \
        "retiled only" in out and "y: head leaves 64 elements unwritten" in out


def test_interface_change_compares_outputs_on_exactly_converted_inputs(repo, capsys):  # noqa: F811
    # base reads x as BF16; head reads it as FP32 (exact) and scales by 2.5 — golden too, so each
    # side matches its own golden: only the comparison on converted inputs sees the change
    base_body = "pl.store(pl.cast(pl.mul(t, 2.0), pl.FP32), [b * T_TILE, 0], y)"
    base = commit(repo, {FILE: bf16_input(kernel(tile=4, body=base_body))})
    head_text = kernel(tile=4, body="pl.store(pl.mul(t, 2.5), [b * T_TILE, 0], y)").replace(
        'tensors["y"][:] = tensors["x"] * 2.0', 'tensors["y"][:] = tensors["x"] * 2.5')
    head = commit(repo, {FILE: head_text})
    assert gate(repo, base, "--head", head, "--recipe", "realistic", "--model", "DEMO") == 1
    out = capsys.readouterr().out
    assert "interface changed: x: x [8, 16] bfloat16 (input) -> x [8, 16] float32 (input)" in out
    assert "on inputs both sides take (converted exactly for head), base -> head is a regression" in out
    same = commit(repo, {FILE: kernel(tile=2)})  # FP32, x * 2: the same numbers on converted inputs
    assert gate(repo, base, "--head", same, "--recipe", "realistic", "--model", "DEMO") == 0
    out = capsys.readouterr().out
    assert "on inputs both sides take (converted exactly for head): equivalent" in out


def test_entries_that_cannot_be_judged_at_either_revision_are_counted_in_the_headline(repo, capsys):  # noqa: F811
    # an import the emulator does not cover makes both revisions unjudgeable: the entries are
    # skipped, and the last line says how many, not only "PASS"
    unknown = "from pypto.not_a_module import something  # noqa: F401\n"
    base = commit(repo, {FILE: unknown + kernel(tile=4)})
    head = commit(repo, {FILE: unknown + kernel(tile=2)})
    assert gate(repo, base, "--head", head) == 0
    out = capsys.readouterr().out
    assert "cannot judge at base either" in out
    skipped = out.count("\nSKIPPED ")
    assert skipped >= 1 and f", {skipped} skipped" in out.splitlines()[-1]


# ----------------------------------------------------------------------------------------
# Entries the ``__main__`` block reaches only under an option, and instances the file refuses
# ----------------------------------------------------------------------------------------
def entry_chosen_by_option(text: str, blocks: str = "T // T_TILE", condition: str = 'args.entry == "twice"') -> str:
    """The toy file with a second entry (``twice_test``) that the ``__main__`` block hands to
    run_jit only when `condition` holds (by default ``--entry twice``, as pypto-lib's dspark
    decode files choose between their full, output and tp1 entries)."""
    text = with_second_entry(text, blocks)
    text = text.replace('parser.add_argument("-p", "--platform", default="a2a3")',
                        'parser.add_argument("-p", "--platform", default="a2a3")\n'
                        '    parser.add_argument("--entry", choices=("scale", "twice"), default="scale")')
    text = text.replace("    run_jit(fn=scale_test,", '    if args.entry == "scale":\n        run_jit(fn=scale_test,')
    text = text.replace("            compare_fn={\"y\": ratio_allclose()})\n",
                        "                compare_fn={\"y\": ratio_allclose()})\n")
    return text.replace("    run_jit(fn=twice_test,", f"    if {condition}:\n        run_jit(fn=twice_test,")


def test_an_entry_run_only_under_an_entry_option_is_gated_under_it(repo, capsys):  # noqa: F811
    base = commit(repo, {FILE: entry_chosen_by_option(kernel(tile=4))})
    head = commit(repo, {FILE: entry_chosen_by_option(kernel(tile=4), blocks="T // T_TILE - 1")})
    assert gate(repo, base, "--head", head, "--recipe", "realistic", "--model", "DEMO") == 1
    out = capsys.readouterr().out
    assert "cannot be checked" not in out and "CANNOT CHECK" not in out
    assert f"FAIL          {FILE}:twice_test" in out and "y: head leaves 64 elements unwritten" in out
    assert f"UNCHANGED     {FILE}:scale_test" in out
    same = commit(repo, {FILE: entry_chosen_by_option(kernel(tile=2))})  # a clean retile of both
    assert gate(repo, head, "--head", same, "--recipe", "realistic", "--model", "DEMO") == 0  # the hole, fixed
    assert f"PASS          {FILE}:twice_test" in capsys.readouterr().out
    assert gate(repo, base, "--head", same, "--recipe", "realistic", "--model", "DEMO") == 0
    out = capsys.readouterr().out
    assert f"PASS          {FILE}:twice_test" in out and f"PASS          {FILE}:scale_test" in out


def test_an_entry_no_mode_reaches_is_not_checked_and_never_passes(repo, capsys):  # noqa: F811
    unreached = 'args.platform == "never"'
    base = commit(repo, {FILE: entry_chosen_by_option(kernel(tile=4), condition=unreached)})
    head = commit(repo, {FILE: entry_chosen_by_option(kernel(tile=4), blocks="T // T_TILE - 1", condition=unreached)})
    assert gate(repo, base, "--head", head, "--recipe", "realistic", "--model", "DEMO") == 2
    out = capsys.readouterr().out
    assert "CANNOT CHECK" not in out
    assert f"NOT CHECKED   {FILE}:twice_test" in out
    assert "calls no run_jit of twice_test at either revision under the modes equiv tries (scale, twice)" in out, out
    assert f"PASS          {FILE}:twice_test" not in out
    assert out.splitlines()[-1].startswith("gate: INCOMPLETE")


def test_an_instance_the_file_refuses_at_both_revisions_is_skipped_once_not_passed(repo, capsys):  # noqa: F811
    only_demo = 'assert D == 16, "this kernel supports hidden_size 16 only"'
    base = commit(repo, {FILE: kernel(tile=4, module_assert=only_demo)})
    head = commit(repo, {FILE: kernel(tile=2, module_assert=only_demo)})
    assert gate(repo, base, "--head", head, "--recipe", "realistic") == 0
    out = capsys.readouterr().out
    assert f"PASS          {FILE}:scale_test\n" in out or f"PASS          {FILE}:scale_test (" in out
    pro = [line for line in out.splitlines() if f"{FILE}:scale_test [model PRO]" in line]
    assert len(pro) == 1 and pro[0].startswith("SKIPPED"), out
    assert "this kernel supports hidden_size 16 only" in out


def test_checking_an_entry_no_mode_reaches_says_not_called(repo, capsys):  # noqa: F811
    text = entry_chosen_by_option(kernel(tile=4), condition='args.platform == "never"')
    a = commit(repo, {FILE: text})
    code = main(["check", "--source", f"{FILE}:twice_test", "--pre-rev", a, "--retiled-rev", a, "--repo", str(repo),
                 "--pair-free", "--recipe", "realistic"])
    out = capsys.readouterr().out
    assert code == 2 and "twice_test: NOT CALLED" in out and "entries it calls: scale_test" in out
