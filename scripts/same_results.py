#!/usr/bin/env python
"""Whether two trees gave the same results: results documents (``--json``) compared field by
field with the timings left out, and, with ``--table``, a Markdown row per pair of files.

    python scripts/same_results.py BEFORE.json AFTER.json
    python scripts/same_results.py --table BEFORE_DIR AFTER_DIR [NAME ...]
    python scripts/same_results.py --ignore poison_runs --ignore second_poison_run AUTO.json ALWAYS.json

A field named ``seconds`` (or ending in ``_seconds``) is a timing; everything else (verdicts,
ULP distances and histograms, maps, first differences, hazards and findings, decision
coverage, writer attribution, options) must be equal, except fields named by ``--ignore``
(wherever they occur: the option two runs were made to differ in, and its record). The first
difference is printed with its path in the document. Exit 0 when every pair is identical, 1
otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def _timing(key: str) -> bool:
    return key == "seconds" or key.endswith("_seconds")


def first_difference(a: Any, b: Any, path: str = "$", ignore: frozenset[str] = frozenset()) -> str | None:
    """The path and values of the first difference between `a` and `b` (timings and the keys
    in `ignore` left out), or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        ka = [k for k in a if not _timing(k) and k not in ignore]
        kb = [k for k in b if not _timing(k) and k not in ignore]
        if ka != kb:
            return f"{path}: keys {sorted(set(ka) ^ set(kb)) or 'in another order'}"
        for k in ka:
            d = first_difference(a[k], b[k], f"{path}.{k}", ignore)
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{path}[{i}]", ignore)
            if d:
                return d
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


def summary(doc: dict) -> tuple[int, str, int]:
    """(cases, verdict counts over outputs, max ULP) of a results document."""
    cases, counts, ulp = 0, {}, 0
    for check in doc.get("checks", []):
        for r in check.get("results", []):
            cases += 1
            for name, v in r.get("verdicts", {}).items():
                counts[v] = counts.get(v, 0) + 1
            for o in r.get("outputs", {}).values():
                ulp = max(ulp, int(o.get("max_ulp", 0) or 0))
    return cases, ", ".join(f"{v} {n}" for v, n in sorted(counts.items())), ulp


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", action="store_true", help="compare NAME.json of two folders, one row each")
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("names", nargs="*")
    ap.add_argument("--ignore", action="append", default=[], metavar="KEY",
                    help="leave out fields named KEY wherever they occur (repeatable)")
    args = ap.parse_args(argv)
    ignore = frozenset(args.ignore)
    if not args.table:
        with open(args.a) as fa, open(args.b) as fb:
            d = first_difference(json.load(fa), json.load(fb), ignore=ignore)
        print("identical" if d is None else f"differ at {d}")
        return 0 if d is None else 1
    names = args.names or sorted(n[:-5] for n in os.listdir(args.a) if n.endswith(".json"))
    print("| file | cases | verdicts (outputs) | max ULP | before vs after |")
    print("| --- | --- | --- | --- | --- |")
    same = True
    for name in names:
        pa, pb = os.path.join(args.a, name + ".json"), os.path.join(args.b, name + ".json")
        if not (os.path.exists(pa) and os.path.exists(pb)):
            missing = [p for p in (pa, pb) if not os.path.exists(p)]
            print(f"| {name}.py | – | – | – | not compared: no results document from {', '.join(missing)} |")
            same = False
            continue
        with open(pa) as fa, open(pb) as fb:
            a, b = json.load(fa), json.load(fb)
        d = first_difference(a, b, ignore=ignore)
        cases, verdicts, ulp = summary(b)
        print(f"| {name}.py | {cases} | {verdicts} | {ulp} | {'identical' if d is None else 'differ at ' + d} |")
        same = same and d is None
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
