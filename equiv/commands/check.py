"""``equiv check NAME|--all --shapes ...``: check pairs and print verdicts."""

from __future__ import annotations

import argparse
import shlex
import sys

from equiv import registry
from equiv.check import CheckResult, check
from equiv.cli import UsageError
from equiv.commands import source_check
from equiv.commands.common import (add_run_options, fixed_from, options_from, resolve_pair, write_json_atomic,
                                   write_text_atomic)
from equiv.progress import Progress
from equiv.shapes import ShapeError
from equiv.summary import render, render_summary


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="check kernel pairs for numerical equivalence",
                       description="Run pre, retiled and the float64 reference over shapes and print the "
                                   "verdict per output. Exit 1 on a regression.")
    p.add_argument("name", nargs="?", help="pair name (see `equiv list`)")
    p.add_argument("--all", action="store_true", help="check every registered pair")
    p.add_argument("--shapes", default="nominal",
                   help="nominal | presets (all named presets) | fuzz | demo | flash | pro | a literal shape like 'T=10,D=256' "
                        "(several separated by ';'). Default: nominal")
    p.add_argument("--examples", type=int, default=None,
                   help="fuzz: cases drawn beyond the presets (default 30); explicit shapes: seeds per shape")
    p.add_argument("--seed", type=int, default=0, help="seed of the fuzzer and of the inputs (default 0)")
    p.add_argument("--recipe", action="append", default=None,
                   help="input recipe(s) to use (repeatable; default: all the pair has)")
    p.add_argument("--json", metavar="PATH", help="also write the full results as JSON")
    p.add_argument("--report", metavar="PATH", help="also write a self-contained HTML report")
    p.add_argument("--markdown", metavar="PATH", help="also write a Markdown verdict document (claim by claim)")
    p.add_argument("--title", default="Verdict", help="heading of the --markdown document")
    p.add_argument("--save-cases", nargs="?", const="reports/cases", default=None, metavar="DIR",
                   help="save every non-equivalent case (inputs included) for `equiv replay` "
                        "(default DIR: reports/cases)")
    add_run_options(p)
    source_check.add_arguments(p)  # source mode: --source PATH:ENTRY --pre-rev/--retiled-rev ...
    p.set_defaults(func=run)


def run_checks(names: list[str], args: argparse.Namespace, progress: Progress) -> list[CheckResult]:
    options = options_from(args)
    results = []
    for name in names:
        pair = resolve_pair(name)
        if args.examples is not None and args.examples < 0:
            raise UsageError("--examples must be ≥ 0")
        try:
            results.append(check(pair, shapes=args.shapes, examples=args.examples, seed=args.seed,
                                 options=options, recipes=args.recipe, fixed=fixed_from(args), progress=progress))
        except (ShapeError, ValueError, KeyError) as exc:
            raise UsageError(f"{name}: {exc}") from None
        progress.clear()
    return results


def run(args: argparse.Namespace) -> int:
    if source_check.wants_source(args):
        return source_check.run(args)
    if args.all == bool(args.name):
        raise UsageError("give one pair name or --all (see `equiv list`)")
    names = registry.names() if args.all else [args.name]
    if not args.all:
        resolve_pair(args.name)
    progress = Progress()
    results = run_checks(names, args, progress)
    for r in results:
        print(render(r))
        print()
    if len(results) > 1:
        print(render_summary(results))
        print()
    if args.json:
        write_json_atomic(args.json, {"checks": [r.to_dict() for r in results]})
        print(f"results written to {args.json}", file=sys.stderr)
    if args.save_cases:
        from equiv import cases

        saved = [p for r in results for p in cases.save_results(resolve_pair(r.pair), r, args.save_cases)]
        print(f"{len(saved)} non-equivalent case{'s' if len(saved) != 1 else ''} saved under {args.save_cases}"
              + (f" (replay with: equiv replay {saved[0]})" if saved else ""), file=sys.stderr)
    if args.markdown:
        from equiv.markdown import render_markdown

        command = "equiv " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        write_text_atomic(args.markdown, render_markdown(results, command, args.title))
        print(f"verdict document written to {args.markdown}", file=sys.stderr)
    if args.report:
        from equiv import report

        report.write_report([r.to_dict() for r in results], args.report)
        print(f"report written to {args.report}", file=sys.stderr)
    return 1 if any(r.regressions for r in results) else 0
