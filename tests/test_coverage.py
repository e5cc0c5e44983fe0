"""``equiv coverage``: the census of DSL names, keywords and forms in a git repository's
kernel files, against the emulator's own table."""

import json
import subprocess
import textwrap

import pytest

from equiv import coverage
from equiv.cli import main

# A kernel file in PyPTO syntax. Aliases are deliberately unusual: the census must follow
# the binding, not the spelling `pl` / `pld`.
KERNEL = textwrap.dedent('''
    import pypto.language as L
    from pypto.language import distributed as D
    from pypto.ir.distributed_compiled_program import DistributedConfig
    from pypto.ir.pass_manager import PassManager

    # L.in_a_comment(x) is no use, nor is the string below
    NOTE = "L.in_a_string"


    @L.jit
    def kernel(x: L.Tensor[[4, 8], L.FP32], y: L.Out[L.Tensor[[4, 8], L.FP32]], sig):
        t = L.create_tensor([4, 8], dtype=L.FP32, no_such_keyword=1)
        with L.spmd(4) as tid:
            y[tid:tid + 1, :] = L.exp(x[tid:tid + 1, :])
        for b in L.spmd(4, name_hint="b"):
            y[b:b + 1, :] = L.made_up_op(x[b:b + 1, :])
        D.system.notify(sig, peer=1, offsets=[0, 0], value=1, op=D.NotifyOp.AtomicAdd)
        with L.exp(x) as oops:
            pass
        return y
''')

# Every name, keyword and form here is covered by the emulator.
COVERED = textwrap.dedent('''
    import pypto.language
    import pypto.language.distributed as pld
    from pypto.ir.distributed_compiled_program import DistributedConfig


    @pypto.language.jit
    def kernel(x: pypto.language.Tensor[[4, 8], pypto.language.FP32], sig):
        y = pypto.language.exp(x)
        pld.system.wait(sig, offsets=[0, 0], expected=1, cmp=pld.WaitCmp.Ge)
        with pypto.language.scope():
            with pypto.language.at(level=pypto.language.Level.CORE_GROUP) as task:
                y = pypto.language.exp(y)
        return pypto.language.cast(y, target_type=pypto.language.BF16)
''')


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args],
                   check=True, capture_output=True)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """Revision 1: models/kern.py (with uncovered names) + models/sub/ok.py; revision 2
    (HEAD): kern.py removed. The working tree adds an uncovered file not committed."""
    root = tmp_path_factory.mktemp("lib")
    git(root, "init", "-q")
    (root / "models" / "sub").mkdir(parents=True)
    (root / "models" / "kern.py").write_text(KERNEL)
    (root / "models" / "sub" / "ok.py").write_text(COVERED)
    (root / "models" / "README.md").write_text("pl.not_python(x)\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "one")
    git(root, "rm", "-q", "models/kern.py")
    git(root, "commit", "-q", "-m", "two")
    (root / "models" / "wip.py").write_text("import pypto.language as pl\nz = pl.made_up_op(1)\n")
    return root


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def census(capsys, repo, *extra):
    code, out, _ = run(capsys, "coverage", "--repo", str(repo), "--json", *extra)
    data = json.loads(out)
    return code, data, {n["name"]: n for n in data["names"] + data["imports"]}


def dsl_rows(out):
    """The DSL rows of the text output (between the header and the imports block)."""
    lines = out.rstrip("\n").splitlines()[2:-1]
    end = next((i for i, line in enumerate(lines) if line.startswith("other pypto modules")), len(lines))
    return lines[:end], lines[end + 1:]


def test_names_keywords_and_forms_are_counted_through_any_alias(capsys, repo):
    code, data, names = census(capsys, repo, "--rev", "HEAD~1", "models")
    assert code == 1 and data["files"] == 2
    uses = {k: v["uses"] for k, v in names.items()}
    assert uses["pl.Tensor"] == 3 and uses["pl.FP32"] == 4 and uses["pl.Out"] == 1  # 2 + 1, 3 + 1
    assert uses["pl.spmd"] == 2 and uses["pl.exp"] == 4 and uses["pl.made_up_op"] == 1
    assert uses["with pl.spmd(...) as NAME"] == 1 and uses["with pl.exp(...) as NAME"] == 1
    assert uses["pl.spmd(name_hint=)"] == 1
    assert uses["pl.create_tensor(dtype=)"] == 1 and uses["pl.create_tensor(no_such_keyword=)"] == 1
    assert uses["pld.system.notify"] == 1 and uses["pld.NotifyOp.AtomicAdd"] == 1
    assert {k for k in uses if k.startswith("pld.system.notify(")} == {
        f"pld.system.notify({kw}=)" for kw in ("peer", "offsets", "value", "op")}
    assert uses["import pypto.ir.pass_manager"] == 1 and uses["import pypto.ir.distributed_compiled_program"] == 2
    # From the COVERED file, through bare `import pypto.language`:
    assert uses["pl.cast(target_type=)"] == 1 and uses["pld.WaitCmp.Ge"] == 1
    assert not any("in_a_comment" in k or "in_a_string" in k or "not_python" in k for k in uses)
    assert not any(k in ("pl", "pld", "pl.jit.Tensor") for k in uses)


def test_coverage_comes_from_the_emulators_table_and_signatures(capsys, repo):
    _, data, names = census(capsys, repo, "--rev", "HEAD~1")
    status = {k: v["covered"] for k, v in names.items()}
    assert status["pl.exp"] and status["pl.Tensor"] and status["pl.create_tensor(dtype=)"]
    assert status["pld.system.notify"] and status["pld.system.notify(op=)"] and status["pld.NotifyOp.AtomicAdd"]
    assert status["import pypto.ir.distributed_compiled_program"]
    assert not status["pl.made_up_op"]
    assert not status["pl.create_tensor(no_such_keyword=)"]
    assert not status["with pl.exp(...) as NAME"]       # exp is no context manager
    assert not status["import pypto.ir.pass_manager"]
    # Imports of the compiler / runtime harness are listed apart and not counted.
    assert {n["name"] for n in data["imports"]} == {"import pypto.ir.pass_manager",
                                                    "import pypto.ir.distributed_compiled_program"}
    assert not any(n["name"].startswith("import ") for n in data["names"])
    covered = [n for n in data["names"] if n["covered"]]
    assert data["covered_names"] == len(covered) and data["total_names"] == len(data["names"])
    assert data["covered_uses"] == sum(n["uses"] for n in covered)


def test_text_output_is_sorted_fits_80_columns_and_ends_with_the_totals(capsys, repo):
    code, out, _ = run(capsys, "coverage", "--repo", str(repo), "--rev", "HEAD~1")
    lines = out.rstrip("\n").splitlines()
    assert code == 1 and all(len(line) <= 80 for line in lines)
    rows, imports = dsl_rows(out)
    counts = [int(line.split()[0]) for line in rows]
    assert counts == sorted(counts, reverse=True) and len(counts) > 20
    assert [line.split()[2:] for line in imports] == [
        ["provided", "import", "pypto.ir.distributed_compiled_program"], ["absent", "import", "pypto.ir.pass_manager"]]
    _, data, _ = census(capsys, repo, "--rev", "HEAD~1")
    assert lines[-1] == (f"covered {data['covered_names']} of {data['total_names']} names "
                         f"({data['covered_uses']} of {data['total_uses']} uses)")
    code, out, _ = run(capsys, "coverage", "--repo", str(repo), "--rev", "HEAD~1", "--missing")
    rows, imports = dsl_rows(out)
    assert code == 1 and rows and all("MISSING" in r for r in rows)
    assert len(imports) == 1 and imports[0].endswith("absent    import pypto.ir.pass_manager")
    assert any(r.endswith("pl.made_up_op") for r in rows)


def test_all_covered_exits_0(capsys, repo):
    code, out, _ = run(capsys, "coverage", "--repo", str(repo), "--rev", "HEAD", "models")
    last = out.rstrip().splitlines()[-1]
    _, data, _ = census(capsys, repo, "--rev", "HEAD")
    n, uses = data["total_names"], data["total_uses"]
    assert code == 0 and last == f"covered {n} of {n} names ({uses} of {uses} uses)"
    assert data["files"] == 1 and n == 18 and uses == 19  # with pl.scope / pl.at forms among them


def test_working_tree_is_read_without_rev(capsys, repo):
    code, data, names = census(capsys, repo, "models")
    assert code == 1 and data["files"] == 2  # sub/ok.py and the uncommitted wip.py
    assert names["pl.made_up_op"]["uses"] == 1 and not names["pl.made_up_op"]["covered"]
    code, data, _ = census(capsys, repo, "models/sub")
    assert code == 0 and data["files"] == 1


@pytest.mark.parametrize("argv, message", [
    (["--repo", "/nonexistent/repo"], "no such directory"),
    (["--rev", "no-such-rev"], "not a revision"),
    (["--rev", "HEAD", "nowhere"], "nowhere: no Python files"),
    (["nowhere"], "nowhere: no such file or directory"),
])
def test_usage_errors_exit_2_with_one_line(capsys, repo, argv, message):
    argv = list(argv)
    if "--repo" not in argv:
        argv = ["--repo", str(repo)] + argv
    code, out, err = run(capsys, "coverage", *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


# --- the rules for keywords and with-forms -----------------------------------------------
def test_keyword_is_covered_when_explicit_or_documented_under_kwargs():
    def explicit(x, mode="rint", *, dtype=None):
        pass

    def documented(x, **hints):
        """``deps`` and ``allow_early_resolve`` order tasks on the device; ignored here."""

    def undocumented(x, **hints):
        """Runs the body."""

    assert coverage.accepts_keyword(explicit, "mode") and coverage.accepts_keyword(explicit, "dtype")
    assert not coverage.accepts_keyword(explicit, "other")
    assert coverage.accepts_keyword(documented, "deps") and coverage.accepts_keyword(documented, "allow_early_resolve")
    assert not coverage.accepts_keyword(documented, "early")  # a word, not a fragment
    assert not coverage.accepts_keyword(undocumented, "deps")


def test_with_form_needs_a_context_manager():
    from contextlib import contextmanager

    class Scope:
        def __enter__(self):
            return 0

        def __exit__(self, *exc):
            return False

    @contextmanager
    def managed():
        yield 1

    def annotated() -> Scope:
        return Scope()

    def plain():
        return iter(range(3))

    assert coverage.is_context_manager(Scope) and coverage.is_context_manager(managed)
    assert coverage.is_context_manager(annotated) and not coverage.is_context_manager(plain)
