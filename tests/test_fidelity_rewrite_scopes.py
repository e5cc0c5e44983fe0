"""The load-time rewrite keeps every scoping form valid.

A `with pl.spmd` body that calls pl.system.syncall becomes a nested function run once per
block; the names it binds stay the enclosing function's. pypto-lib's qwen3 decode file (a
barriered body inside `with pl.manual_scope()`, binding `aiv_id` in a split_aiv loop) failed
to load with `SyntaxError: no binding for nonlocal 'aiv_id'`. The fixture has that form plus
``global``, ``nonlocal``, closures, comprehensions, walrus, nested functions and classes.
"""

from __future__ import annotations

import ast
import os
import textwrap

import pytest
import torch

from equiv import tile as pl
from equiv.tile.context import RunContext, running
from equiv.tile.memory import Tensor
from equiv.options import Options
from equiv.source import load_kernel
from equiv.tile import rewrite

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "scoping", "barriered_scopes.py")


def test_every_scoping_form_in_a_barriered_body_loads_and_runs():
    fn = load_kernel(FIXTURE, "scoped")
    x = torch.arange(32, dtype=torch.float32).reshape(4, 8)
    module = fn.__globals__
    before = module["PHASES"]
    with running(RunContext(Options(seed=2))) as ctx:
        out = Tensor("out", [4, 8], pl.FP32)
        got, total, tid = fn(x=Tensor.from_torch("x", x), out=out)
    assert got is out and not ctx.findings
    assert out.data.tolist() == (x * 1.0 + 1.0).tolist()  # half(v) = v * 0.5 * 2, plus 1
    assert total == 4 and module["PHASES"] == before + 4  # nonlocal and global reach their scopes


def _compiles(src: str) -> None:
    code = rewrite.compile_kernel_source(textwrap.dedent(src), "k.py")
    assert code is not None


@pytest.mark.parametrize("body", [
    "for aiv_id in pl.split_aiv(2):\n        y = aiv_id",        # bound only in the body
    "ys = [i for i in range(2)]",                                 # comprehension target
    "ys = {i: j for i in range(2) for j in range(2)}",
    "ys = [(w := i) for i in range(2)]",                          # walrus in a comprehension
    "def f(q):\n        return q\n    class C:\n        z = 1",    # nested function and class
    "try:\n        pass\n    except ValueError as e:\n        pass",
    "import math as m",
])
def test_a_barriered_body_nested_in_another_statement_compiles(body):
    inner = "\n".join(" " * 12 + line for line in body.replace("\n    ", "\n").split("\n")
                      ).replace("\n" + " " * 12 + "    ", "\n" + " " * 16)
    _compiles("import pypto.language as pl\n\n"
              "def k():\n"
              "    with pl.manual_scope():\n"
              "        with pl.spmd(2):\n"
              f"{inner}\n"
              "            pl.system.syncall()\n"
              "    return 0\n")


def test_global_and_nonlocal_in_the_body_keep_their_meaning():
    src = """
        import pypto.language as pl
        G = 0

        def outer():
            n = 0
            def k():
                with pl.spmd(2):
                    global G
                    nonlocal n
                    G += 1
                    n += 1
                    pl.system.syncall()
                G += 10          # still the global: the body's declaration covers the function
                return n
            return k()
        """
    tree = ast.parse(textwrap.dedent(src))
    assert rewrite.rewrite_module(tree, "k.py")
    compile(tree, "k.py", "exec")


def test_two_barriered_bodies_binding_one_name_keep_it_per_block(tmp_path):
    # `lane` is bound in both bodies and nowhere else: each block's own in each, no nonlocal
    # without a binding in the function, and no value leaking between interleaved blocks.
    src = """
import pypto.language as pl

@pl.jit
def k(out: pl.Out[pl.Tensor[[2, 4], pl.INT32]]):
    with pl.manual_scope():
        with pl.spmd(4, name_hint="one"):
            lane = pl.get_block_idx()
            pl.system.syncall()
            pl.write(out, [0, lane], lane)
    with pl.spmd(4, name_hint="two"):
        lane = pl.get_block_idx()
        pl.system.syncall()
        pl.write(out, [1, lane], lane * 10)
    return out
"""
    (tmp_path / "k.py").write_text(src)
    fn = load_kernel(str(tmp_path / "k.py"), "k")
    with running(RunContext(Options(seed=4))) as ctx:
        out = Tensor("out", [2, 4], pl.INT32)
        fn(out=out)
    assert out.data.tolist() == [[0, 1, 2, 3], [0, 10, 20, 30]] and not ctx.findings


def test_a_nonlocal_inside_a_batched_loop_body_reaches_the_function(tmp_path):
    # The spmd loop and its pl.range loop are rewritten for batched blocks; a helper defined in
    # the body rebinds the function's `count` through `nonlocal`, a comprehension and a walrus
    # bind in their own scopes.
    (tmp_path / "k.py").write_text('''
import pypto.language as pl


@pl.jit
def k(x: pl.Tensor[[4, 8], pl.FP32], out: pl.Out[pl.Tensor[[4, 8], pl.FP32]]):
    count = 0
    for b in pl.spmd(4, name_hint="rows"):
        def seen():
            nonlocal count
            count += 1
        seen()
        for j in pl.range(2):
            cols = [c for c in range(4)]
            if (n := len(cols)) == 4:
                t = pl.load(x, [b, j * n], [1, n])
                pl.store(pl.mul(t, 2.0), [b, j * n], out)
    return out, count
''')
    fn = load_kernel(str(tmp_path / "k.py"), "k")
    x = torch.arange(32, dtype=torch.float32).reshape(4, 8)
    with running(RunContext(Options(seed=5))) as ctx:
        out = Tensor("out", [4, 8], pl.FP32)
        got, count = fn(x=Tensor.from_torch("x", x), out=out)
    assert out.data.tolist() == (x * 2).tolist() and not ctx.findings
    assert count == 4  # once per block, as the loop runs unrewritten


def test_a_parameter_read_in_a_lane_loop_of_a_barriered_body_stays_the_parameter():
    # DeepSeek-V4 hc_pre.py (July 2026): a pl.range loop inside a syncall-barriered body reads
    # the function's parameter `w`. The loop runs as lanes; re-binding `w` inside the nested
    # body function made it a local there (UnboundLocalError at its first read).
    src = textwrap.dedent("""
        def k(w, out):
            with pl.spmd(2) as tid:
                core = pl.tile.get_block_idx()
                for kb in pl.range(2):
                    acc = pl.mul(pl.load(w, [core * 2, kb * 4], [2, 4]), 2.0)
                    pl.store(acc, [core * 2, kb * 4], out)
                pl.store(acc, [core * 2, 4], out)  # read after the loop: its blocks are not lanes here
                pl.system.syncall()
            return out
    """)
    namespace = {"pl": pl}
    exec(rewrite.compile_kernel_source(src, "k.py"), namespace)
    x = torch.arange(32, dtype=torch.float32).reshape(4, 8)
    with running(RunContext(Options(seed=1))) as ctx:
        out = Tensor("out", [4, 8], pl.FP32)
        namespace["k"](Tensor.from_torch("w", x), out)
    assert not ctx.findings
    assert out.data.tolist() == (x * 2.0).tolist()
