"""The load-time rewrite's cost cuts keep what it produces (`equiv.tile.rewrite`).

* `_Names` answers, per statement and memoized, what a loop's independence asks of a body and
  of its whole function; it must agree with straightforward walks (the definitions below) on
  every statement list of every kernel file of this repository and on a text made of the
  tricky forms (annotations, walrus, nested definitions, loop else-clauses, handlers, match).
* The memo must follow the rewrite's own changes to the tree (a `with pl.spmd` body replaced
  while its function is being analysed): the rewrite with the memo equals the rewrite that
  recomputes every answer.
* Compiled kernel modules are served again only for the same file name, flags and text.
"""

from __future__ import annotations

import ast
import os
import textwrap

import pytest

from equiv.tile import rewrite

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


# -- straightforward walks: what `_Names` must agree with --------------------------------------
def walk_shallow(nodes):
    stack = list(nodes)
    while stack:
        node = stack.pop()
        yield node
        if any(node is n for n in nodes) and isinstance(node, _DEFS):
            continue
        stack.extend(c for c in ast.iter_child_nodes(node) if not isinstance(c, _DEFS))


def bound_names(nodes):
    names = set()
    for node in walk_shallow(nodes):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def uses(node):
    if isinstance(node, _DEFS):
        return
    if isinstance(node, ast.Name):
        yield node, not isinstance(node.ctx, (ast.Store, ast.Del))
        return
    if isinstance(node, ast.Assign):
        order = [node.value, *node.targets]
    elif isinstance(node, ast.AugAssign):
        if isinstance(node.target, ast.Name):
            yield node.target, True
        order = [node.value, node.target]
    elif isinstance(node, ast.AnnAssign):
        order = [node.value, node.target] if node.value is not None else []
    elif isinstance(node, (ast.For, ast.AsyncFor)):
        order = [node.iter, node.target, *node.body, *node.orelse]
    else:
        order = list(ast.iter_child_nodes(node))
    for child in order:
        if child is not None:
            yield from uses(child)


def leaves_body(body):
    if any(isinstance(n, (ast.Yield, ast.YieldFrom, ast.Await)) for n in walk_shallow(body)):
        return True
    stack = [(s, False) for s in body]
    while stack:
        node, in_loop = stack.pop()
        if isinstance(node, ast.Return) or (isinstance(node, ast.Break) and not in_loop):
            return True
        if isinstance(node, _DEFS):
            continue
        loop = isinstance(node, (ast.For, ast.AsyncFor, ast.While))
        for field, value in ast.iter_fields(node):
            for child in (value if isinstance(value, list) else [value]):
                if isinstance(child, ast.AST):
                    stack.append((child, in_loop or (loop and field == "body")))
    return False


def mutates(body, held):
    for node in walk_shallow(body):
        if isinstance(node, (ast.Global, ast.Nonlocal, ast.Import, ast.ImportFrom)):
            return True
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in rewrite._MUTATORS and isinstance(node.func.value, ast.Name)
                and node.func.value.id in held):
            return True
    return False


TRICKY = '''
import os.path as osp, numpy
from a.b import c as d
from e import *
x: int
y: (w := list) = [q for q in range(3) if (z := q)]
v: v2.append(1)
counter += 1
del gone
(a1, *rest), b1 = pairs
acc = []
def outer(p, *args, k=1, **kw):
    global G
    nonlocal_free = 0
    class Inner:
        attr = 1
        def m(self):
            return attr
    f = lambda t: t.append(1)
    for i in range(3):
        if i:
            break
        acc.append(i)
    else:
        break
    while p:
        try:
            p -= 1
        except ValueError as err:
            break
        finally:
            continue
    else:
        return None
    async def co():
        await thing
        async for u in stream:
            yield u
        async with lock as held:
            held.update(k)
    with open(p) as fh, ctx() as (ca, cb):
        data = fh.read()
    match data:
        case [first, *others]:
            kw.pop(first)
        case {"k": val, **others2}:
            pass
        case Point(x=px) | px if px:
            pass
    if (n := len(args)) > 1:
        args.sort()
    return [m for m in kw.items()]
def quiet(rows):
    for r in rows:
        for c in r:
            if c:
                break
        else:
            continue
'''


def _sources() -> dict[str, str]:
    out = {"<tricky>": TRICKY}
    for top in ("tests", "kernels"):
        for d, _, names in os.walk(os.path.join(ROOT, top)):
            for name in names:
                if name.endswith(".py"):
                    path = os.path.join(d, name)
                    with open(path, encoding="utf-8") as f:
                        out[os.path.relpath(path, ROOT)] = f.read()
    return out


def _bodies(tree: ast.AST):
    """Every statement list of `tree` (function bodies, loop bodies, branches, handlers)."""
    for node in ast.walk(tree):
        for _, value in ast.iter_fields(node):
            if isinstance(value, list) and value and all(isinstance(s, ast.stmt) for s in value):
                yield node, value


def test_names_agree_with_straightforward_walks_on_every_statement_list():
    compared = 0
    for label, text in _sources().items():
        tree = ast.parse(text)
        names = rewrite._Names()
        for owner, body in _bodies(tree):
            where = f"{label}:{getattr(body[0], 'lineno', '?')}"
            assert names.bound(body) == bound_names(body), where
            assert names.uses(body) == list(uses(ast.Module(body=body, type_ignores=[]))), where
            assert names.leaves(body) == leaves_body(body), where
            for held in (bound_names(body), {"acc", "kw", "args", "held", "v2", "t", "p"}, set()):
                assert names.mutates(body, held) == mutates(body, held), where
            compared += 1
    assert compared > 500  # the kernels and fixtures were found


def test_tricky_forms_have_the_answers_python_gives():
    # The agreement above is only worth what the walks are: these are checked by hand.
    tree = ast.parse(TRICKY)
    names = rewrite._Names()
    bound = names.bound(tree.body)
    assert {"osp", "numpy", "d", "*", "x", "y", "v", "w", "q", "z", "counter", "gone", "a1", "rest", "b1",
            "acc", "outer", "quiet"} == bound
    outer = next(s for s in tree.body if isinstance(s, ast.FunctionDef))
    assert names.mutates(tree.body, {"v2"})  # an annotation's call counts
    assert names.mutates(tree.body, set())  # the imports
    loop = next(s for s in outer.body if isinstance(s, ast.For))
    assert names.leaves(loop.body)  # `break` of the loop itself
    assert names.leaves(loop.orelse)  # the else-clause's break leaves the enclosing loop
    wloop = next(s for s in outer.body if isinstance(s, ast.While))
    assert names.leaves(wloop.body)  # the handler's break ends the while
    assert names.leaves(wloop.orelse)  # a return
    quiet = tree.body[-1].body[0]
    assert not names.leaves(quiet.body)  # the inner loop's break is its own; `continue` is fine
    # An annotation without a value: its target is bound but neither read nor written.
    first = [(n.id, load) for n, load in names.uses(tree.body[:7])]
    assert ("x", False) not in first and ("y", False) in first and ("counter", True) in first


BARRIERED_AFTER_ANALYSIS = textwrap.dedent('''
    import pypto.language as pl

    def kernel(x, out):
        for i in pl.parallel(4):        # analysed first: the facts of the whole function are kept
            out[i] = x[i]
        if x is not None:
            with pl.spmd(2) as t:       # becomes a nested function: `acc` is its own from then on
                acc = [t]
                pl.system.syncall()
        for j in pl.parallel(4):        # batched only if `acc` is not one of the function's names
            acc.append(j)
        with pl.spmd(2):
            for r in pl.parallel(2):
                out[r] = x[r]
        return out

    def caller(x):                      # no `self`: `self.kernel` names the module's kernel
        for k in pl.parallel(2):        # analysed before the call below is rewritten
            kernel = k
        pl.spmd_submit(self.kernel, x)  # becomes a read of `kernel`
        return x
''')


def _rewritten(text: str, memo: bool) -> str:
    original = rewrite._Names._of

    def recompute(self, stmt):
        self._facts.clear()  # every answer from the tree as it is now
        return original(self, stmt)

    if not memo:
        rewrite._Names._of = recompute
    try:
        tree = ast.parse(text)
        rewrite.rewrite_module(tree, "k.py")
    finally:
        rewrite._Names._of = original
    return ast.dump(tree, include_attributes=True)


@pytest.mark.parametrize("label", ["<barriered after analysis>", "tests/fixtures/scoping/barriered_scopes.py",
                                   "tests/fixtures/blocks/spmd_kernels.py", "kernels"])
def test_memo_follows_the_rewrites_own_changes(label):
    if label == "<barriered after analysis>":
        texts = [BARRIERED_AFTER_ANALYSIS]
    elif label == "kernels":
        texts = [t for k, t in _sources().items() if k.startswith("kernels")]
    else:
        with open(os.path.join(ROOT, label), encoding="utf-8") as f:
            texts = [f.read()]
    for text in texts:
        assert _rewritten(text, memo=True) == _rewritten(text, memo=False)


def test_every_kept_answer_is_the_tree_as_rewritten():
    # Stronger than equal outcomes: after the pass, each memo entry equals a fresh one (a
    # `self.kernel` argument replaced after its statement was analysed is not served stale).
    texts = [BARRIERED_AFTER_ANALYSIS] + [t for k, t in _sources().items() if "spmd" in t or "parallel" in t]
    checked = 0
    for text in texts:
        tree = ast.parse(text)
        rewriter = rewrite._SpmdRewriter("k.py")
        rewriter.visit(tree)
        for stmt, facts in rewriter.names._facts.values():
            assert rewrite._Names()._of(stmt) == facts, ast.unparse(stmt)
            checked += 1
    assert checked > 100


def test_the_barriered_case_is_decided_by_the_tree_as_rewritten():
    # What the comparison above rests on: the loop after the barriered body is batched only
    # because `acc` left the function's own names when the body became a nested function.
    tree = ast.parse(BARRIERED_AFTER_ANALYSIS)
    rewrite.rewrite_module(tree, "k.py")
    text = ast.unparse(tree)
    assert "for j in __import__('equiv.tile.batch.stages', fromlist=['attempts']).attempts(pl.parallel(4))" in text


# -- compiled modules served again --------------------------------------------------------------
KERNEL = textwrap.dedent('''
    VALUE = 1  # (`pl` is looked up only when `kernel` runs, which these tests do not do)

    def kernel(x, out):
        for i in pl.parallel(4):
            out[i] = x[i] + VALUE
        return out
''')


@pytest.fixture
def rewrites(monkeypatch):
    """How many times the rewrite ran, with an empty cache."""
    monkeypatch.setattr(rewrite, "_COMPILED", type(rewrite._COMPILED)())
    calls = []
    original = rewrite.rewrite_module

    def counted(tree, filename="<kernel>"):
        calls.append(filename)
        return original(tree, filename)

    monkeypatch.setattr(rewrite, "rewrite_module", counted)
    return calls


def _value(code) -> int:
    ns: dict = {}
    exec(code, ns)  # noqa: S102 - the test's own kernel text
    return ns["VALUE"]


def test_the_same_text_is_compiled_once(rewrites):
    first = rewrite.compile_kernel_source(KERNEL, "k.py")
    again = rewrite.compile_kernel_source(KERNEL, "k.py")
    assert again is first and rewrites == ["k.py"]


def test_a_changed_text_is_not_served_from_the_cache(rewrites):
    first = rewrite.compile_kernel_source(KERNEL, "k.py")
    changed = rewrite.compile_kernel_source(KERNEL.replace("VALUE = 1", "VALUE = 2"), "k.py")
    assert changed is not first and _value(first) == 1 and _value(changed) == 2
    assert len(rewrites) == 2


def test_another_file_name_or_flags_is_compiled_anew(rewrites):
    import __future__

    a = rewrite.compile_kernel_source(KERNEL, "a.py")
    b = rewrite.compile_kernel_source(KERNEL, "b.py")
    c = rewrite.compile_kernel_source(KERNEL, "a.py", __future__.annotations.compiler_flag)
    assert a.co_filename == "a.py" and b.co_filename == "b.py"  # findings name the file loaded
    assert len({id(a), id(b), id(c)}) == 3 and len(rewrites) == 3


def test_the_cache_keeps_at_most_its_size(rewrites):
    for n in range(rewrite._COMPILED_MAX + 5):
        rewrite.compile_kernel_source(KERNEL.replace("VALUE = 1", f"VALUE = {n}"), "k.py")
    assert len(rewrite._COMPILED) == rewrite._COMPILED_MAX
    assert _value(rewrite.compile_kernel_source(KERNEL.replace("VALUE = 1", "VALUE = 0"), "k.py")) == 0
    assert len(rewrites) == rewrite._COMPILED_MAX + 6  # the oldest was dropped, and compiled again


def test_a_rejected_text_is_rejected_every_time(rewrites):
    bad = KERNEL.replace("for i in pl.parallel(4):\n        out[i]", "with pl.spmd(4):\n        return out\n        out[0]")
    for _ in range(2):
        with pytest.raises(rewrite.RewriteError, match="return"):
            rewrite.compile_kernel_source(bad, "k.py")
    assert len(rewrites) == 2
