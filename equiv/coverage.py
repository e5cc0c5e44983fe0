"""Census of the PyPTO DSL a repository's kernel files use, against what the emulator covers.

The kernel files are parsed with `ast` (never matched with regular expressions), so a
comment or a string that mentions ``pl.foo`` is not a use, and an alias is followed
whatever it is called: the name bound to ``pypto.language`` (``import pypto.language as
pl``) and the one bound to ``pypto.language.distributed`` (``import
pypto.language.distributed as pld``, ``from pypto.language import distributed``). Uses are
reported under the canonical prefixes ``pl.`` and ``pld.``.

Three kinds of entries are counted:

* **names**: the longest attribute chain rooted at one of those names (``pl.tile.add``,
  ``pl.FP32``, ``pld.system.notify``), or a name imported from them;
* **keyword forms**: for each call of a DSL name, each keyword it passes
  (``pl.create_tensor(init_value=)``);
* **statement forms**: a DSL call used as a context manager, ``with pl.at(...)`` or
  ``with pl.spmd(...) as NAME``.

Imports of other pypto modules (``pypto.runtime``, ``pypto.ir.distributed_compiled_program``)
are listed apart: they are the compiler and runtime harness, not DSL, so they do not count
in the totals or the exit code; "provided" says source mode has a stand-in for the module.

Whether the emulator covers an entry is read from the emulator itself: its table of DSL
names (`equiv.tile.covers`, built from `equiv.tile.table.NAMES`; the distributed table
`equiv.tile.distributed.shims.NAMES`), the signature of the implementing function for keyword
forms, and the implementing object's context-manager protocol for ``with`` forms.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import textwrap
import typing
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from equiv.not_pypto import NotPypto, not_pypto
from equiv.tile.namespace import MISSING, Namespace, lookup
from equiv import git
from equiv.errors import CoverageError

LANGUAGE = "pypto.language"
DISTRIBUTED = "pypto.language.distributed"
PREFIX = {LANGUAGE: "pl", DISTRIBUTED: "pld"}


# ----------------------------------------------------------------------------------------
# Reading the kernel files
# ----------------------------------------------------------------------------------------


def kernel_files(repo: str, rev: str | None, paths: Sequence[str]) -> dict[str, str]:
    """``{repo-relative path: text}`` of the ``.py`` files under `paths` at `rev` (or on disk)."""
    if not os.path.isdir(repo):
        raise CoverageError(f"--repo {repo}: no such directory")
    paths = [p.rstrip("/") or "." for p in paths]
    files: dict[str, str] = {}
    if rev is None:
        for path in paths:
            full = os.path.join(repo, path)
            if os.path.isfile(full):
                found = [full] if full.endswith(".py") else []
            elif os.path.isdir(full):
                found = [os.path.join(d, f) for d, _, names in os.walk(full) for f in names if f.endswith(".py")]
            else:
                raise CoverageError(f"{path}: no such file or directory in {repo}")
            if not found:
                raise CoverageError(f"{path}: no Python files under it in {repo}")
            for name in sorted(found):
                with open(name, encoding="utf-8", errors="replace") as fh:
                    files[os.path.relpath(name, repo)] = fh.read()
        return files
    try:
        commit = git.output(repo, "rev-parse", "--verify", f"{rev}^{{commit}}", error=CoverageError).strip()
    except CoverageError:
        raise CoverageError(f"--rev {rev}: not a revision of {repo}") from None
    for path in paths:
        listed = [p for p in git.output(repo, "ls-tree", "-r", "--name-only", commit, "--", path,
                                        error=CoverageError).splitlines()
                  if p.endswith(".py")]
        if not listed:
            raise CoverageError(f"{path}: no Python files under it at {rev} in {repo}")
        for name in listed:
            files.setdefault(name, "")
    texts = git.read_objects(repo, [f"{commit}:{n}" for n in sorted(files)], error=CoverageError)
    return {name: texts[f"{commit}:{name}"] for name in sorted(files)}


# ----------------------------------------------------------------------------------------
# Finding the uses
# ----------------------------------------------------------------------------------------
@dataclass
class Census:
    """Uses per entry (``pl.tile.add``, ``pl.create_tensor(init_value=)``, ...) and the files."""

    uses: Counter = field(default_factory=Counter)
    files: dict[str, set[str]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)  # entry -> name | keyword | form
    scanned: int = 0
    unparsable: list[str] = field(default_factory=list)

    def add(self, entry: str, kind: str, path: str) -> None:
        self.uses[entry] += 1
        self.files.setdefault(entry, set()).add(path)
        self.kinds[entry] = kind


def _module_of(stmt_module: str) -> str | None:
    """The DSL root a module name denotes (``pypto.language`` / ``...distributed``), if any."""
    return stmt_module if stmt_module in PREFIX else None


class _Visitor(ast.NodeVisitor):
    def __init__(self, census: Census, path: str):
        self.census, self.path = census, path
        # local name -> dotted DSL prefix it stands for ("pl", "pld", "pl.Tensor", ...);
        # the name "pypto" (bare `import pypto.language`) maps to "pypto".
        self.bound: dict[str, str] = {}
        self.read: set[int] = set()  # imports already bound by the first pass

    # -- what names stand for (read in a first pass over every import of the file) ----
    def bind_import(self, node: ast.Import) -> None:
        for alias in node.names:
            root = _module_of(alias.name)
            if alias.asname and root:
                self.bound[alias.asname] = PREFIX[root]
            elif alias.name == "pypto" or alias.name.startswith("pypto."):
                if not alias.asname:
                    self.bound["pypto"] = "pypto"
                if not root and alias.name not in ("pypto",):
                    self.census.add(f"import {alias.name}", "import", self.path)

    def bind_import_from(self, node: ast.ImportFrom) -> None:
        if node.level or not node.module or not (node.module == "pypto" or node.module.startswith("pypto.")):
            return
        for alias in node.names:
            local = alias.asname or alias.name
            full = f"{node.module}.{alias.name}"
            if _module_of(full):
                self.bound[local] = PREFIX[full]
            elif _module_of(node.module):
                self.bound[local] = f"{PREFIX[node.module]}.{alias.name}"
                self.census.add(f"{PREFIX[node.module]}.{alias.name}", "name", self.path)
            else:
                self.census.add(f"import {full if node.module == 'pypto' else node.module}", "import", self.path)

    def visit_Import(self, node: ast.Import) -> None:
        if id(node) not in self.read:  # an import inside a function binds from there on
            self.bind_import(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if id(node) not in self.read:
            self.bind_import_from(node)

    # -- uses -------------------------------------------------------------------------
    def _chain(self, node: ast.AST) -> str | None:
        """``pl.tile.add`` for an attribute chain / name rooted at a DSL binding, else None."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name) or node.id not in self.bound:
            return None
        root = self.bound[node.id]
        parts.reverse()
        if root == "pypto":  # bare `import pypto.language[.distributed]`
            dotted = ".".join(["pypto", *parts])
            for module in (DISTRIBUTED, LANGUAGE):
                if dotted == module or dotted.startswith(module + "."):
                    rest = dotted[len(module) + 1:]
                    return f"{PREFIX[module]}.{rest}" if rest else None
            return None
        if not parts:
            return root if "." in root else None  # `from pypto.language import Tensor`; bare `pl`
        return ".".join([root, *parts])

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = self._chain(node)
        if chain is not None:
            self.census.add(chain, "name", self.path)
            return  # the inner links of the chain are not uses of their own
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        root = self.bound.get(node.id)
        if root and "." in root and isinstance(node.ctx, ast.Load):
            self.census.add(root, "name", self.path)

    def visit_Call(self, node: ast.Call) -> None:
        chain = self._chain(node.func)
        if chain is not None:
            for kw in node.keywords:
                if kw.arg is not None:
                    self.census.add(f"{chain}({kw.arg}=)", "keyword", self.path)
        self.generic_visit(node)

    def visit_With(self, node: ast.With) -> None:
        for item in node.items:
            expr = item.context_expr
            chain = self._chain(expr.func) if isinstance(expr, ast.Call) else self._chain(expr)
            if chain is not None:
                form = f"with {chain}(...) as NAME" if item.optional_vars is not None else f"with {chain}(...)"
                self.census.add(form, "form", self.path)
        self.generic_visit(node)

    visit_AsyncWith = visit_With  # type: ignore[assignment]


def scan(files: dict[str, str]) -> Census:
    """The census of DSL uses over `files` (``{path: text}``)."""
    census = Census()
    for path, text in files.items():
        census.scanned += 1
        try:
            tree = ast.parse(text, filename=path)
        except SyntaxError:
            census.unparsable.append(path)
            continue
        visitor = _Visitor(census, path)
        # Module-level imports first (also under `if`/`try`), so a function defined above a
        # late import still resolves; imports inside functions bind during the walk.
        pending = list(tree.body)
        while pending:
            node = pending.pop()
            if isinstance(node, ast.Import):
                visitor.bind_import(node)
            elif isinstance(node, ast.ImportFrom):
                visitor.bind_import_from(node)
            else:
                if isinstance(node, (ast.If, ast.Try)):
                    pending += node.body + node.orelse + getattr(node, "finalbody", [])
                    pending += [s for h in getattr(node, "handlers", []) for s in h.body]
                continue
            visitor.read.add(id(node))
        visitor.visit(tree)
    return census


# ----------------------------------------------------------------------------------------
# What the emulator covers
# ----------------------------------------------------------------------------------------
def _lookup(dotted: str) -> Any:
    """The emulator object implementing ``pl.x.y`` / ``pld.x.y``, or `MISSING`."""
    prefix, _, rest = dotted.partition(".")
    if prefix == "pl":
        import equiv.tile as tile

        if not tile.covers(rest):
            return MISSING
        root: Any = {k: getattr(tile, k) for k in tile.__all__}
    elif prefix == "pld":
        try:
            from equiv.tile.distributed import shims
        except ImportError:
            return MISSING
        root = shims.namespace()
    else:
        return MISSING
    return lookup(root, rest)


def _callable_of(obj: Any) -> Any:
    if isinstance(obj, Namespace):
        return object.__getattribute__(obj, "_call")
    return obj


def accepts_keyword(obj: Any, keyword: str) -> bool:
    """True when `obj` takes `keyword`: as an explicit parameter, or through ``**kwargs``
    whose use the implementation documents by naming the keyword in its docstring."""
    fn = _callable_of(obj)
    if fn is None or not callable(fn):
        return False
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    params = sig.parameters
    p = params.get(keyword)
    if p is not None and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
        return True
    if any(q.kind is q.VAR_KEYWORD for q in params.values()):
        doc = inspect.getdoc(fn.__init__ if isinstance(fn, type) else fn) or ""
        if isinstance(fn, type):
            doc += "\n" + (inspect.getdoc(fn) or "")
        return re.search(rf"(?<![\w.]){re.escape(keyword)}(?!\w)", doc) is not None
    return False


def is_context_manager(obj: Any) -> bool:
    """True when calling `obj` gives something usable in a ``with`` statement: a class with
    ``__enter__``, a `contextlib.contextmanager` function, or a function whose return
    annotation is such a class."""
    fn = _callable_of(obj)
    if fn is None:
        return False
    if isinstance(fn, type):
        return hasattr(fn, "__enter__")
    layer = fn  # through the wrappers around it (the table's batch-aware ones, functools.wraps)
    while getattr(layer, "__wrapped__", None) is not None:
        if "contextlib" in getattr(getattr(layer, "__code__", None), "co_filename", ""):
            return True
        layer = layer.__wrapped__
    target = getattr(fn, "__call__", None) if not inspect.isroutine(fn) else fn
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - unresolvable annotations: fall back to the raw one
        hints = getattr(target, "__annotations__", {}) or {}
    ret = hints.get("return")
    ret = typing.get_origin(ret) or ret
    return isinstance(ret, type) and hasattr(ret, "__enter__") and hasattr(ret, "__exit__")


_WITH = re.compile(r"^with (?P<name>[\w.]+)\(\.\.\.\)( as NAME)?$")
_KEYWORD = re.compile(r"^(?P<name>[\w.]+)\((?P<kw>\w+)=\)$")


def covers(entry: str) -> bool:
    """Whether the emulator covers one census entry."""
    if entry.startswith("import "):
        from equiv.source import run_harness

        module = entry[len("import "):]
        return module in (LANGUAGE, DISTRIBUTED) or module in run_harness.IMPORTABLE
    m = _WITH.match(entry)
    if m:
        obj = _lookup(m["name"])
        return obj is not MISSING and is_context_manager(obj)
    m = _KEYWORD.match(entry)
    if m:
        obj = _lookup(m["name"])
        return obj is not MISSING and accepts_keyword(obj, m["kw"])
    return _lookup(entry) is not MISSING


# ----------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------
@dataclass
class Row:
    entry: str
    kind: str
    uses: int
    files: int
    covered: bool
    paths: list[str] = field(default_factory=list)  # the files, kept for entries set apart
    not_pypto: NotPypto | None = None  # pypto did not define it where it is used

    def to_dict(self) -> dict:
        out = {"name": self.entry, "kind": self.kind, "uses": self.uses, "files": self.files,
               "covered": self.covered}
        if self.not_pypto is not None:
            out.update(self.not_pypto.to_dict(), paths=self.paths)
        return out


@dataclass
class Report:
    """The DSL entries (`rows`, what the totals and the exit code count) and, apart, the
    other pypto modules the files import (`imports`: the compiler and runtime harness, not
    DSL; "covered" there means source mode provides a stand-in)."""

    rows: list[Row]
    scanned: int
    unparsable: list[str]
    imports: list[Row] = field(default_factory=list)
    # Entries pypto did not define at the revisions that use them (`equiv.not_pypto`): the
    # files cannot run on the device either; listed apart, not in the totals.
    not_pypto: list[Row] = field(default_factory=list)
    used_at: dict[str, str] = field(default_factory=dict)  # entry -> the revisions using it (--since)

    @property
    def covered_names(self) -> int:
        return sum(r.covered for r in self.rows)

    @property
    def covered_uses(self) -> int:
        return sum(r.uses for r in self.rows if r.covered)

    @property
    def total_uses(self) -> int:
        return sum(r.uses for r in self.rows)

    @property
    def complete(self) -> bool:
        return all(r.covered for r in self.rows)

    def last_line(self) -> str:
        return (f"covered {self.covered_names} of {len(self.rows)} names "
                f"({self.covered_uses} of {self.total_uses} uses)")

    def to_dict(self) -> dict:
        return {"files": self.scanned, "unparsable": self.unparsable,
                "covered_names": self.covered_names, "total_names": len(self.rows),
                "covered_uses": self.covered_uses, "total_uses": self.total_uses,
                "names": [r.to_dict() for r in self.rows], "imports": [r.to_dict() for r in self.imports],
                "not_pypto": [dict(r.to_dict(), revisions=self.used_at.get(r.entry)) for r in self.not_pypto]}

    def render(self, missing_only: bool = False, width: int = 80) -> str:
        rows = [r for r in self.rows if not (missing_only and r.covered)]
        lines = [f"{self.scanned} kernel files scanned" +
                 (f", {len(self.unparsable)} not parsable: {', '.join(self.unparsable[:3])}"
                  f"{' …' if len(self.unparsable) > 3 else ''}" if self.unparsable else ""),
                 f"{'uses':>6} {'files':>5}  {'status':<8}  name"]
        room = width - 24
        for r in rows:
            name = r.entry if len(r.entry) <= room else r.entry[:room - 1] + "…"
            lines.append(f"{r.uses:>6} {r.files:>5}  {'covered' if r.covered else 'MISSING':<8}  {name}")
        if self.not_pypto:
            lines.append("not pypto where used (the files cannot run on the device either; not counted):")
            for r in self.not_pypto:
                lines.append(f"{r.uses:>6} {r.files:>5}  {'no pypto':<8}  {r.entry}")
                assert r.not_pypto is not None
                detail = (f"pypto {r.not_pypto.checked_from}..{r.not_pypto.checked_to} had {r.not_pypto.pypto_had}; "
                          f"in {', '.join(r.paths)}"
                          + (f"; at {self.used_at[r.entry]}" if r.entry in self.used_at else ""))
                lines += textwrap.wrap(detail, width, initial_indent=" " * 16, subsequent_indent=" " * 16,
                                       break_on_hyphens=False, break_long_words=False)
        imports = [r for r in self.imports if not (missing_only and r.covered)]
        if imports:
            lines.append("other pypto modules imported (harness, not DSL; not counted):")
            for r in imports:
                name = r.entry if len(r.entry) <= room else r.entry[:room - 1] + "…"
                lines.append(f"{r.uses:>6} {r.files:>5}  {'provided' if r.covered else 'absent':<8}  {name}")
        lines.append(self.last_line())
        # Rows are cut to `width`; the detail lines of entries set apart are wrapped instead
        # (a file name is never cut).
        return "\n".join(line if line.startswith(" " * 16) else line[:width] for line in lines)


def report(census: Census, dates: Callable[[str], list[str] | None] = lambda entry: None) -> Report:
    """The census against the emulator. `dates(entry)`: the dates of the file revisions that
    use `entry` (None: undated, the working tree), which decide whether an entry pypto did not
    define is set apart (`equiv.not_pypto`)."""
    rows = []
    for entry, n in census.uses.items():
        row = Row(entry, census.kinds[entry], n, len(census.files[entry]), covers(entry))
        if not row.covered and row.kind != "import":
            row.not_pypto = not_pypto(entry, dates(entry))
            if row.not_pypto is not None:
                row.paths = sorted(census.files[entry])
        rows.append(row)
    rows.sort(key=lambda r: (-r.uses, r.entry))
    return Report([r for r in rows if r.kind != "import" and r.not_pypto is None], census.scanned,
                  sorted(census.unparsable), [r for r in rows if r.kind == "import"],
                  [r for r in rows if r.not_pypto is not None])


def commit_date(repo: str, rev: str) -> str:
    """The committer date (YYYY-MM-DD) of `rev`."""
    return git.output(repo, "log", "-1", "--format=%cs", rev, error=CoverageError).strip()


def coverage(repo: str, rev: str | None = None, paths: Iterable[str] = ("models",)) -> Report:
    """``equiv coverage``: the census of `paths` in `repo` (at `rev`) against the emulator."""
    census = scan(kernel_files(repo, rev, list(paths) or ["models"]))
    date = commit_date(repo, rev) if rev is not None else None
    return report(census, lambda entry: [date] if date else None)
