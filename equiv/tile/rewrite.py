"""Load-time rewrites of kernel files, for DSL forms whose meaning Python's own execution
does not give (see `equiv.tile.blocks`):

* ``with pl.spmd(n, ...) [as tid]: BODY`` — BODY is the program of each of the `n`
  blocks. It becomes ``for tid in pl.spmd(n, ...).blocks(): BODY`` (``tid`` is the
  dispatch's task id, bound after the statement as the ``as`` form promises). When BODY
  calls ``pl.system.syncall`` the blocks must meet at barriers, so BODY becomes a nested
  function run once per block by ``SpmdDispatch.run_barriered`` (names the enclosing
  function binds elsewhere are shared with it through ``nonlocal``; at module level,
  ``global``).
* ``pl.spmd_submit(self.kernel, ...)`` inside a plain ``@pl.jit`` function (no ``self``
  parameter): pypto materialises the module's kernel functions as methods of one program,
  so ``self.kernel`` names the module-level ``kernel``.

Line numbers are kept, so findings still name the kernel's own lines. A ``return``,
``break`` or ``continue`` that would leave a ``with pl.spmd`` body is rejected: it has no
per-block meaning.
"""

from __future__ import annotations

import ast
import copy

from equiv.memory import KernelError

_PREFIX = "_equiv_spmd_"


class RewriteError(KernelError):
    """A kernel construct the rewrite cannot give its DSL meaning."""


def _is_call_of(node: ast.AST, name: str) -> bool:
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    return (isinstance(f, ast.Attribute) and f.attr == name) or (isinstance(f, ast.Name) and f.id == name)


def _walk_shallow(nodes: list[ast.stmt]):
    """Nodes of `nodes` without descending into nested function or class definitions."""
    stack = list(nodes)
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                continue
            stack.append(child)


def _escapes(body: list[ast.stmt]) -> ast.stmt | None:
    """A return / break / continue in `body` that would leave it (not inside a nested loop)."""
    stack: list[tuple[ast.AST, bool]] = [(s, False) for s in body]
    while stack:
        node, in_loop = stack.pop()
        if isinstance(node, ast.Return):
            return node
        if isinstance(node, (ast.Break, ast.Continue)) and not in_loop:
            return node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        loop = isinstance(node, (ast.For, ast.AsyncFor, ast.While))
        for field, value in ast.iter_fields(node):
            children = value if isinstance(value, list) else [value]
            for child in children:
                if isinstance(child, ast.AST):
                    # A loop's else-clause is outside the loop for break/continue.
                    stack.append((child, in_loop or (loop and field == "body")))
    return None


def _bound_names(nodes: list[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for node in _walk_shallow(nodes):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    a = fn.args
    names = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs}
    names.update(x.arg for x in (a.vararg, a.kwarg) if x is not None)
    return names


class _SpmdRewriter(ast.NodeTransformer):
    def __init__(self, filename: str):
        self.filename = filename
        self.functions: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
        self.changed = False

    def visit_FunctionDef(self, node):  # noqa: N802 - ast visitor
        self.functions.append(node)
        try:
            self.generic_visit(node)
        finally:
            self.functions.pop()
        return node

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815

    def visit_Call(self, node: ast.Call):  # noqa: N802
        self.generic_visit(node)
        if _is_call_of(node, "spmd_submit") and node.args:
            first = node.args[0]
            in_method = bool(self.functions) and "self" in _params(self.functions[-1])
            if (isinstance(first, ast.Attribute) and isinstance(first.value, ast.Name)
                    and first.value.id == "self" and not in_method):
                node.args[0] = ast.copy_location(ast.Name(first.attr, ast.Load()), first)
                self.changed = True
        return node

    def visit_With(self, node: ast.With):  # noqa: N802
        self.generic_visit(node)
        if not any(_is_call_of(item.context_expr, "spmd") for item in node.items):
            return node
        if len(node.items) != 1:
            raise RewriteError("`with pl.spmd(...)` combined with other context managers in one "
                               "with-statement is not covered", f"{self.filename}:{node.lineno}")
        bad = _escapes(node.body)
        if bad is not None:
            raise RewriteError(f"`{type(bad).__name__.lower()}` inside a `with pl.spmd(...)` body leaves "
                               f"the per-block program; it has no meaning per block",
                               f"{self.filename}:{bad.lineno}")
        self.changed = True
        item = node.items[0]
        target = item.optional_vars
        if target is None:
            target = ast.Name(f"{_PREFIX}tid_{node.lineno}", ast.Store())
        barriered = any(_is_call_of(n, "syncall") for n in _walk_shallow(node.body))
        if not barriered:
            loop = ast.For(
                target=target,
                iter=ast.Call(ast.Attribute(item.context_expr, "blocks", ast.Load()), [], []),
                body=node.body, orelse=[], type_comment=None)
            return ast.fix_missing_locations(ast.copy_location(loop, node))
        return self._barriered(node, item.context_expr, target)

    def _barriered(self, node: ast.With, dispatch: ast.expr, target: ast.expr) -> list[ast.stmt]:
        name = f"{_PREFIX}body_{node.lineno}"
        inner = _bound_names(node.body)
        decls: list[ast.stmt] = []
        if self.functions:
            fn = self.functions[-1]
            outside = _params(fn) | _bound_names([s for s in fn.body if s is not node])
            shared = sorted(inner & outside)
            if shared:
                decls.append(ast.Nonlocal(shared))
        elif inner:
            decls.append(ast.Global(sorted(inner)))
        body_fn = ast.FunctionDef(name=name, args=ast.arguments([], [], None, [], [], None, []),
                                  body=decls + node.body, decorator_list=[], returns=None,
                                  type_comment=None)
        if "type_params" in ast.FunctionDef._fields:  # Python 3.12+
            body_fn.type_params = []
        run = ast.Assign(targets=[copy.deepcopy(target)],
                         value=ast.Call(ast.Attribute(dispatch, "run_barriered", ast.Load()),
                                        [ast.Name(name, ast.Load())], []))
        out = [ast.copy_location(body_fn, node), ast.copy_location(run, node)]
        for stmt in out:
            ast.fix_missing_locations(stmt)
        return out


def rewrite_module(tree: ast.Module, filename: str = "<kernel>") -> bool:
    """Rewrite `tree` in place; True when anything changed."""
    rewriter = _SpmdRewriter(filename)
    rewriter.visit(tree)
    return rewriter.changed


def compile_kernel_source(source: str, filename: str, flags: int = 0):
    """Code of a kernel module with the rewrites applied (compiled from the text when none apply)."""
    if "spmd" not in source:
        return compile(source, filename, "exec", flags=flags, dont_inherit=True)
    tree = ast.parse(source, filename)
    if not rewrite_module(tree, filename):
        return compile(source, filename, "exec", flags=flags, dont_inherit=True)
    return compile(tree, filename, "exec", flags=flags, dont_inherit=True)
