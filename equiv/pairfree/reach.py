"""What an entry reaches, read statically: a model file's module-level definitions (as syntax
trees without line numbers, comments and docstrings), the sibling modules and root packages
it imports at a revision, and the names reached from its ``__main__`` block."""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field

from equiv.pairfree.selection import texts_at


# ----------------------------------------------------------------------------------------
# Static: module-level definitions and what they reach
# ----------------------------------------------------------------------------------------
def _strip_docstrings(node: ast.AST) -> ast.AST:
    for n in ast.walk(node):
        body = getattr(n, "body", None)
        if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            n.body = body[1:] or [ast.Pass()]
    return node


def _dump(node: ast.AST) -> str:
    return ast.dump(_strip_docstrings(node), include_attributes=False)


def _is_main(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Compare) \
        and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__" \
        and len(node.test.comparators) == 1 and isinstance(node.test.comparators[0], ast.Constant) \
        and node.test.comparators[0].value == "__main__"


def _bound(stmt: ast.stmt) -> list[str]:
    """Names a module-level statement binds (anywhere in it but nested scopes)."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [stmt.name]
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return [(a.asname or a.name).split(".")[0] for a in stmt.names if a.name != "*"]
    out: list[str] = []
    for n in ast.walk(stmt):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            out.append(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.append(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            out += [(a.asname or a.name).split(".")[0] for a in n.names if a.name != "*"]
    return out


def _loaded(node: ast.AST) -> tuple[set[str], set[tuple[str, str]]]:
    """Names read in `node`, and ``name.attr`` pairs (a module's member)."""
    names, attrs = set(), set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            names.add(n.id)
        elif isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name):
            attrs.add((n.value.id, n.attr))
    return names, attrs


@dataclass
class Module:
    """One parsed file: its module-level statements by the names they bind."""

    path: str
    defs: dict[str, list[int]] = field(default_factory=dict)     # name -> statement indexes
    always: list[int] = field(default_factory=list)              # statements binding nothing (run at load)
    stmts: list[ast.stmt] = field(default_factory=list)
    main: ast.Module | None = None
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # name -> (module, member)


def parse_module(path: str, text: str) -> Module:
    tree = ast.parse(text, path)
    mod = Module(path)
    for stmt in tree.body:
        if _is_main(stmt):
            mod.main = ast.Module(body=stmt.body, type_ignores=[])
            continue
        i = len(mod.stmts)
        mod.stmts.append(stmt)
        names = _bound(stmt)
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
            continue  # the module docstring
        if not names:
            mod.always.append(i)
        for n in names:
            mod.defs.setdefault(n, []).append(i)
        if isinstance(stmt, ast.Import):
            for a in stmt.names:
                mod.imports[(a.asname or a.name).split(".")[0]] = (a.name if a.asname else a.name.split(".")[0], None)
        elif isinstance(stmt, ast.ImportFrom) and stmt.level == 0 and stmt.module:
            for a in stmt.names:
                mod.imports[a.asname or a.name] = (stmt.module, a.name)
        elif isinstance(stmt, ast.ImportFrom) and stmt.level == 1 and not stmt.module:
            for a in stmt.names:
                mod.imports[a.asname or a.name] = (a.name, None)
    return mod


# Texts of files at a commit never change: shared by every file a gate plans (a pull request
# touching a hundred files of one model reads its config and helpers once, not per file).
_COMMIT_TEXTS: dict[tuple[str, str], dict[str, str | None]] = {}


def _is_commit(rev: str | None) -> bool:
    return rev is not None and len(rev) == 40 and all(c in "0123456789abcdef" for c in rev)


class Source:
    """Files of one revision (None: the working tree), parsed on demand; module names
    resolved as the loader resolves them (beside the importing file, then at the root)."""

    def __init__(self, repo: str, rev: str | None):
        self.repo, self.rev = repo, rev
        # A full commit id names immutable texts; a branch name or the working tree may move.
        self._texts: dict[str, str | None] = _COMMIT_TEXTS.setdefault((os.path.abspath(repo), rev), {}) \
            if _is_commit(rev) else {}
        self._mods: dict[str, Module | None] = {}

    def text(self, path: str) -> str | None:
        if path not in self._texts:
            self._texts[path] = texts_at(self.repo, self.rev, [path]).get(path)
        return self._texts[path]

    def module(self, path: str) -> Module | None:
        if path not in self._mods:
            text = self.text(path)
            try:
                self._mods[path] = parse_module(path, text) if text is not None else None
            except SyntaxError:
                self._mods[path] = None
        return self._mods[path]

    def resolve(self, importer: str, dotted: str) -> str | None:
        parts = dotted.split(".")
        for base in dict.fromkeys((os.path.dirname(importer), "")):
            for stem in (os.path.join(*parts) + ".py", os.path.join(*parts, "__init__.py")):
                rel = os.path.normpath(os.path.join(base, stem)) if base else stem
                if self.text(rel) is not None:
                    return rel
        return None


def reach(src: Source, path: str, roots: set[str]) -> dict[str, str]:
    """``path:name`` -> the syntax of every module-level definition reached from `roots`
    (names of the file at `path`), plus ``path:<load>`` for what each reached module runs
    when loaded without binding a name."""
    out: dict[str, str] = {}
    todo = [(path, r) for r in sorted(roots)]
    seen_mods: set[str] = set()
    while todo:
        mpath, name = todo.pop()
        key = f"{mpath}:{name}"
        if key in out:
            continue
        mod = src.module(mpath)
        if mod is None:
            out[key] = "<unreadable>"
            continue
        if mpath not in seen_mods:
            seen_mods.add(mpath)
            load = [mod.stmts[i] for i in mod.always]
            out[f"{mpath}:<load>"] = "\n".join(_dump(s) for s in load)
            for s in load:
                todo += [(mpath, n) for n in _loaded(s)[0] if n in mod.defs]
        if name not in mod.defs:
            continue
        stmts = [mod.stmts[i] for i in mod.defs[name]]
        out[key] = "\n".join(_dump(s) for s in stmts)
        for s in stmts:
            names, attrs = _loaded(s)
            todo += [(mpath, n) for n in names if n in mod.defs]
            if isinstance(s, (ast.Import, ast.ImportFrom)) and name in mod.imports:
                target, member = mod.imports[name]
                tpath = src.resolve(mpath, target)
                if tpath is not None:  # `import m` alone: m's load-time statements (members by attribute)
                    todo.append((tpath, member) if member else (tpath, "<load>"))
        for base, attr in _loaded_attrs(stmts):
            if base in mod.imports and mod.imports[base][1] is None:
                tpath = src.resolve(mpath, mod.imports[base][0])
                if tpath is not None:
                    todo.append((tpath, attr))
    return out


def _loaded_attrs(stmts: list[ast.stmt]) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for s in stmts:
        out |= _loaded(s)[1]
    return out
