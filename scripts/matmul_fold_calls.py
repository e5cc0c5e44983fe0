#!/usr/bin/env python
"""The fp32 matmul fold calls of one run, logged, then replayed with an equiv tree's fold.

    # log every fold call of a same-revision check of one file (shapes, strides, seconds)
    python scripts/matmul_fold_calls.py log calls.json scripts/pypto_lib_table.py --one \\
        models/deepseek/v4/decode_attention_swa.py --repo /tmp/pypto-lib --rev 08f71692
    # time those calls with a tree's fold (one thread, best of 3 per distinct call)
    python scripts/matmul_fold_calls.py replay calls.json TREE

`replay` makes operands of the logged shapes and strides (bf16 values) and gives the total
over the logged calls and the costliest kinds of call. A logged call whose operands differ in
rank with a lane axis on the lower one (the lanes × lanes product of equiv before operands
were aligned per block) is replayed in its aligned form.
"""

from __future__ import annotations

import atexit
import collections
import importlib
import json
import runpy
import sys
import time


def log(out: str, argv: list[str]) -> None:
    import torch

    mm = importlib.import_module("equiv.tile.matmul")
    fold, calls, t0 = mm._mm_fp32_native, [], time.perf_counter()

    def timed(acc, x, y):
        t = time.perf_counter()
        r = fold(acc, x, y)
        calls.append([list(x.shape), list(x.stride()), list(y.shape), list(y.stride()), acc is not None,
                      time.perf_counter() - t, torch.get_num_threads()])
        return r

    mm._mm_fp32_native = timed
    atexit.register(lambda: json.dump({"wall": time.perf_counter() - t0, "calls": calls}, open(out, "w")))
    sys.argv = argv
    runpy.run_path(argv[0], run_name="__main__")


def replay(path: str, tree: str) -> None:
    sys.path.insert(0, tree)
    import torch

    mm = importlib.import_module("equiv.tile.matmul")
    torch.set_num_threads(1)
    calls = json.load(open(path))["calls"]
    count = collections.Counter((tuple(map(tuple, c[:4])), c[4]) for c in calls)
    g = torch.Generator().manual_seed(0)

    def operand(shape, stride):
        base = torch.randn(1 + sum((s - 1) * st for s, st in zip(shape, stride)), generator=g)
        return base.bfloat16().float().as_strided(shape, stride)

    total, rows = 0.0, []
    for ((xs, xst, ys, yst), acc), n in count.most_common():
        if len(xs) != len(ys) and len(xs) > 2:
            xs, xst = [xs[0], 1, *xs[1:]], [xst[0], 0, *xst[1:]]
        x, y = operand(xs, xst), operand(ys, yst)
        out = [*torch.broadcast_shapes(tuple(xs[:-2]), tuple(ys[:-2])), xs[-2], ys[-1]]
        a = torch.randn(out, generator=g) if acc else None
        mm._mm_fp32_native(a, x, y)
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            mm._mm_fp32_native(a, x, y)
            best = min(best, time.perf_counter() - t)
        total += best * n
        rows.append((best * n, n, list(xs), list(ys), acc, best))
    print(f"{mm.__file__}: {len(calls)} calls, {len(count)} kinds, total {total:.1f} s")
    for tot, n, xs, ys, acc, best in sorted(rows, reverse=True)[:8]:
        print(f"  {n:6d} x {xs} @ {ys}{' + acc' if acc else ''}: {best * 1e3:.2f} ms each, {tot:.1f} s")


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "log":
        log(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) == 4 and sys.argv[1] == "replay":
        replay(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
