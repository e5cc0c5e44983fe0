"""``equiv gate [--base REF]``: check the pairs a change touches; JUnit XML, HTML report, exit code.

Exit 0 when no selected pair regresses (or nothing is selected), 1 on a ``regression`` or a
narrowed contract (the failing pairs are named), 2 on a usage error such as an unknown ref.
"""

from __future__ import annotations

import argparse
import sys

from equiv.cli import UsageError

DEFAULT_REPORT = "reports/equiv-gate.html"
DEFAULT_CASES = "reports/cases"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gate", help="pull-request gate: check the pairs changed files touch",
                       description="Map the files changed since --base (committed, uncommitted and untracked) "
                                   "to the kernel pairs whose sources cover them (a harness change selects "
                                   "every pair, documentation none), check those pairs with a bounded CI "
                                   "profile, write JUnit XML and the HTML report, save failing cases. Exit 1 "
                                   "on a regression or a narrowed contract.")
    p.add_argument("--base", default="origin/main", help="the ref to diff against (default origin/main)")
    p.add_argument("--files", nargs="+", metavar="PATH",
                   help="use these repo-relative paths as the changed files instead of asking git")
    p.add_argument("--junit", metavar="PATH", help="write JUnit XML here (one testcase per pair × output)")
    p.add_argument("--report", default=DEFAULT_REPORT, metavar="PATH",
                   help=f"HTML report (default {DEFAULT_REPORT}; '' to skip)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON (input of `equiv report`)")
    p.add_argument("--cases-dir", default=DEFAULT_CASES, metavar="DIR",
                   help=f"save non-equivalent cases here for `equiv replay` (default {DEFAULT_CASES}; '' to skip)")
    p.add_argument("--examples", type=int, default=None, help="fuzz cases per pair beyond the presets (default 3)")
    p.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help="per-pair time budget; no new case starts once spent (default 300)")
    p.add_argument("--shard", metavar="K/N", default=None,
                   help="run only shard K of N of the selected cases (stable hash per case); merge the shards' "
                        "--json files with `equiv report`")
    p.add_argument("--device", default="cpu", help="torch device to emulate on: cpu (default) or cuda")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from equiv import gate, registry
    from equiv.commands.common import check_output_paths, options_from, results_document, write_json_atomic
    from equiv.progress import Progress

    options = options_from(args)
    check_output_paths({"--junit": args.junit, "--report": args.report, "--json": args.json,
                        "--cases-dir": args.cases_dir}, directories=("--cases-dir",))
    profile = gate.CI
    if args.examples is not None:
        if args.examples < 0:
            raise UsageError("--examples must be ≥ 0")
        profile = dataclasses.replace(profile, fuzz_examples=args.examples)
    if getattr(args, "shard", None) is not None:
        from equiv.commands.check import shard_from

        profile = dataclasses.replace(profile, shard=shard_from(args))
    if args.time_budget is not None:
        if args.time_budget <= 0:
            raise UsageError("--time-budget must be > 0")
        profile = dataclasses.replace(profile, time_budget=args.time_budget)

    if args.files:
        changed = list(args.files)
        where = "the given files"
    else:
        try:
            changed = gate.changed_files(args.base)
        except gate.GateError as exc:
            raise UsageError(str(exc)) from None
        where = f"{args.base}...HEAD and the working tree"
    pairs = {p.name: p for p in registry.all_pairs()}
    selection = gate.select(changed, list(pairs.values()))
    print(f"equiv gate: changes in {where}")
    print(selection.explain())
    progress = Progress()

    def log(line: str) -> None:
        progress.clear()
        print(line, flush=True)

    result = gate.run_gate(selection, pairs, profile, options, cases_dir=args.cases_dir or None,
                           progress=progress, log=log)
    progress.clear()
    if args.junit:
        gate.write_junit(gate.junit_xml(result.results, result.saved, result.errors), args.junit)
        print(f"JUnit XML written to {args.junit}", file=sys.stderr)
    if args.json:
        write_json_atomic(args.json, results_document([r.to_dict() for r in result.results]))
        print(f"results written to {args.json}", file=sys.stderr)
    if args.report and selection.pairs:
        from equiv import report

        report.write_report([r.to_dict() for r in result.results], args.report)
        print(f"report written to {args.report}", file=sys.stderr)
    n_saved = sum(len(v) for v in result.saved.values())
    if n_saved:
        print(f"{n_saved} non-equivalent case{'s' if n_saved != 1 else ''} saved under {args.cases_dir} "
              f"(equiv replay {args.cases_dir})", file=sys.stderr)
    if not selection.pairs:
        print("gate: PASS — nothing to check")
        return 0
    failing = result.failing
    if failing:
        print(f"gate: FAIL — {len(failing)} of {len(selection.pairs)} pair{'s' if len(selection.pairs) != 1 else ''} "
              f"{'fails' if len(failing) == 1 else 'fail'}: " + "; ".join(f"{k} ({v})" for k, v in failing.items()))
        for r in result.results:
            if r.pair in failing:
                for res in r.regressions[:3]:
                    print(f"  repro: {res.repro()}")
        return 1
    print(f"gate: PASS — {len(selection.pairs)} pair{'s' if len(selection.pairs) != 1 else ''} checked, "
          f"no regression")
    return 0
