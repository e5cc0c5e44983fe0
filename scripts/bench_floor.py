"""How much of an emulated run is spent inside torch operators, per pair and preset: the
part of the overhead that no reduction of Python per op can remove.

For each row it prints the emulated run's wall time (best of --repeat, mean of both
versions), the time its torch operators take (torch.profiler self CPU time, per run), the
float64 reference's wall time, the overhead (emulated ÷ reference), the *operator floor*
(time in torch operators ÷ reference wall time) and the *case floor*: the operators of one run
of each version together ÷ the reference, the least a check of one case can cost (it runs both
versions at least once, whatever else it shares or leaves out). The profiler adds about a
microsecond per operator, so the floors are slightly high on rows of many small operators.

    .venv/bin/python scripts/bench_floor.py [--presets demo,flash,pro] [--repeat 10] [PAIR ...]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from torch.profiler import ProfilerActivity, profile  # noqa: E402

from equiv import registry
from equiv.bench import _timed  # noqa: E402
from equiv.options import Options  # noqa: E402
from equiv.results import Case  # noqa: E402
from equiv.runner import _one_thread, _run_once, make_inputs  # noqa: E402


def operator_ms(fn: Callable[[], object], repeat: int) -> float:
    """Self CPU time of the torch operators `fn` calls, per call, in ms."""
    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeat):
            fn()
    return sum(e.self_cpu_time_total for e in prof.key_averages()) / repeat / 1e3


def wall_ms(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of `fn` over `repeat` runs after a warm-up run, in ms (as `equiv bench`)."""
    fn()
    return _timed(fn, "cpu", repeat) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pairs", nargs="*", help="pair names (default: every registered pair)")
    ap.add_argument("--presets", default="demo,flash,pro")
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    names = args.pairs or registry.names()
    overheads, floors, case_floors = [], [], []
    print(f"{'pair':18s} {'preset':6s} {'emulated ms':>11s} {'in ops ms':>9s} {'reference ms':>12s} "
          f"{'overhead':>8s} {'op floor':>8s} {'case floor':>10s}")
    with _one_thread():
        for name in names:
            pair = registry.get(name)
            for preset in args.presets.split(","):
                if preset not in pair.shapes.presets:
                    continue
                shape = pair.shapes.preset(preset)[0]
                case = Case(shape, "realistic", 0)
                inputs = make_inputs(pair, case)
                options = Options()

                def side_run(side: str) -> Callable[[], object]:
                    return lambda: _run_once(pair.kernel(side), pair, case, inputs, options, side)

                emulated = sum(wall_ms(side_run(s), args.repeat) for s in ("pre", "retiled")) / 2
                in_ops = sum(operator_ms(side_run(s), args.repeat) for s in ("pre", "retiled")) / 2
                ref_inputs = dict(inputs)
                reference = wall_ms(lambda: pair.reference(ref_inputs, shape), args.repeat)
                overheads.append(emulated / reference)
                floors.append(in_ops / reference)
                case_floors.append(2 * in_ops / reference)
                print(f"{name:18s} {preset:6s} {emulated:11.3f} {in_ops:9.3f} {reference:12.3f} "
                      f"{emulated / reference:7.1f}x {in_ops / reference:7.1f}x {2 * in_ops / reference:9.1f}x",
                      flush=True)

    def geomean(xs: list[float]) -> float:
        return math.exp(sum(math.log(x) for x in xs) / len(xs))

    print(f"geometric mean over {len(overheads)} rows: overhead {geomean(overheads):.1f}x, "
          f"operator floor {geomean(floors):.1f}x, case floor {geomean(case_floors):.1f}x "
          f"(largest {max(case_floors):.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
