"""``equiv coverage``: entries pypto did not define at the revisions that use them
(`equiv.not_pypto`) are listed apart, with their files and revisions, and left out of the
totals; anything else the emulator lacks still counts as missing."""

from __future__ import annotations

import json
import subprocess

from equiv.cli import main
from tests.test_fidelity_legacy_forms import _dated_commit

DRAFT = '''import pypto.language as pl


@pl.kernel
def draft(x):
    return pl.tile.cast(x, dtype=pl.FP32)
'''


def _repo(tmp_path, late: str | None = None):
    r = tmp_path / "lib"
    r.mkdir()
    subprocess.run(["git", "-C", str(r), "init", "-q"], check=True)
    _dated_commit(r, {"models/a.py": "import pypto.language as pl\nx = pl.exp\n"}, "2026-06-02")
    _dated_commit(r, {"models/draft.py": DRAFT}, "2026-06-04")
    _dated_commit(r, {"models/draft.py": DRAFT.replace("@pl.kernel", "@pl.jit").replace("dtype=", "target_type=")},
                  "2026-06-12")
    if late:
        _dated_commit(r, {"models/late.py": late}, "2026-09-10")
    return r


def test_names_pypto_never_had_are_listed_apart_and_not_counted(tmp_path, capsys):
    r = _repo(tmp_path)
    assert main(["coverage", "--repo", str(r), "--since", "2026-06-01", "models"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[-1].startswith("covered ") and lines[-1].split()[1] == lines[-1].split()[3]  # K of K
    # The revision that used them says so, with the file ...
    at = next(i for i, line in enumerate(lines) if line.startswith("2026-06-04"))
    assert "not pypto then, not counted: pl.kernel (models/draft.py)" in " ".join(lines[at:at + 3])
    # ... and the union lists each with its file, revision and what pypto had instead.
    section = out[out.index("not pypto where used"):]
    assert "pl.kernel" in section and "pl.tile.cast(dtype=)" in section
    assert "models/draft.py@" in section and "2026-06-04" in section and "target_type=" in section
    assert main(["coverage", "--repo", str(r), "--since", "2026-06-01", "--json", "models"]) == 0
    data = json.loads(capsys.readouterr().out)
    apart = {n["name"]: n for n in data["union"]["not_pypto"]}
    assert set(apart) == {"pl.kernel", "pl.tile.cast(dtype=)"}
    assert apart["pl.kernel"]["paths"][0].startswith("models/draft.py@") and apart["pl.kernel"]["revisions"]
    assert not any(n["name"] in apart for n in data["union"]["names"])
    assert [rev["not_pypto"] for rev in data["revisions"]][1] == ["pl.kernel", "pl.tile.cast(dtype=)"]


def test_a_name_missing_from_the_emulator_still_fails(tmp_path, capsys):
    r = _repo(tmp_path)
    _dated_commit(r, {"models/b.py": "import pypto.language as pl\ny = pl.frobnicate\n"}, "2026-06-13")
    assert main(["coverage", "--repo", str(r), "--since", "2026-06-01", "models"]) == 1
    out = capsys.readouterr().out
    assert "MISSING   pl.frobnicate" in out and "pl.kernel" in out[out.index("not pypto where used"):]


def test_a_use_after_the_checked_history_counts_as_missing(tmp_path, capsys):
    # pypto's history was examined up to 2026-08-21: a later use may name something pypto added since.
    r = _repo(tmp_path, late="import pypto.language as pl\n\n\n@pl.kernel\ndef k():\n    pass\n")
    assert main(["coverage", "--repo", str(r), "--since", "2026-06-01", "models"]) == 1
    out = capsys.readouterr().out
    assert "MISSING   pl.kernel" in out
    assert main(["coverage", "--repo", str(r), "--rev", "HEAD", "models"]) == 1  # at that revision alone too
    assert "MISSING   pl.kernel" in capsys.readouterr().out


def test_at_one_revision_the_file_and_its_date_decide(tmp_path, capsys):
    r = _repo(tmp_path)
    first = subprocess.run(["git", "-C", str(r), "rev-list", "--reverse", "HEAD"], capture_output=True, text=True,
                           check=True).stdout.split()[1]  # 2026-06-04: the draft as first written
    assert main(["coverage", "--repo", str(r), "--rev", first, "models"]) == 0
    out = capsys.readouterr().out
    assert "no pypto  pl.kernel" in out and "models/draft.py" in out
    # The working tree has no date: nothing is set apart there.
    subprocess.run(["git", "-C", str(r), "checkout", "-q", first], check=True)
    assert main(["coverage", "--repo", str(r), "models"]) == 1
