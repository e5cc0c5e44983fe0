"""The memory a pypto-lib model file's own ``__main__`` block needs to build its inputs, apart
from everything equiv does after: the file is loaded as a check loads it, its block runs once
with the first call's inputs made (as a same-revision check's discovery does), and nothing
else. Each file runs in a fresh process; the peak is that process's high-water mark
(``VmHWM``), and the inputs are the bytes the block hands to ``run_jit``. A check of the file
cannot need less memory than this peak while it runs the block as written.

    .venv/bin/python scripts/builder_peak.py --repo R --rev REV models/deepseek_v4_pro/moe.py ...
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _child(repo: str, rev: str, path: str) -> dict:
    import torch

    from equiv.pairfree import discovery
    from equiv.pairfree.pair import Revisions, first_case_seed
    from equiv.source.ref import SourceRef

    t0 = time.perf_counter()
    ref = SourceRef(path, "", rev, repo)
    revisions = Revisions(ref, ref)
    module = revisions.module("pre")
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    calls, _, error = discovery.run_main(module, ref.read(), [], seed=first_case_seed())
    values = [v for c in calls for v in (c.materialized or {}).values() if isinstance(v, torch.Tensor)]
    largest = max((sum(v.nbytes for v in (c.materialized or {}).values() if isinstance(v, torch.Tensor))
                   for c in calls), default=0)
    return {"path": path, "seconds": time.perf_counter() - t0, "loaded_gib": loaded,
            "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "calls": len(calls), "largest_call_inputs_gib": largest / 2**30,
            "tensors": len(values), "error": None if error is None else f"{type(error).__name__}: {error}"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--repo", required=True)
    ap.add_argument("--rev", required=True)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.repo, args.rev, args.paths[0])), flush=True)
        return 0
    print("| file | rev | `__main__` block s | peak GiB (block) | inputs of its largest run_jit call GiB |")
    print("| --- | --- | ---: | ---: | ---: |")
    for path in args.paths:
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "--repo", args.repo,
                              "--rev", args.rev, path], capture_output=True, text=True)
        line = next((x for x in reversed(out.stdout.splitlines()) if x.startswith("{")), None)
        if out.returncode != 0 or line is None:
            tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"| {path} | {args.rev} | error: exit {out.returncode}: {tail} | | |", flush=True)
            continue
        r = json.loads(line)
        note = f" ({r['error']})" if r["error"] else ""
        print(f"| {path}{note} | {args.rev} | {r['seconds']:.0f} | {r['peak_gib']:.1f} | "
              f"{r['largest_call_inputs_gib']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
