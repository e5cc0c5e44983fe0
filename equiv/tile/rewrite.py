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

* ``for i in pl.spmd(n): BODY`` and ``for i in pl.parallel(...): BODY`` become
  ``for i in attempts(<loop>): with guard(): BODY`` (`equiv.tile.batch`), so the blocks can
  run as one batched computation with a one-by-one fallback. Only loops whose body cannot
  carry state from one block to the next through Python names are rewritten: no ``break``
  or ``return`` leaves the body, no name the body binds is used elsewhere in the function,
  and the body calls no mutating method (``append``, ``update``, ...) of an outside name.
  Other loops run one block at a time, as before.

Line numbers are kept, so findings still name the kernel's own lines. A ``return``,
``break`` or ``continue`` that would leave a ``with pl.spmd`` body is rejected: it has no
per-block meaning.
"""

from __future__ import annotations

import ast
import copy
import inspect
import textwrap
import threading
import types
import weakref
from collections import OrderedDict
from typing import Callable, NamedTuple

from equiv.tile.errors import KernelError

_PREFIX = "_equiv_spmd_"
_BATCH_MODULE = "equiv.tile.batch.stages"
_PARALLEL_LOOPS = ("spmd", "parallel")
_MUTATORS = frozenset({"append", "extend", "insert", "pop", "remove", "clear", "update", "setdefault",
                       "add", "discard", "popitem", "sort", "reverse"})


class RewriteError(KernelError):
    """A kernel construct the rewrite cannot give its DSL meaning."""


def _is_call_of(node: ast.AST, name: str) -> bool:
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    return (isinstance(f, ast.Attribute) and f.attr == name) or (isinstance(f, ast.Name) and f.id == name)


_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def _walk_shallow(nodes: list[ast.stmt]):
    """Nodes of `nodes` without descending into nested function or class definitions, those
    among `nodes` themselves included (a rewritten barriered body is one): their names are
    their own scope's."""
    roots = {id(n) for n in nodes}  # `node in nodes` compares by identity, one root at a time
    stack = list(nodes)
    while stack:
        node = stack.pop()
        yield node
        if id(node) in roots and isinstance(node, _DEFINITIONS):
            continue
        stack.extend(child for child in ast.iter_child_nodes(node) if not isinstance(child, _DEFINITIONS))


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


def _own_bound(node: ast.AST) -> tuple[str, ...]:
    """The names `node` itself binds (not its children)."""
    if isinstance(node, ast.Name):
        return (node.id,) if isinstance(node.ctx, (ast.Store, ast.Del)) else ()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return (node.name,)
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return tuple((a.asname or a.name).split(".")[0] for a in node.names)
    return ()


_LOOPS = (ast.For, ast.AsyncFor, ast.While)
_SUSPENDS = (ast.Yield, ast.YieldFrom, ast.Await)
_DECLARES = (ast.Global, ast.Nonlocal, ast.Import, ast.ImportFrom)
_STORES = (ast.Store, ast.Del)


class _Facts(NamedTuple):
    """What a statement holds in its own scope (nested definitions not entered)."""
    bound: frozenset[str]        # names bound: Store/Del names, imports
    suspends: bool               # a yield, yield from or await
    returns: bool                # a return
    breaks: bool                 # a break not inside a loop of the statement
    declares: bool               # a global, nonlocal or import statement
    receivers: frozenset[str]    # names whose mutating method (`_MUTATORS`) is called
    uses: tuple                  # (name node, is_load) in evaluation order (see `_Names.uses`)


class _Names:
    """What `_independent_blocks` asks of a list of statements (the names they bind, their name
    uses in evaluation order, whether control leaves them, what they mutate), kept per
    statement: a loop asks it of its own body and of its whole function, so without the memo
    every loop walks its function again (quadratic in a file's size). An entry depends on its
    statement's subtree only; whoever changes a subtree calls `forget` with the changed node
    and all its ancestors. Entries hold their statements, so an id is never reused while its
    entry lives."""

    def __init__(self) -> None:
        self._facts: dict[int, tuple[ast.stmt, _Facts]] = {}

    def forget(self, nodes) -> None:
        for node in nodes:
            self._facts.pop(id(node), None)

    def _each(self, nodes: list[ast.stmt]):
        return (self._of(n) for n in nodes if not isinstance(n, _DEFINITIONS))

    def bound(self, nodes: list[ast.stmt]) -> set[str]:
        """The names `nodes` bind in their own scope, as a walk of `_walk_shallow` finds them:
        Store/Del names, imports, and the name of a definition among `nodes` themselves (a
        definition deeper down is not entered, and its name not counted)."""
        names: set[str] = set()
        for node in nodes:
            if isinstance(node, _DEFINITIONS):
                names.update(_own_bound(node))
        for f in self._each(nodes):
            names |= f.bound
        return names

    def uses(self, nodes: list[ast.stmt]) -> list[tuple[ast.Name, bool]]:
        """(name node, is_load) of `nodes` in evaluation order: an assignment's value before
        its targets, a loop's iterable before its target; nested definitions are not entered."""
        out: list[tuple[ast.Name, bool]] = []
        for f in self._each(nodes):
            out.extend(f.uses)
        return out

    def leaves(self, body: list[ast.stmt]) -> bool:
        """A return, a break of the loop whose body `body` is, or a yield / await in `body`
        (``continue`` is fine)."""
        return any(f.suspends or f.returns or f.breaks for f in self._each(body))

    def mutates(self, body: list[ast.stmt], held: set[str]) -> bool:
        """A global, nonlocal or import statement in `body`, or a call of a mutating method of
        a name in `held`."""
        return any(f.declares or not f.receivers.isdisjoint(held) for f in self._each(body))

    def _of(self, stmt: ast.stmt) -> _Facts:
        hit = self._facts.get(id(stmt))
        if hit is not None and hit[0] is stmt:
            return hit[1]
        bound = set(_own_bound(stmt))
        receivers: set[str] = set()
        uses: list = []
        returns, breaks = isinstance(stmt, ast.Return), isinstance(stmt, ast.Break)
        suspends, declares = False, isinstance(stmt, _DECLARES)
        loop = isinstance(stmt, _LOOPS)
        # (field, child, whether its names are uses), in evaluation order: an assignment's
        # value before its targets, a loop's iterable before its target.
        if isinstance(stmt, ast.Assign):
            parts = [("value", stmt.value, True), *(("targets", t, True) for t in stmt.targets)]
        elif isinstance(stmt, ast.AugAssign):
            if isinstance(stmt.target, ast.Name):
                uses.append((stmt.target, True))  # read before it is written
            parts = [("value", stmt.value, True), ("target", stmt.target, True)]
        elif isinstance(stmt, ast.AnnAssign):
            # The annotation is no use, and without a value the target is not either; both
            # still count for what is bound, called or awaited.
            with_value = stmt.value is not None
            parts = [("value", stmt.value, True)] if with_value else []
            parts += [("target", stmt.target, with_value), ("annotation", stmt.annotation, False)]
        elif isinstance(stmt, (ast.For, ast.AsyncFor)):
            parts = [("iter", stmt.iter, True), ("target", stmt.target, True),
                     *(("body", b, True) for b in stmt.body), *(("orelse", b, True) for b in stmt.orelse)]
        else:
            parts = [(field, c, True) for field, value in ast.iter_fields(stmt)
                     for c in (value if isinstance(value, list) else (value,)) if isinstance(c, ast.AST)]
        for field, part, counted in parts:
            in_body = loop and field == "body"  # a break there ends this loop, not the body
            stack = [part]
            while stack:
                node = stack.pop()
                if isinstance(node, _DEFINITIONS):
                    continue
                if isinstance(node, ast.stmt):
                    f = self._of(node)
                    bound |= f.bound
                    receivers |= f.receivers
                    if counted:
                        uses.extend(f.uses)
                    suspends, returns, declares = suspends or f.suspends, returns or f.returns, declares or f.declares
                    breaks = breaks or (f.breaks and not in_body)
                    continue
                if isinstance(node, ast.Name):
                    store = isinstance(node.ctx, _STORES)
                    if store:
                        bound.add(node.id)
                    if counted:
                        uses.append((node, not store))
                    continue
                if isinstance(node, _SUSPENDS):
                    suspends = True
                elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in _MUTATORS and isinstance(node.func.value, ast.Name)):
                    receivers.add(node.func.value.id)
                stack.extend(reversed(list(ast.iter_child_nodes(node))))  # children in order
        out = _Facts(frozenset(bound), suspends, returns, breaks, declares, frozenset(receivers), tuple(uses))
        self._facts[id(stmt)] = (stmt, out)
        return out


_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _scope(nodes: list[ast.stmt], skip: Callable[[ast.AST], bool] | None = None
           ) -> tuple[set[str], set[str], set[str]]:
    """(names bound, names declared ``global``, names declared ``nonlocal``) by the statements
    `nodes` in their own scope, as Python's symbol table sees it: a nested function, class or
    lambda binds only its name (its decorators, defaults and bases run here); a comprehension's
    targets are its own, but a walrus inside one binds here; ``except ... as``, imports and
    ``match`` captures bind. `skip`: nodes left out, at any depth."""
    bound: set[str] = set()
    declared: dict[type, set[str]] = {ast.Global: set(), ast.Nonlocal: set()}
    stack: list[tuple[ast.AST, bool]] = [(n, False) for n in nodes]
    while stack:
        node, in_comp = stack.pop()
        if skip is not None and skip(node):
            continue
        children: list[ast.AST] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
            children = list(node.decorator_list)
            if isinstance(node, ast.ClassDef):
                children += node.bases + [k.value for k in node.keywords]
            else:
                children += [d for d in node.args.defaults + node.args.kw_defaults if d is not None]
        elif isinstance(node, ast.Lambda):
            children = [d for d in node.args.defaults + node.args.kw_defaults if d is not None]
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            declared[type(node)].update(node.names)
        elif isinstance(node, ast.NamedExpr):
            bound.add(node.target.id)  # type: ignore[attr-defined]
            children = [node.value]
        elif isinstance(node, ast.Name):
            if isinstance(node.ctx, (ast.Store, ast.Del)) and not in_comp:
                bound.add(node.id)
        else:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                bound.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")
            elif isinstance(node, ast.ExceptHandler) and node.name:
                bound.add(node.name)
            elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
                bound.add(node.name)
            elif isinstance(node, ast.MatchMapping) and node.rest:
                bound.add(node.rest)
            in_comp = in_comp or isinstance(node, _COMPREHENSIONS)
            children = list(ast.iter_child_nodes(node))
        stack.extend((c, in_comp) for c in children)
    return bound, declared[ast.Global], declared[ast.Nonlocal]


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    a = fn.args
    names = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs}
    names.update(x.arg for x in (a.vararg, a.kwarg) if x is not None)
    return names


def _batch_attr(name: str) -> ast.expr:
    """``__import__("equiv.tile.batch", fromlist=[name]).<name>``: needs no name in the kernel's
    globals, so a rewritten function runs in its own module unchanged."""
    mod = ast.Call(ast.Name("__import__", ast.Load()),
                   [ast.Constant(_BATCH_MODULE)],
                   [ast.keyword("fromlist", ast.List([ast.Constant(name)], ast.Load()))])
    return ast.Attribute(mod, name, ast.Load())


def _guarded(body: list[ast.stmt]) -> ast.With:
    """``with guard(): BODY`` (equiv.tile.batch), at the body's first line."""
    guarded = ast.With(items=[ast.withitem(ast.Call(_batch_attr("guard"), [], []), None)], body=body,
                       type_comment=None)
    return ast.copy_location(guarded, body[0])


def _independent_blocks(fn: ast.FunctionDef | ast.AsyncFunctionDef, loop: ast.For, names: _Names,
                        shared: ast.expr | None = None) -> bool:
    """Whether running `loop`'s body once for all blocks equals running it per block, as far
    as Python names go (memory effects are the batch machinery's business): the body reads
    no name it binds before binding it (nothing carried from the previous block), the code
    after the loop reads no name the body binds before binding it again (nothing of one
    block leaks out), and the body mutates no outside object through a method call.
    `shared`: a loop target that is the same for every block (a ``with`` form's task id)."""
    if not isinstance(loop.target, ast.Name) or loop.orelse or names.leaves(loop.body):
        return False
    bound = names.bound(loop.body) | {loop.target.id}
    # Objects the function holds (its locals and parameters, not modules such as ``pl``).
    held = (names.bound(fn.body) | _params(fn)) - bound
    if names.mutates(loop.body, held):
        return False
    seen_in_body = {loop.target.id}
    for name, load in names.uses(loop.body):
        if name.id in bound and name.id not in seen_in_body:
            if load:
                return False
            seen_in_body.add(name.id)
    end = (loop.end_lineno or loop.lineno, loop.end_col_offset or 0)
    seen_after: set[str] = set()
    if isinstance(shared, ast.Name):
        seen_after.add(shared.id)
    for name, load in names.uses(fn.body):
        if (name.lineno, name.col_offset) <= end or name.id not in bound or name.id in seen_after:
            continue
        if load:
            return False
        seen_after.add(name.id)
    return True


def _barriered_body(node: ast.AST) -> bool:
    """A ``with pl.spmd(...)`` statement whose body calls pl.system.syncall."""
    return (isinstance(node, ast.With) and any(_is_call_of(i.context_expr, "spmd") for i in node.items)
            and any(_is_call_of(n, "syncall") for n in _walk_shallow(node.body)))


class _SpmdRewriter(ast.NodeTransformer):
    def __init__(self, filename: str):
        self.filename = filename
        self.functions: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
        self.scopes: list[ast.AST] = []  # the enclosing functions and classes, innermost last
        self.changed = False
        self.names = _Names()
        self.path: list[ast.AST] = []  # the node being visited and its ancestors, innermost last
        self.replaced: list[bool] = []  # per node of `path`: a child's visit returned another node

    def visit(self, node):
        self.path.append(node)
        self.replaced.append(False)
        try:
            out = super().visit(node)
        finally:
            self.path.pop()
            self.replaced.pop()
        if out is not node and self.replaced:
            self.replaced[-1] = True
        return out

    def generic_visit(self, node):
        super().generic_visit(node)
        if self.replaced and self.replaced[-1]:
            # generic_visit put the replacement (a `with pl.spmd` statement's loop) in place:
            # this subtree and its ancestors' changed, their `names` entries go.
            self.names.forget(self.path)
            self.replaced[-1] = False
        return node

    def visit_FunctionDef(self, node):  # noqa: N802 - ast visitor
        self.functions.append(node)
        self.scopes.append(node)
        try:
            self.generic_visit(node)
        finally:
            self.functions.pop()
            self.scopes.pop()
        return node

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815

    def visit_ClassDef(self, node):  # noqa: N802
        self.scopes.append(node)
        try:
            self.generic_visit(node)
        finally:
            self.scopes.pop()
        return node

    def visit_For(self, node: ast.For):  # noqa: N802
        self.generic_visit(node)
        if not any(_is_call_of(node.iter, name) for name in _PARALLEL_LOOPS) or not self.functions:
            return node
        if not _independent_blocks(self.functions[-1], node, self.names):
            return node
        self.changed = True
        self._batchable(node)
        self.names.forget(self.path)
        return node

    @staticmethod
    def _batchable(node: ast.For) -> ast.For:
        """``for T in attempts(ITER): with guard(): BODY`` (equiv.tile.batch)."""
        node.iter = ast.Call(_batch_attr("attempts"), [node.iter], [])
        node.body = [_guarded(node.body)]
        return ast.fix_missing_locations(node)

    def visit_Call(self, node: ast.Call):  # noqa: N802
        self.generic_visit(node)
        if _is_call_of(node, "spmd_submit") and node.args:
            first = node.args[0]
            in_method = bool(self.functions) and "self" in _params(self.functions[-1])
            if (isinstance(first, ast.Attribute) and isinstance(first.value, ast.Name)
                    and first.value.id == "self" and not in_method):
                node.args[0] = ast.copy_location(ast.Name(first.attr, ast.Load()), first)
                self.names.forget(self.path)
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
        if not _barriered_body(node):
            loop = ast.For(
                target=target,
                iter=ast.Call(ast.Attribute(item.context_expr, "blocks", ast.Load()), [], []),
                body=node.body, orelse=[], type_comment=None)
            loop = ast.fix_missing_locations(ast.copy_location(loop, node))
            # The task id is one value for every block, so the code after may read it.
            if self.functions and _independent_blocks(self.functions[-1], loop, self.names, shared=target):
                self._batchable(loop)
            return loop
        return self._barriered(node, item.context_expr, target)

    def _barriered(self, node: ast.With, dispatch: ast.expr, target: ast.expr) -> list[ast.stmt]:
        name = f"{_PREFIX}body_{node.lineno}"
        # A name only the body binds is each block's own (a local of the nested function, so
        # blocks interleaving at a barrier keep theirs). A name the enclosing function also
        # binds elsewhere (outside this body, at any depth) is shared: ``nonlocal``, or
        # ``global`` where the function declares it so or at module level. ``global`` /
        # ``nonlocal`` statements of the body declared the name for the whole enclosing
        # function: they are kept there as well as in the nested function.
        inner, body_globals, body_nonlocals = _scope(node.body)
        inner -= body_globals | body_nonlocals
        decls: list[ast.stmt] = []
        before: list[ast.stmt] = [copy.deepcopy(s) for s in node.body if isinstance(s, (ast.Global, ast.Nonlocal))]
        if self.scopes and isinstance(self.scopes[-1], ast.ClassDef):
            raise RewriteError("a `with pl.spmd(...)` body that calls pl.system.syncall directly in a class "
                               "body is not covered; put it in a function", f"{self.filename}:{node.lineno}")
        if self.functions:
            fn = self.functions[-1]
            # Other barriered bodies (rewritten already or not yet) bind their own names.
            outside, fn_globals, fn_nonlocals = _scope(fn.body, skip=_barriered_body)
            if sorted(inner & fn_globals):
                decls.append(ast.Global(sorted(inner & fn_globals)))
            shared = inner & (outside | fn_nonlocals | _params(fn))
            if shared - fn_globals:
                decls.append(ast.Nonlocal(sorted(shared - fn_globals)))
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
        out = [ast.copy_location(s, node) for s in before + [body_fn, run]]
        for stmt in out:
            ast.fix_missing_locations(stmt)
        return out


_SEQUENTIAL_LOOPS = ("range", "pipeline", "unroll")


def _sequential_loop(node: ast.AST) -> bool:
    """``for T in pl.range(...)`` / ``pl.pipeline`` / ``pl.unroll`` without loop-carried
    ``init_values`` (Python's own ``range`` is not a DSL loop)."""
    return (isinstance(node, ast.For) and isinstance(node.iter, ast.Call)
            and isinstance(node.iter.func, ast.Attribute) and node.iter.func.attr in _SEQUENTIAL_LOOPS
            and not any(k.arg == "init_values" for k in node.iter.keywords))


def _outside_names(fn: ast.FunctionDef | ast.AsyncFunctionDef, loop: ast.For, names: _Names) -> list[str]:
    """The function's own names (locals, parameters) that `loop`'s body reads and does not bind."""
    bound = names.bound(loop.body) | {loop.target.id}  # type: ignore[attr-defined]
    held = (names.bound(fn.body) | _params(fn)) - bound
    read = {n.id for stmt in loop.body for n in ast.walk(stmt)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return sorted(n for n in read & held if not n.startswith(_PREFIX))


class _IterationRewriter(ast.NodeTransformer):
    """A sequential loop whose iterations share no Python names becomes::

        it = iterations(ITER, lambda: (A, ...))
        if it.as_lanes():                      # inside a batched stage
            for W, T in it:
                if W is not None: A, ... = W   # the outside values, widened to the lanes
                with guard(): BODY             # (inner loops rewritten the same way)
            if it.outer is not None: A, ... = it.outer
        else:
            for T in it.loop: BODY             # as written, at no cost

    (`equiv.tile.batch.stages.iterations`)."""

    def __init__(self, loops: dict[int, tuple[list[str], list[ast.stmt]]]):
        self.loops = loops  # id(For node) -> (names to widen, the body as written)

    def visit(self, node):
        # Loops are statements and no expression holds one (a lambda's body is an expression):
        # an expression's subtree has nothing to rewrite.
        return node if isinstance(node, ast.expr) else super().visit(node)

    def visit_For(self, node: ast.For):  # noqa: N802 - ast visitor
        self.generic_visit(node)
        found = self.loops.get(id(node))
        if found is None:
            return node
        names, written = found
        tag = f"{node.lineno}_{node.col_offset}"
        it, w = f"{_PREFIX}it_{tag}", f"{_PREFIX}w_{tag}"
        load = [ast.Name(n, ast.Load()) for n in names]
        outer = ast.Lambda(ast.arguments([], [], None, [], [], None, []), ast.Tuple(load, ast.Load()))
        make = ast.Assign([ast.Name(it, ast.Store())], ast.Call(_batch_attr("iterations"), [node.iter, outer], []))
        plain = ast.For(target=copy.deepcopy(node.target),
                        iter=ast.Attribute(ast.Name(it, ast.Load()), "loop", ast.Load()),
                        body=written, orelse=[], type_comment=None)
        body: list[ast.stmt] = [_guarded(node.body)]
        lanes: list[ast.stmt] = [node]
        if names:
            store = ast.Tuple([ast.Name(n, ast.Store()) for n in names], ast.Store())
            body.insert(0, ast.If(ast.Compare(ast.Name(w, ast.Load()), [ast.IsNot()], [ast.Constant(None)]),
                                  [ast.Assign([store], ast.Name(w, ast.Load()))], []))
            back = ast.Attribute(ast.Name(it, ast.Load()), "outer", ast.Load())
            lanes.append(ast.If(ast.Compare(back, [ast.IsNot()], [ast.Constant(None)]),
                                [ast.Assign([copy.deepcopy(store)], copy.deepcopy(back))], []))
        node.target = ast.Tuple([ast.Name(w, ast.Store()), node.target], ast.Store())
        node.iter = ast.Name(it, ast.Load())
        node.body = body
        choose = ast.If(ast.Call(ast.Attribute(ast.Name(it, ast.Load()), "as_lanes", ast.Load()), [], []),
                        lanes, [plain])
        out = [make, choose]
        for stmt in out:
            ast.copy_location(stmt, node)
            ast.fix_missing_locations(stmt)
        return out


def _iteration_loops(tree: ast.Module) -> dict[int, tuple[list[str], list[ast.stmt]]]:
    """The sequential loops of every function of `tree` that may run as lanes, with the
    outside names their bodies read and a copy of their bodies as written."""
    loops: dict[int, tuple[list[str], list[ast.stmt]]] = {}
    names = _Names()  # nothing changes the tree until every loop is found
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in _walk_shallow(fn.body):
            if _sequential_loop(node) and _independent_blocks(fn, node, names):
                loops[id(node)] = (_outside_names(fn, node, names), copy.deepcopy(node.body))
    return loops


def rewrite_module(tree: ast.Module, filename: str = "<kernel>") -> bool:
    """Rewrite `tree` in place; True when anything changed."""
    rewriter = _SpmdRewriter(filename)
    rewriter.visit(tree)
    if not rewriter.changed:
        return False  # no parallel stage: nothing runs batched, so no loop runs as lanes
    loops = _iteration_loops(tree)
    if loops:
        _IterationRewriter(loops).visit(tree)
    return True


_COMPILED: "OrderedDict[tuple[str, int, str], types.CodeType]" = OrderedDict()
_COMPILED_MAX = 64  # modules: a model file and its siblings at two revisions fit many times over
_COMPILED_LOCK = threading.Lock()


def compile_kernel_source(source: str, filename: str, flags: int = 0) -> types.CodeType:
    """Code of a kernel module with the rewrites applied (compiled from the text when none apply).

    A process loads the same text again (discovery, sizing and the runs each load the file;
    a same-revision check loads it for both sides), so code is kept per (file name, flags,
    whole text): code objects are immutable, and every load executes its own in a namespace
    of its own. A text that changes in any character is compiled anew."""
    key = (filename, flags, source)
    with _COMPILED_LOCK:
        code = _COMPILED.get(key)
        if code is not None:
            _COMPILED.move_to_end(key)
            return code
    code = _compile_kernel_source(source, filename, flags)
    with _COMPILED_LOCK:
        _COMPILED[key] = code
        while len(_COMPILED) > _COMPILED_MAX:
            _COMPILED.popitem(last=False)
    return code


def _compile_kernel_source(source: str, filename: str, flags: int) -> types.CodeType:
    if "spmd" not in source and "parallel" not in source:
        return compile(source, filename, "exec", flags=flags, dont_inherit=True)
    tree = ast.parse(source, filename)
    if not rewrite_module(tree, filename):
        return compile(source, filename, "exec", flags=flags, dont_inherit=True)
    return compile(tree, filename, "exec", flags=flags, dont_inherit=True)


_BATCHED: "weakref.WeakKeyDictionary[Callable, Callable]" = weakref.WeakKeyDictionary()


def batched_kernel(fn: Callable) -> Callable:
    """`fn` (a registered pair's kernel, a plain module-level function) with its parallel loops
    rewritten for batched blocks; `fn` itself where there is nothing to rewrite or its source
    cannot be recompiled faithfully (closures, decorators, no source)."""
    try:
        return _BATCHED[fn]
    except (KeyError, TypeError):
        pass
    out = fn
    if isinstance(fn, types.FunctionType) and not fn.__code__.co_freevars:
        try:
            lines, first = inspect.getsourcelines(fn)
            filename = inspect.getsourcefile(fn) or fn.__code__.co_filename
        except (OSError, TypeError):
            lines = None
        if lines:
            tree = ast.parse(textwrap.dedent("".join(lines)))
            node = tree.body[0] if tree.body else None
            if isinstance(node, ast.FunctionDef) and not node.decorator_list and rewrite_module(tree, filename):
                ast.increment_lineno(tree, first - 1)
                namespace: dict = {}
                exec(compile(tree, filename, "exec", dont_inherit=True), fn.__globals__, namespace)  # noqa: S102
                new = namespace[node.name]
                new.__defaults__, new.__kwdefaults__ = fn.__defaults__, fn.__kwdefaults__
                new.__module__, new.__qualname__, new.__doc__ = fn.__module__, fn.__qualname__, fn.__doc__
                out = new
    try:
        _BATCHED[fn] = out
    except TypeError:
        pass
    return out
