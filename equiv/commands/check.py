"""``equiv check NAME|--all --shapes ...``: check pairs and print verdicts."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Callable

from equiv import registry
from equiv.results import CheckResult
from equiv.check import check
from equiv.errors import ShapeError, UsageError
from equiv.commands import pairfree_check, source_check
from equiv.commands.outputs import write_results
from equiv.commands.common import (add_run_options, check_output_paths, fixed_from, request_from, resolve_pair,
                                   write_text_atomic)
from equiv.progress import Progress
from equiv.summary import render, render_summary, status_line, wrap


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="check a model file (HEAD against the working tree) or registered pairs",
                       description="Run pre, retiled and the float64 reference over shapes and print the "
                                   "verdict per output. Exit 1 on a regression or a narrowed contract "
                                   "(a shape retiled rejects that pre accepts; `equiv gate` applies the same rule).")
    p.add_argument("name", nargs="?", help="a model file (path/to/file.py[:ENTRY]: HEAD against the working tree, "
                                           "as --source) or a registered pair name (see `equiv list`)")
    p.add_argument("--all", action="store_true", help="check every registered pair")
    p.add_argument("--shapes", "--shape", dest="shapes", default="nominal",
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
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="run each pair's planned cases in N worker processes (default 1; results are "
                        "the same, in the same order)")
    p.add_argument("--shard", metavar="K/N", default=None,
                   help="run only shard K of N (1-based): a stable hash of each planned case picks its shard, "
                        "so N machines together run exactly the unsharded cases; merge their --json files "
                        "with `equiv report a.json b.json ...`")
    add_run_options(p)
    source_check.add_arguments(p)  # source mode: --source PATH:ENTRY --pre-rev/--retiled-rev ...
    p.set_defaults(func=run)


def pair_recipes(pair_name: str, recipes: list[str] | None, every_pair: bool) -> tuple[list[str] | None, str | None]:
    """The --recipe values `pair_name` has, and a note when some (or all) are missing. A single
    named pair with an unknown recipe is a usage error (raised by `plan`); under --all a pair that
    lacks a recipe runs the ones it has, or is skipped."""
    if not recipes or not every_pair:
        return recipes, None
    has = list(resolve_pair(pair_name).recipes)
    kept = [r for r in recipes if r in has]
    missing = [r for r in recipes if r not in has]
    if not missing:
        return kept, None
    if not kept:
        return [], f"{pair_name} skipped: it has no input recipe {', '.join(missing)} (it has {', '.join(has)})"
    return kept, f"{pair_name}: no input recipe {', '.join(missing)}; running {', '.join(kept)}"


def preflight(names: list[str], args: argparse.Namespace) -> dict[str, list[str] | None]:
    """Everything that can be refused before a case runs: pairs, recipes, shapes, examples.
    Returns pair -> recipes to run (pairs to skip are left out, with a note on stderr)."""
    from equiv.check import plan

    if args.examples is not None and args.examples < 0:
        raise UsageError("--examples must be ≥ 0")
    if getattr(args, "jobs", 1) < 1:
        raise UsageError(f"--jobs {args.jobs}: must be ≥ 1 (worker processes per pair)")
    plans: dict[str, list[str] | None] = {}
    notes: list[str] = []
    for name in names:
        pair = resolve_pair(name)
        recipes, note = pair_recipes(name, args.recipe, args.all)
        if note:
            notes.append(note)
        if recipes == []:
            continue
        if args.shapes != "fuzz":  # fuzz plans draw with Hypothesis: left to the check itself
            try:
                plan(pair, args.shapes, args.examples, args.seed, recipes, fixed_from(args))
            except (ShapeError, ValueError, KeyError) as exc:
                raise UsageError(f"{name}: {exc}") from None
        plans[name] = recipes
    if not plans:
        raise UsageError(f"no pair has input recipe {', '.join(args.recipe or [])}")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return plans


def run_checks(names: list[str], args: argparse.Namespace, progress: Progress,
               on_result: Callable[[CheckResult], None] | None = None) -> list[CheckResult]:
    plans = preflight(names, args)
    shard = shard_from(args)
    request = request_from(args, progress=progress, keep_runs=bool(args.save_cases), shard=shard, jobs=args.jobs)
    results = []
    for name, recipes in plans.items():
        pair = resolve_pair(name)
        try:
            result = check(pair, request.replace(recipes=recipes), lookup=registry.get)
        except (ShapeError, ValueError, KeyError) as exc:
            raise UsageError(f"{name}: {exc}") from None
        progress.clear()
        if shard is not None and not result.results:
            print(f"note: {name}: no case falls in shard {shard[0]}/{shard[1]}", file=sys.stderr)
            continue  # an empty check is not a result (`equiv report` refuses it)
        results.append(result)
        if on_result:
            on_result(result)
    return results


def shard_from(args: argparse.Namespace) -> tuple[int, int] | None:
    """``--shard K/N`` as (K, N), or None; a malformed value is a usage error."""
    from equiv.check import parse_shard

    text = getattr(args, "shard", None)
    if text is None:
        return None
    try:
        return parse_shard(text)
    except ValueError as exc:
        raise UsageError(f"--shard: {exc}") from None


def output_paths(args: argparse.Namespace) -> None:
    """Refuse unwritable output paths before anything runs (exit 2, nothing created)."""
    check_output_paths({"--json": args.json, "--report": args.report, "--markdown": args.markdown,
                        "--save-cases": args.save_cases}, directories=("--save-cases",))


def write_outputs(results: list[CheckResult], args: argparse.Namespace) -> None:
    write_results([r.to_dict() for r in results], args.json, args.report)
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


def _print_decisions(result: CheckResult) -> None:
    """Decision coverage: sites with an outcome no case produced (compact; see --json/--report)."""
    from equiv.observe.decisions import lines

    body = lines(result.decisions)
    if body:
        print("decision coverage:")
        for line in body:
            stripped = line.lstrip(" ")
            indent = line[: len(line) - len(stripped)]
            print("\n".join(wrap(stripped, indent=indent)))


def run(args: argparse.Namespace) -> int:
    output_paths(args)
    shard_from(args)  # refused before anything runs
    if args.name and not args.source and args.name.rpartition(":")[0 if ":" in args.name else 2].endswith(".py"):
        # `equiv check models/x.py[:entry]`: a model file, as a pypto-lib engineer types it first.
        args.source, args.name = args.name, None
    if source_check.wants_source(args):
        if args.all:
            raise UsageError("source mode checks one pair; drop --all")
        if pairfree_check.wants_pair_free(args):
            return pairfree_check.run_pair_free(args)
        return source_check.run(args)
    if args.all == bool(args.name):
        raise UsageError("give one pair name or --all (see `equiv list`)")
    names = registry.names() if args.all else [args.name]
    if not args.all:
        resolve_pair(args.name)
    progress = Progress()

    def stream(result: CheckResult) -> None:
        # under --all each pair's verdicts are printed as soon as it finishes
        print(render(result, with_status=False))
        _print_decisions(result)
        print(f"{result.pair}: " + status_line([result]).removeprefix("result: "))
        print(flush=True)

    results = run_checks(names, args, progress, on_result=stream if args.all else None)
    write_outputs(results, args)  # files first: a reader that stops reading cannot lose them
    if not results:  # only under --shard: every planned case belongs to other shards
        print(f"result: no case falls in shard {args.shard}; nothing run")
        return 0
    if not args.all:
        print(render(results[0]))
        _print_decisions(results[0])
    else:
        print(render_summary(results))
        print()
        print(status_line(results))
    if any(r.failed for r in results):
        return 1
    unjudged = [r for r in results if r.unjudged]
    if unjudged:
        # The emulator lacks an op or form the kernels use: nothing was decided (exit 2).
        for r in unjudged:
            for gap in r.gaps():
                print(f"equiv check: {r.pair}: {gap}", file=sys.stderr)
        return 2
    return 0
