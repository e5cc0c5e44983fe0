"""DSL forms pypto-lib's models used since 2026-06-01 that pypto has renamed or retired
since (`equiv/tile/legacy.py`), run with the meaning pypto gave them then, and
``equiv coverage --since``: the census per first-parent revision and over their union."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from equiv.cli import main
from tests.test_pairfree import FILE, check, commit, kernel, repo  # noqa: F401 (fixture)

# The same computation in the forms of June 2026 (pl.load(valid_shapes=), pl.incore,
# pl.auto_incore, pl.at(optimization=pl.chunked_loop_optimizer), pl.Scalar[pl.BOOL]) ...
OLD = kernel(tile=4, blocks="1", body='''with pl.incore():
            w = pl.load(x, [0, 0], [2 * T_TILE, D], valid_shapes=[T_TILE, D])
            pl.assemble(y, pl.mul(w, 2.0), [0, 0])
        with pl.auto_incore(split=pl.SplitMode.NONE):
            w = pl.load(x, [T_TILE, 0], [T_TILE, D], valid_shapes=[T_TILE, D])
        with pl.at(level=pl.Level.CORE_GROUP, optimization=pl.chunked_loop_optimizer(split=pl.SplitMode.NONE)):
            pl.assemble(y, pl.mul(w, 2.0), [T_TILE, 0])''')
# ... and in today's.
NEW = kernel(tile=4, blocks="1", body='''with pl.at(level=pl.Level.CORE_GROUP):
            w = pl.load(x, [0, 0], [2 * T_TILE, D], valid_shape=[T_TILE, D])
            pl.assemble(y, pl.mul(w, 2.0), [0, 0])
        with pl.at(level=pl.Level.CORE_GROUP, optimizations=[pl.auto_chunk]):
            w = pl.load(x, [T_TILE, 0], [T_TILE, D], valid_shape=[T_TILE, D])
            pl.assemble(y, pl.mul(w, 2.0), [T_TILE, 0])''')


def test_june_forms_compute_what_todays_forms_do(repo, capsys):
    a = commit(repo, {FILE: OLD})
    b = commit(repo, {FILE: NEW})
    assert check(repo, FILE, a, b) == 0
    out = capsys.readouterr().out
    assert "scale_test: EQUIVALENT" in out and "CANNOT JUDGE" not in out


def test_an_old_form_valid_shapes_hole_is_caught(repo, capsys):
    # valid_shapes= narrows the load as valid_shape= does: a row too few leaves y's row 3 unwritten.
    a = commit(repo, {FILE: NEW})
    b = commit(repo, {FILE: OLD.replace("valid_shapes=[T_TILE, D])\n            pl.assemble(y, pl.mul(w, 2.0), [0, 0])",
                                        "valid_shapes=[T_TILE - 1, D])\n            pl.assemble(y, pl.mul(w, 2.0), [0, 0])")})
    assert check(repo, FILE, a, b) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "unwritten" in out


def test_host_level_roles_bool_scalars_and_tuples_load(tmp_path):
    from equiv.source import load_kernel
    from equiv.tile.context import RunContext, running
    from equiv.options import Options

    (tmp_path / "k.py").write_text('''
import pypto.language as pl


@pl.function(level=pl.Level.HOST, role=pl.Role.Orchestrator)
def host(flag: pl.Scalar[pl.BOOL], n: pl.Scalar[pl.INT32]) -> pl.Tuple[pl.Scalar[pl.INT32], pl.Scalar[pl.INT32]]:
    return (n if flag else -n), int(pl.Role.SubWorker == "SubWorker")
''')
    fn = load_kernel(str(tmp_path / "k.py"), "host")
    with running(RunContext(Options(seed=1))):
        assert fn(True, 3) == (3, 1) and fn(False, 3) == (-3, 1)


def test_both_load_keywords_at_once_is_an_error():
    import torch

    from equiv import tile as pl
    from equiv.tile.errors import KernelError
    from equiv.tile.context import RunContext, running
    from equiv.tile.memory import Tensor
    from equiv.options import Options

    with running(RunContext(Options(seed=1))):
        x = Tensor.from_torch("x", torch.zeros(4, 4))
        with pytest.raises(KernelError, match="valid_shapes"):
            pl.load(x, [0, 0], [4, 4], valid_shape=[2, 4], valid_shapes=[2, 4])


# ----------------------------------------------------------------------------------------
# equiv coverage --since
# ----------------------------------------------------------------------------------------
def _dated_commit(r, files: dict, date: str) -> None:
    for path, text in files.items():
        (r / path).parent.mkdir(parents=True, exist_ok=True)
        (r / path).write_text(text)
        subprocess.run(["git", "-C", str(r), "add", path], check=True)
    env = dict(os.environ, GIT_COMMITTER_DATE=f"{date}T12:00:00", GIT_AUTHOR_DATE=f"{date}T12:00:00")
    subprocess.run(["git", "-C", str(r), "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", date],
                   check=True, env=env)


def _history_repo(tmp_path, old_body: str):
    r = tmp_path / "lib"
    r.mkdir()
    subprocess.run(["git", "-C", str(r), "init", "-q"], check=True)
    _dated_commit(r, {"models/a.py": "import pypto.language as pl\nx = pl.exp\n"}, "2026-05-20")
    _dated_commit(r, {"models/a.py": f"import pypto.language as pl\n{old_body}\n"}, "2026-06-02")
    _dated_commit(r, {"models/a.py": "import pypto.language as pl\nx = pl.load(t, [0], [4], valid_shape=[2])\n"},
                  "2026-06-03")
    _dated_commit(r, {"models/b.py": "import pypto.language as pl\ny = pl.add\n"}, "2026-06-12")
    return r


def test_coverage_since_prints_each_revision_and_the_union(tmp_path, capsys):
    r = _history_repo(tmp_path, "x = pl.load(t, [0], [4], valid_shapes=[2])\nwith pl.incore():\n    pass")
    assert main(["coverage", "--repo", str(r), "--since", "2026-06-01", "models"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "3 first-parent revisions (2026-06-02 .. 2026-06-12)"  # 05-20 is before
    assert [line.split()[0] for line in out[1:4]] == ["2026-06-02", "2026-06-03", "2026-06-12"]
    assert "pl.load(valid_shapes=)" in "\n".join(out)  # the June form is in the union
    assert out[-1].startswith("covered ") and out[-1].split()[1] == out[-1].split()[3]  # K of K


def test_coverage_since_names_a_missing_form_in_its_revision_and_fails(tmp_path, capsys):
    r = _history_repo(tmp_path, "x = pl.frobnicate(t)")
    assert main(["coverage", "--repo", str(r), "--since", "2026-06-01", "models"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("2026-06-02") and "covered 0 of 1 names" in lines[1]
    assert lines[2].strip() == "missing: pl.frobnicate"
    assert lines[-1].startswith("covered 3 of 4 names")
    assert main(["coverage", "--repo", str(r), "--since", "2026-06-01", "--json", "models"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [rev["missing"] for rev in data["revisions"]] == [["pl.frobnicate"], [], []]
    assert [n["name"] for n in data["union"]["names"] if not n["covered"]] == ["pl.frobnicate"]
    # One revision per week (the last of each): 06-02's file is at none of them.
    assert main(["coverage", "--repo", str(r), "--since", "2026-06-01", "--weekly", "models"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "2 first-parent revisions (2026-06-03 .. 2026-06-12)"


def test_coverage_since_usage_errors(tmp_path, capsys):
    r = _history_repo(tmp_path, "x = pl.exp(t)")
    assert main(["coverage", "--repo", str(r), "--since", "June", "models"]) == 2
    assert "not a date" in capsys.readouterr().err
    assert main(["coverage", "--repo", str(r), "--weekly", "models"]) == 2
    assert main(["coverage", "--repo", str(r), "--since", "2027-01-01", "models"]) == 2


def test_a_transposed_load_holds_the_windows_transpose():
    import torch

    from equiv import tile as pl
    from equiv.tile.context import RunContext, running
    from equiv.tile.memory import Tensor
    from equiv.options import Options

    with running(RunContext(Options(seed=1))):
        x = Tensor.from_torch("x", torch.arange(24.0).reshape(4, 6))
        t = pl.tile.load(x, [1, 2], [2, 4], valid_shapes=[2, 3], transpose=True)
        assert list(t.shape) == [4, 2] and list(t.valid) == [3, 2]
        assert t.data[:3, :].tolist() == x.data[1:3, 2:5].T.tolist()


# June 2026: ops on tensors inside a `pl.at` scope gave tensors, and files loaded windows of the
# result (DeepSeek-V4 hc_pre.py's `pl.load(post_pad, ..., valid_shapes=...)`).
LOAD_OF_A_RESULT = kernel(tile=4, blocks="1", body='''with pl.at(level=pl.Level.CORE_GROUP):
            doubled = pl.mul(x[0:T, 0:D], 2.0)
        for h in pl.range(2):
            w = pl.load(doubled, [h * T_TILE, 0], [T_TILE, D], valid_shapes=[ROWS, D])
            pl.store(w, [h * T_TILE, 0], y)''')


def test_a_load_of_a_tensor_level_result_is_a_window_of_it(repo, capsys):
    a = commit(repo, {FILE: NEW})
    b = commit(repo, {FILE: LOAD_OF_A_RESULT.replace("ROWS", "T_TILE")})
    assert check(repo, FILE, a, b) == 0
    out = capsys.readouterr().out
    assert "scale_test: EQUIVALENT" in out and "CANNOT JUDGE" not in out


def test_a_short_load_of_a_tensor_level_result_leaves_rows_unwritten(repo, capsys):
    a = commit(repo, {FILE: NEW})
    b = commit(repo, {FILE: LOAD_OF_A_RESULT.replace("ROWS", "T_TILE - 1")})
    assert check(repo, FILE, a, b) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "unwritten" in out


def test_a_window_of_a_tensor_level_result_reads_only_its_valid_part(repo, capsys):
    # hc_pre.py's comb_sinkhorn (June 2026): 8-wide windows at column offsets 0, 4, 8, 12 of a
    # 16-wide value, each valid 4 wide; the last window's padding lies past the value's end,
    # but the load reads only its valid part.
    windows = kernel(tile=4, blocks="1", body='''with pl.at(level=pl.Level.CORE_GROUP):
            doubled = pl.mul(x[0:T, 0:D], 2.0)
        for h in pl.range(2):
            for c in pl.range(D // 4):
                w = pl.load(doubled, [h * T_TILE, c * 4], [T_TILE, 8], valid_shapes=[T_TILE, 4])
                pl.store(w, [h * T_TILE, c * 4], y)''')
    a = commit(repo, {FILE: NEW})
    b = commit(repo, {FILE: windows})
    assert check(repo, FILE, a, b) == 0
    out = capsys.readouterr().out
    assert "scale_test: EQUIVALENT" in out and "oob" not in out and "CANNOT JUDGE" not in out
