"""A same-revision pair-free check of one pypto-lib model file, printing each phase with the
elapsed time and the process's current and peak resident memory, then the check's console
report. For sizing what a Pro file needs; `/usr/bin/time -v` around it gives the whole peak.

    .venv/bin/python scripts/pypto_lib_phases.py models/deepseek_v4_pro/moe.py --repo R --rev REV
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from equiv import runner
from equiv.pairfree import discovery
from equiv.pairfree import run as pf
from equiv.errors import ShapeError  # noqa: E402
from equiv.request import CheckRequest  # noqa: E402

T0 = time.time()


def rss() -> str:
    with open("/proc/self/statm") as f:
        current = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return f"rss {current:.1f} GiB, peak {peak:.1f} GiB"


def say(what: str) -> None:
    print(f"{time.time() - T0:7.0f}s  {what}  [{rss()}]", flush=True)


def _traced(fn, before, after):
    def wrapper(*args, **kwargs):
        say(before(*args, **kwargs))
        result = fn(*args, **kwargs)
        say(after(*args, **kwargs))
        return result
    return wrapper


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path")
    ap.add_argument("--repo", required=True)
    ap.add_argument("--rev", required=True)
    args = ap.parse_args()
    discovery.run_main = _traced(
        discovery.run_main,
        lambda m, s, argv, seed=None: "__main__ block starts (" + ("discovery" if seed is None else f"inputs from seed {seed}") + ")",
        lambda *a, **k: "__main__ block done")
    runner._run_once = _traced(
        runner._run_once,
        lambda kernel, pair, case, inputs, options, side, *a, **k: f"kernel run {side} poison={options.poison} starts",
        lambda kernel, pair, case, inputs, options, side, *a, **k: f"kernel run {side} done")
    check = pf.check

    def decode_else_nominal(pair, request):
        try:
            return check(pair, request)
        except ShapeError:  # a file without modes has no decode preset
            say(f"no {request.shapes} shapes: nominal")
            return check(pair, request.replace(shapes="nominal"))
    pf.check = decode_else_nominal
    outcome = pf.check_file(pf.FileTarget(args.path, args.rev, args.rev, args.repo),
                            CheckRequest(shapes="decode", recipes=("realistic",), seed=0, shrink_budget=0, log=say))
    for e in outcome.entries:
        say(f"{e.entry}: {e.outcome} {list(e.lines)[:3]}")
        if e.result is not None:
            print(str(e.result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
