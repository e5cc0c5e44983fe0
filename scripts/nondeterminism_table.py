#!/usr/bin/env python
"""Which entries of a pypto-lib model directory have nondeterministic outputs at decode shapes.

    .venv/bin/python scripts/nondeterminism_table.py --repo /tmp/pypto-lib --rev 634e77bd \\
        --dir models/deepseek_v4_pro --schedules 2 --timeout 900 --max-rss-gib 8 --out /tmp/nd.md

Each model file (a ``__main__`` calling ``run_jit``) that is not a prefill file is checked
against itself at `--rev` (a same-revision pair-free check: ``equiv check --source FILE
--pre-rev REV --retiled-rev REV --pair-free --schedules K``) at its ``decode`` mode, or at its
defaults where it defines no modes; ``realistic`` inputs, seed 0, one case per entry. Every
version runs under K schedules (equiv.schedules); the table lists per entry the outputs whose
bits differ between schedules, with the element count, the spread in ULP and the operations
responsible (the atomic add or race at file:line, the blocks or ranks involved).

Each file runs in its own process with a wall-clock limit and a resident-memory limit (the
process is stopped when it passes `--max-rss-gib`); files whose known peak exceeds the limit
are skipped without a run (`--skip`), and prefill files are listed as not at decode shapes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(HERE, "scripts"))
sys.path.insert(0, HERE)

from equiv.bench_files import proc_kib  # noqa: E402

# Peaks measured in docs/pypto-lib-runs.md (whole-layer and multi-rank model files build their
# full-size weights in their own __main__ block before any kernel runs).
KNOWN_LARGE = {
    "decode_layer.py": "19.0 GiB (docs/pypto-lib-runs.md)",
    "decode_mtp.py": "18.5 GiB (docs/pypto-lib-runs.md)",
    "moe.py": "18.3 GiB (docs/pypto-lib-runs.md)",
    "expert_routed.py": "15.5 GiB (docs/pypto-lib-runs.md)",
    "decode_fwd.py": "the whole decode model of every layer (more than decode_layer.py's 19.0 GiB)",
}


def one(repo: str, rev: str, path: str, schedules: int) -> list[dict]:
    """Check `path` against itself under `schedules` schedules; one dict per entry."""
    from equiv.options import Options
    from equiv.errors import PairFreeError
    from equiv.pairfree import run as pf
    from equiv.request import CheckRequest
    from equiv.errors import ShapeError

    options = Options(schedules=schedules)
    for shapes in ("decode", "nominal"):
        try:
            fo = pf.check_file(pf.FileTarget(path, rev, rev, repo),
                               CheckRequest(shapes=shapes, recipes=("realistic",), seed=0, shrink_budget=0,
                                            options=options))
            break
        except (ShapeError, KeyError, ValueError) as exc:
            if shapes == "nominal":
                return [{"entry": "*", "outcome": "error", "why": f"{type(exc).__name__}: {exc}", "shapes": shapes}]
        except PairFreeError as exc:
            return [{"entry": "*", "outcome": "error", "why": str(exc), "shapes": shapes}]
    rows = []
    for e in fo.entries:
        row = {"entry": e.entry, "outcome": e.outcome, "shapes": shapes, "outputs": [], "cases": 0,
               "why": "; ".join(e.lines[:2]) if e.outcome == "cannot judge" or e.result is None else ""}
        if e.result is not None:
            row["cases"] = len(e.result.results)
            found: dict[str, dict] = {}
            for r in e.result.results:
                for name, o in r.outputs.items():
                    nd = o.nondeterministic.get("pre")
                    if not nd:
                        continue
                    f = found.setdefault(name, {"output": name, "count": 0, "spread": 0, "operations": []})
                    f["count"] = max(f["count"], nd["count"])
                    f["spread"] = max(f["spread"], nd["spread"])
                    f["region"] = nd["text"]
                    f["operations"] = f["operations"] or nd["operations"]
            row["outputs"] = list(found.values())
        rows.append(row)
    return rows


def _rss_gib(pid: int) -> float:
    return proc_kib(pid, "VmRSS") / 2**20


def run_file(args: argparse.Namespace, path: str) -> tuple[list[dict], float, float]:
    """(rows, wall seconds, peak resident GiB seen) for one file in its own process."""
    cmd = [sys.executable, os.path.abspath(__file__), "--one", path, "--repo", args.repo, "--rev", args.rev,
           "--schedules", str(args.schedules)]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE)
    peak, why = 0.0, None
    while p.poll() is None:
        peak = max(peak, _rss_gib(p.pid))
        if peak > args.max_rss_gib:
            why = f"stopped: resident memory passed {args.max_rss_gib:g} GiB"
        elif time.perf_counter() - t0 > args.timeout:
            why = f"timed out (> {args.timeout:g} s)"
        if why:
            p.kill()
            p.wait()
            return [{"entry": "*", "outcome": why, "outputs": []}], time.perf_counter() - t0, peak
        time.sleep(0.5)
    out, err = p.communicate()
    secs = time.perf_counter() - t0
    last = [line for line in out.splitlines() if line.startswith("{")]
    if p.returncode != 0 or not last:
        tail = (err.strip().splitlines() or [f"the process ended without output (exit {p.returncode})"])[-1]
        return [{"entry": "*", "outcome": "error", "why": tail[:400], "outputs": []}], secs, peak
    return json.loads(last[-1])["rows"], secs, peak


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def describe(row: dict) -> tuple[str, str]:
    """(outcome cell, nondeterministic outputs cell)."""
    outcome = row["outcome"] + (f" ({row['shapes']}, {row['cases']} case{'s' if row.get('cases') != 1 else ''})"
                                if row.get("cases") else "")
    if row.get("why"):
        outcome += f": {row['why']}"
    if row["outcome"] in ("equivalent", "both-defect", "pre-defect", "regression") and not row.get("outputs"):
        return outcome, "none"
    cells = []
    for o in row.get("outputs", []):
        ops = "; ".join(o["operations"][:2]) or "no atomic add or race recorded"
        cells.append(f"`{o['output']}`: {o['count']} elements ({o.get('region', '')}), spread ≤ {o['spread']} ULP; "
                     f"{ops}")
    return outcome, " / ".join(cells) or "–"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", required=True)
    ap.add_argument("--rev", required=True)
    ap.add_argument("--dir", default="models/deepseek_v4_pro")
    ap.add_argument("--schedules", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per file (default 900)")
    ap.add_argument("--max-rss-gib", type=float, default=8.0, help="stop a file's process past this (default 8)")
    ap.add_argument("--files", default=None, help="comma-separated file names of --dir to run (default: all)")
    ap.add_argument("--out", default=None, help="write the Markdown table here too")
    ap.add_argument("--one", metavar="PATH", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            rows = one(args.repo, args.rev, args.one, args.schedules)
        print(json.dumps({"rows": rows}))
        return 0
    from pypto_lib_table import model_files

    files = model_files(args.repo, args.rev, args.dir)
    if args.files:
        wanted = {n if n.endswith(".py") else n + ".py" for n in args.files.split(",")}
        files = [f for f in files if os.path.basename(f) in wanted]
    lines = [f"| file | entry | same-revision check at {args.rev[:8]}, {args.schedules} schedules | "
             f"nondeterministic outputs (elements, spread, operations) | time s | peak RSS GiB |",
             "| --- | --- | --- | --- | --- | --- |"]
    for path in files:
        name = os.path.basename(path)
        if name.startswith("prefill_"):
            lines.append(f"| {name} | * | not run: a prefill file (no decode shapes) | – | – | – |")
        elif name in KNOWN_LARGE:
            lines.append(f"| {name} | * | not run: needs more than {args.max_rss_gib:g} GiB — "
                         f"{_cell(KNOWN_LARGE[name])} | – | – | – |")
        else:
            rows, secs, peak = run_file(args, path)
            for i, r in enumerate(rows):
                outcome, nd = describe(r)
                lines.append(f"| {name if i == 0 else ''} | {r['entry']} | {_cell(outcome)} | {_cell(nd)} | "
                             f"{secs:.0f} | {peak:.1f} |")
                if i < len(rows) - 1:
                    print(lines[-1], file=sys.stderr, flush=True)  # a table cut short keeps every row
        print(lines[-1], file=sys.stderr, flush=True)
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
