#!/usr/bin/env python
"""Cost of schedules: seconds per case of the split-K toy pair (tests/fixtures/schedules) under
`--schedules 1` and the default 2, for a clean pair (fixed-order sums on both sides) and a
nondeterministic one (atomic adds on both sides). Best of `--repeat` runs per figure.

    PYTHONPATH=$PWD .venv/bin/python scripts/schedules_cost.py --repeat 40
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from equiv.options import Options  # noqa: E402
from equiv.results import Case  # noqa: E402
from equiv.runner import run_case  # noqa: E402
from equiv.shapes import Shape  # noqa: E402
from tests.fixtures.schedules import splitk_pair as sp  # noqa: E402


def best(pair, case: Case, options: Options, repeat: int) -> float:
    run_case(pair, case, options)  # warm
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run_case(pair, case, options)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=40)
    args = ap.parse_args()
    case = Case(Shape(dict(T=4, K=64, N=16)), "realistic", 0)
    print("| pair | 1 schedule ms | 2 schedules ms | ratio |")
    print("| --- | --- | --- | --- |")
    for label, pair in (("fixed order on both sides (clean)", dataclasses.replace(sp.PAIR, retiled=sp.fixed)),
                        ("atomic adds on both sides (nondeterministic)", dataclasses.replace(sp.PAIR, pre=sp.atomic))):
        one, two = (best(pair, case, Options(schedules=k), args.repeat) for k in (1, 2))
        print(f"| {label} | {one * 1000:.1f} | {two * 1000:.1f} | {two / one:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
