#!/usr/bin/env python
"""Before/after tables of `equiv bench --json` results, as Markdown.

    equiv bench --repeat 3 --fuzz-examples 0 --json before.json      # on the old tree
    equiv bench --repeat 3 --fuzz-examples 0 --json after.json       # on the new one
    python scripts/bench_table.py before.json after.json
    python scripts/bench_table.py before.json                        # one tree: its columns only

    equiv bench --repo R --rev REV FILE... --json files_before.json  # model files, the same way
    python scripts/bench_table.py files_before.json files_after.json

Per preset row: one run of each version against the reference (overhead ×), and whole cases
(every recipe and option variant, both versions under every poison and schedule variant)
against their float64 reference (per case ×), with the split of a case's time. Per model
file: its outcome, wall seconds and peak resident GiB.
"""

from __future__ import annotations

import json
import math
import sys


def _geo(values: list[float]) -> float:
    values = [max(v, 1e-9) for v in values]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def _ms(seconds: float, n: int) -> str:
    return f"{1000 * seconds / max(n, 1):.1f}"


def single_rows_table(rows: dict) -> str:
    """One tree's rows: per run ×, per case × and the split of a case's time."""
    lines = ["| pair | preset | per run × | cases | per case × | ms per case: inputs / runs / reference / rest |",
             "| --- | --- | ---: | ---: | ---: | --- |"]
    for r in rows["rows"]:
        n = r.get("cases") or 0
        rest = r["case_s"] - r.get("case_inputs_s", 0) - r.get("case_runs_s", 0) - r["case_reference_s"]
        split = " / ".join(_ms(v, n) for v in (r.get("case_inputs_s", 0), r.get("case_runs_s", 0),
                                               r["case_reference_s"], max(rest, 0.0)))
        lines.append(f"| {r['pair']} | {r['preset']} | {r['overhead']:.1f} | {n} | {r['case_overhead']:.0f} | {split} |")
    runs = [r["overhead"] for r in rows["rows"]]
    cases = [r["case_overhead"] for r in rows["rows"] if r.get("case_overhead")]
    lines.append(f"| **geometric mean / largest row** | | **{_geo(runs):.1f}× / {max(runs):.0f}×** | "
                 f"| **{_geo(cases):.0f}× / {max(cases):.0f}×** | |")
    return "\n".join(lines)


def rows_table(before: dict, after: dict) -> str:
    old = {(r["pair"], r["preset"], r["shape"]): r for r in before["rows"]}
    lines = ["| pair | preset | per run × before | per run × after | per case × before | per case × after "
             "| inputs ms per case before | ms per case after: inputs / runs / reference / rest |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    per_run = {"before": [], "after": []}
    per_case = {"before": [], "after": []}
    for r in after["rows"]:
        b = old.get((r["pair"], r["preset"], r["shape"]))
        n = r.get("cases") or 0
        rest = r["case_s"] - r.get("case_inputs_s", 0) - r.get("case_runs_s", 0) - r["case_reference_s"]
        split = " / ".join(_ms(v, n) for v in (r.get("case_inputs_s", 0), r.get("case_runs_s", 0),
                                               r["case_reference_s"], max(rest, 0.0))) if n else "–"
        cells = [r["pair"], r["preset"], f"{b['overhead']:.1f}" if b else "–", f"{r['overhead']:.1f}",
                 f"{b['case_overhead']:.0f}" if b and b.get("case_overhead") else "–",
                 f"{r['case_overhead']:.0f}" if r.get("case_overhead") else "–",
                 _ms(b.get("case_inputs_s", 0), b.get("cases") or 0) if b and b.get("cases") else "–", split]
        lines.append("| " + " | ".join(cells) + " |")
        if b:
            per_run["before"].append(b["overhead"])
            if b.get("case_overhead"):
                per_case["before"].append(b["case_overhead"])
        per_run["after"].append(r["overhead"])
        if r.get("case_overhead"):
            per_case["after"].append(r["case_overhead"])

    def summary(vals: list[float]) -> str:
        return f"**{_geo(vals):.1f}× / {max(vals):.0f}×**" if vals else "–"
    lines.append(f"| **geometric mean / largest row** | | {summary(per_run['before'])} | {summary(per_run['after'])} "
                 f"| {summary(per_case['before'])} | {summary(per_case['after'])} | | |")
    return "\n".join(lines)


def files_table(before: dict, after: dict) -> str:
    old = {r["path"]: r for r in before["files"]}
    lines = ["| file | rev | outcome after | time s before | time s after | peak GiB before | peak GiB after |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for r in after["files"]:
        b = old.get(r["path"], {})
        outcome = r["outcome"] + "".join(f"; {e['entry']}: " + (", ".join(f"{v} {n}" for v, n in e["counts"].items())
                                                                 or e["outcome"]) for e in r["entries"])
        before_time = f"{b['seconds']:.0f}" if b else "–"
        before_peak = f"{b['peak_gib']:.1f}" if b else "–"
        if b and b["outcome"].startswith("stopped"):
            before_time, before_peak = f"{before_time} ({b['outcome']})", f"> {b['peak_gib']:.1f}"
        lines.append(f"| {r['path']} | {r['rev']} | {outcome} | {before_time} | {r['seconds']:.0f} | {before_peak} "
                     f"| {r['peak_gib']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print(__doc__, file=sys.stderr)
        return 2
    if len(argv) == 1:
        one = json.load(open(argv[0]))
        if "files" in one:
            print("| file | rev | outcome | time s | peak GiB |\n| --- | --- | --- | ---: | ---: |")
            for r in one["files"]:
                print(f"| {r['path']} | {r['rev']} | {r['outcome']} | {r['seconds']:.0f} | {r['peak_gib']:.1f} |")
        else:
            print(single_rows_table(one))
        return 0
    before, after = (json.load(open(p)) for p in argv)
    print(files_table(before, after) if "files" in after else rows_table(before, after))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
