#!/usr/bin/env python
"""What a same-revision pair-free check prints for every model file of a pypto-lib directory.

    .venv/bin/python scripts/pypto_lib_table.py --repo /tmp/pypto-lib --rev 634e77bd \\
        --dir models/deepseek_v4_pro --timeout 120 --jobs 2 --out /tmp/table.md

Each file with a ``__main__`` calling ``run_jit`` is checked against itself at `--rev`
(``equiv check --source FILE --pre-rev REV --retiled-rev REV --pair-free``) at decode shapes:
its ``decode`` mode when it defines modes, else its defaults; the ``realistic`` inputs, seed
0, one case per entry. Each file runs in its own process with a wall-clock limit, so a file
too large for the machine is listed as timed out instead of stopping the table. The table
(Markdown) gives per entry the outcome, what could not be judged (the op or form and where),
the time and the peak resident memory of the file's process (``--files a.py,b.py`` reruns some).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one(repo: str, rev: str, path: str, model: str | None) -> list[dict]:
    """Check `path` against itself; one dict per entry."""
    from equiv.pairfree import run as pf
    from equiv.request import CheckRequest
    from equiv.errors import PairFreeError, ShapeError

    rows = []
    for shapes in ("decode", "nominal"):
        try:
            fo = pf.check_file(pf.FileTarget(path, rev, rev, repo, model=model),
                               CheckRequest(shapes=shapes, recipes=("realistic",), seed=0, shrink_budget=0))
            break
        except (ShapeError, KeyError, ValueError) as exc:
            if shapes == "nominal":
                return [{"entry": "*", "outcome": "error", "why": [f"{type(exc).__name__}: {exc}"], "shapes": shapes}]
        except PairFreeError as exc:
            return [{"entry": "*", "outcome": "error", "why": [str(exc)], "shapes": shapes}]
    for e in fo.entries:
        why = list(e.lines)
        if e.result is not None and e.outcome != "cannot judge":
            counts: dict[str, int] = {}
            for per in e.result.counts.values():
                for v, n in per.items():
                    if n:
                        counts[v] = counts.get(v, 0) + n
            why = [", ".join(f"{v} {n}" for v, n in counts.items())] + why
        rows.append({"entry": e.entry, "outcome": e.outcome, "why": why[:3], "shapes": shapes,
                     "reference": e.reference})
    return rows


def model_files(repo: str, rev: str, directory: str) -> list[str]:
    from equiv import git

    names = git.output(repo, "ls-tree", "--name-only", f"{rev}:{directory}").split()
    out = []
    for n in sorted(names):
        if not n.endswith(".py"):
            continue
        path = f"{directory}/{n}"
        text = git.answer(repo, "show", f"{rev}:{path}") or ""
        if "__main__" in text and "run_jit" in text:
            out.append(path)
    return out


def run_file(args: argparse.Namespace, path: str) -> tuple[str, list[dict], float, str]:
    """(path, rows, wall seconds, peak resident memory of the file's process, or "")."""
    cmd = [sys.executable, os.path.abspath(__file__), "--one", path, "--repo", args.repo, "--rev", args.rev]
    if args.model:
        cmd += ["--model", args.model]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=HERE)
    except subprocess.TimeoutExpired:
        return path, [{"entry": "*", "outcome": f"timed out (> {args.timeout:g} s)", "why": []}], args.timeout, ""
    secs = time.perf_counter() - t0
    last = [line for line in p.stdout.splitlines() if line.startswith("{")]
    if p.returncode != 0 or not last:
        tail = (p.stderr.strip().splitlines() or [f"the process ended without output (exit {p.returncode}; "
                                                   f"killed, e.g. out of memory)"])[-1]
        return path, [{"entry": "*", "outcome": "error", "why": [tail[:600]]}], secs, ""
    got = json.loads(last[-1])
    peak = got.get("peak_rss_gib")
    return path, got["rows"], secs, "" if peak is None else f"{peak:.1f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", required=True)
    ap.add_argument("--rev", required=True)
    ap.add_argument("--dir", default="models/deepseek_v4_pro")
    ap.add_argument("--model", default=None)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per file (default 120)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the Markdown table here too")
    ap.add_argument("--files", default=None, help="comma-separated file names of --dir to run (default: all)")
    ap.add_argument("--one", metavar="PATH", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        import contextlib
        import io

        import resource

        with contextlib.redirect_stdout(io.StringIO()):
            rows = one(args.repo, args.rev, args.one, args.model)
        # ru_maxrss is in KiB on Linux: the process's peak resident memory.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(json.dumps({"rows": rows, "peak_rss_gib": round(peak, 2)}))
        return 0
    files = model_files(args.repo, args.rev, args.dir)
    if args.files:
        wanted = {n if n.endswith(".py") else n + ".py" for n in args.files.split(",")}
        files = [f for f in files if os.path.basename(f) in wanted]
    lines = [f"| file | entry | same-revision pair-free check at {args.rev[:8]} (decode) | time s | peak RSS GiB |",
             "| --- | --- | --- | --- | --- |"]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for path, rows, secs, peak in pool.map(lambda f: run_file(args, f), files):
            for i, r in enumerate(rows):
                what = r["outcome"] + (": " + "; ".join(r["why"]) if r.get("why") else "")
                lines.append(f"| {os.path.basename(path) if i == 0 else ''} | {r['entry']} | {_cell(what)} | "
                             f"{secs:.0f} | {peak} |")
            print(lines[-len(rows)], file=sys.stderr, flush=True)
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
