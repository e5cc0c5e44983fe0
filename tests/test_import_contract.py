"""The import contract (.importlinter) as CI checks it: the tree as it is keeps it, and an
import against the layers, or a cycle inside a package, breaks it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("importlinter")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _lint(tree: str) -> subprocess.CompletedProcess:
    lint = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    return subprocess.run([lint, "--no-cache"], cwd=tree, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": tree})


def _copy(tmp_path) -> str:
    tree = str(tmp_path / "tree")
    shutil.copytree(os.path.join(ROOT, "equiv"), os.path.join(tree, "equiv"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(ROOT, ".importlinter"), tree)
    return tree


def _append(path: str, text: str) -> None:
    with open(path, "a") as fh:
        fh.write(text)


def test_the_tree_keeps_the_contract(tmp_path):
    out = _lint(_copy(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 kept, 0 broken" in out.stdout


def test_the_emulator_importing_the_harness_breaks_the_layers(tmp_path):
    tree = _copy(tmp_path)
    # tile is below check: an emulator module reaching up for a result type is refused
    _append(os.path.join(tree, "equiv", "tile", "sites.py"), "\n\ndef _late():\n    from equiv import results\n")
    out = _lint(tree)
    assert out.returncode != 0
    assert "equiv.tile is not allowed to import equiv.results" in out.stdout
    assert "equiv.tile.sites -> equiv.results" in out.stdout


def test_a_cycle_inside_a_package_breaks_the_contract(tmp_path):
    tree = _copy(tmp_path)
    # memory imports races; races importing memory back (not only for type hints) is a cycle
    _append(os.path.join(tree, "equiv", "tile", "races.py"), "\n\ndef _late():\n    from equiv.tile import memory\n")
    out = _lint(tree)
    assert out.returncode != 0
    assert "No cycles are allowed in equiv.tile" in out.stdout
