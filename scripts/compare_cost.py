#!/usr/bin/env python
"""What the comparison of a case costs: an `equiv` command (`check` or `bench`) run with
`compare.compare_output` timed, then a Markdown table of its calls (output, dtype, elements,
milliseconds) and their total. `--tree` measures another checkout's `equiv` (a tree before a
change) with this script.

    python scripts/compare_cost.py [--tree DIR] check --source F --pre-rev R --retiled-rev R --repo P --pair-free
    python scripts/compare_cost.py [--tree DIR] bench --repeat 1 --fuzz-examples 0 qkv.q_head_rope hc_post
"""

from __future__ import annotations

import os
import sys
import time


def main(argv: list[str]) -> int:
    tree = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if argv[:1] == ["--tree"]:
        tree, argv = os.path.abspath(argv[1]), argv[2:]
    sys.path.insert(0, tree)
    from equiv import cli, runner

    calls: list[tuple[str, str, int, float]] = []
    timed_fn = runner.compare_output

    def timed(name, pre, ret, *args, **kwargs):
        t0 = time.perf_counter()
        result = timed_fn(name, pre, ret, *args, **kwargs)
        seconds = time.perf_counter() - t0
        out = pre.outputs.get(name, ret.outputs.get(name))
        calls.append((name, str(out.dtype).replace("torch.", "") if out is not None else "-",
                      out.numel() if out is not None else 0, seconds))
        return result

    runner.compare_output = timed  # the runner calls it by this name
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    print(f"\ncompare_output of {tree}/equiv:\n")
    if len(calls) <= 20:
        print("| output | dtype | elements | ms |\n| --- | --- | ---: | ---: |")
        for name, dtype, n, s in calls:
            print(f"| {name} | {dtype} | {n} | {1000 * s:.1f} |")
    total = sum(c[3] for c in calls)
    print(f"\n{len(calls)} calls, {total:.3f} s in all, {1000 * total / max(len(calls), 1):.2f} ms per call")
    return code or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
