"""The pypto modules that configure a device run (``pypto.backend``, ``pypto.runtime``) load
in source mode, so a file importing them at module level is judged, not refused; a name pypto
does not have still fails as on the device."""

from __future__ import annotations

from equiv.coverage import covers
from equiv.source import run_harness
from tests.test_pairfree import FILE, check, commit, kernel, repo  # noqa: F401 (fixture)

HARNESS_IMPORTS = """
from pypto.backend import BackendType, set_backend_type
from pypto.runtime import RunConfig, pto_isa_include_dir

TARGET = BackendType.{member}
INCLUDE = pto_isa_include_dir()
set_backend_type(TARGET)
CONFIG = RunConfig(platform="a2a3", backend_type=TARGET)
"""


def with_harness(member: str = "Ascend910B", **kw) -> str:
    return kernel(module_assert=HARNESS_IMPORTS.format(member=member), **kw)


def test_a_file_importing_the_run_harness_at_module_level_is_judged(repo, capsys):
    a = commit(repo, {FILE: with_harness(tile=4)})
    b = commit(repo, {FILE: with_harness(tile=2)})
    assert check(repo, FILE, a, b) == 0
    out = capsys.readouterr().out
    assert "scale_test: EQUIVALENT" in out
    assert "CANNOT JUDGE" not in out


def test_a_defect_behind_the_run_harness_imports_is_still_caught(repo, capsys):
    a = commit(repo, {FILE: with_harness(tile=4)})
    b = commit(repo, {FILE: with_harness(tile=4, blocks="T // T_TILE - 1")})  # last rows unwritten
    assert check(repo, FILE, a, b) == 1
    out = capsys.readouterr().out
    assert "scale_test: REGRESSION" in out


def test_a_backend_pypto_does_not_have_fails_as_on_the_device(repo, capsys):
    a = commit(repo, {FILE: with_harness(member="NoSuchChip")})
    check(repo, FILE, a, a)
    captured = capsys.readouterr()
    assert "NoSuchChip" in captured.out + captured.err
    assert "EQUIVALENT" not in captured.out


def test_set_backend_type_records_and_checks_its_argument():
    mod = run_harness.MODULES["pypto.backend"]()
    mod.set_backend_type(mod.BackendType.Ascend950)
    assert mod.chosen == [mod.BackendType.Ascend950]
    try:
        mod.set_backend_type("Ascend950")
    except TypeError as err:
        assert "BackendType" in str(err)
    else:
        raise AssertionError("a string is not a BackendType")


def test_coverage_counts_the_run_harness_as_provided():
    assert covers("import pypto.backend")
    assert covers("import pypto.runtime")
    assert not covers("import pypto.ir.pass_manager")
