"""`equiv gate` on a repository of model files (pypto-lib-like), nothing registered.

The fixture repository and kernel template come from test_pairfree: a toy ``config.py`` and a
kernel file with its ``@pl.jit`` entry, golden, ``build_tensor_specs`` and ``__main__`` calling
``golden.run_jit``; revisions are commits of it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from equiv.cli import main
from equiv.pairfree import gate as pfg
from tests.test_pairfree import FILE, commit, git, kernel, repo  # noqa: F401 - `repo` is a fixture

HOLE = "T // T_TILE - 1"  # the last block of rows is never written


def gate(repo, base: str, head: str, *extra: str) -> int:  # noqa: F811
    return main(["gate", "--repo", str(repo), "--base", base, "--head", head, "--report", "", *extra])


def test_selects_changed_model_files_and_follows_renames(repo):  # noqa: F811
    a = commit(repo, {FILE: kernel(tile=4), "models/toy/notes.py": "X = 1\n"})
    git(repo, "mv", FILE, "models/toy/scale_rows.py")
    b = commit(repo, {"models/toy/scale_rows.py": kernel(tile=2), "models/toy/notes.py": "X = 2\n"})
    changes = pfg.changed_model_files(str(repo), a, b)
    assert [(c.base_path, c.head_path, c.status) for c in changes] == [(FILE, "models/toy/scale_rows.py", "R")]


def test_clean_retile_passes(repo, capsys, tmp_path):  # noqa: F811
    a = commit(repo, {FILE: kernel(tile=4)})
    b = commit(repo, {FILE: kernel(tile=2)})
    junit = tmp_path / "gate.xml"
    assert gate(repo, a, b, "--junit", str(junit)) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and f"{FILE}:scale_test" in out
    suite = ET.parse(junit).getroot().find("testsuite")
    # the file's own instance (DEMO), the config's other instance (PRO, the largest hidden size)
    # and the file's 8 tokens grown past one 128-token tile
    assert suite.get("tests") == "3" and suite.get("failures") == "0"
    assert "scale_test [model PRO]" in out and "scale_test [TOKENS=136]" in out


def test_branch_that_reopens_a_closed_hole_fails(repo, capsys, tmp_path):  # noqa: F811
    commit(repo, {FILE: kernel(tile=4, blocks=HOLE)}, "the hole")
    base = commit(repo, {FILE: kernel(tile=4)}, "close the hole")
    git(repo, "checkout", "-q", "-b", "branch")
    head = commit(repo, {FILE: kernel(tile=2, blocks="T // T_TILE - 2")}, "retile, re-opening it")
    junit = tmp_path / "gate.xml"
    assert gate(repo, base, head, "--junit", str(junit)) == 1
    out = capsys.readouterr().out
    assert "gate: FAIL" in out and "scale_test" in out
    assert "rows [4, 8)" in out and "unwritten" in out
    failure = ET.parse(junit).getroot().find(".//failure")
    assert failure is not None


def test_adding_unwritten_elements_fails_even_when_base_has_a_hole(repo, capsys):  # noqa: F811
    base = commit(repo, {FILE: kernel(tile=2, blocks="T // T_TILE - 1")}, "rows 6..8 unwritten")
    head = commit(repo, {FILE: kernel(tile=2, blocks="T // T_TILE - 2")}, "rows 4..8 unwritten")
    assert gate(repo, base, head) == 1
    out = capsys.readouterr().out
    assert "gate: FAIL" in out and "unwritten" in out


def test_keeping_base_hole_as_is_passes(repo, capsys):  # noqa: F811
    # the same hole before and after (x * 2 written as x + x): base's own verdict
    base = commit(repo, {FILE: kernel(tile=4, blocks=HOLE)})
    head = commit(repo, {FILE: kernel(tile=4, blocks=HOLE, body="pl.store(pl.add(t, t), [b * T_TILE, 0], y)")})
    assert gate(repo, base, head) == 0
    out = capsys.readouterr().out
    assert "nothing base's own run lacks" in out
    # the hole both sides share is shown, not hidden behind the pass
    assert "defects (" in out and "base: y: 64 elements unwritten (rows [4, 8)" in out and "head: y: 64 elements unwritten" in out


def test_gap_in_head_cannot_be_judged(repo, capsys):  # noqa: F811
    base = commit(repo, {FILE: kernel(tile=4)})
    head = commit(repo, {FILE: kernel(tile=4, body="pl.store(pl.frobnicate(t), [b * T_TILE, 0], y)")})
    assert gate(repo, base, head) == 2
    out = capsys.readouterr().out
    assert "CANNOT JUDGE" in out and "pl.frobnicate" in out
    assert "gate: PASS" not in out


def test_dry_run_lists_files_entries_and_shapes(repo, capsys):  # noqa: F811
    base = commit(repo, {FILE: kernel(tile=4)})
    head = commit(repo, {FILE: kernel(tile=2)})
    assert gate(repo, base, head, "--dry-run") == 0
    out = capsys.readouterr().out
    assert f"{FILE} (modified)" in out
    assert "scale_test [default]: outputs y[8, 16]; inputs x[8, 16]" in out
    assert "policy: shapes: every mode at the file's own defaults" in out
    assert "\ngate: " not in out  # nothing ran
