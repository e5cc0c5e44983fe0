"""``equiv gate [--base REF]``: check the pairs a change touches; JUnit XML, HTML report, exit code.

Exit 0 when no selected pair regresses (or nothing is selected), 1 on a ``regression`` or a
narrowed contract (the failing pairs are named), 2 on a usage error such as an unknown ref.
"""

from __future__ import annotations

import argparse
import sys
import time

from equiv.errors import GateError, UsageError

DEFAULT_REPORT = "reports/equiv-gate.html"
DEFAULT_CASES = "reports/cases"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gate", help="pull-request gate: the model files a branch reaches (or the pairs it touches)",
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
                   help="model files: seconds for the whole pull request, entries run cheapest first, the "
                        "rest listed as not checked (default 1800, pypto-lib's PR CI job); registered "
                        "pairs: per pair (default 300); no new case starts once spent")
    p.add_argument("--shard", metavar="K/N", default=None,
                   help="run only shard K of N: of the selected pairs' cases (stable hash per case), or, "
                        "gating a repository of model files, of the entries to run (balanced by estimated "
                        "cost); "
                        "merge the shards' --json files with `equiv report`")
    p.add_argument("--device", default="cpu", help="torch device to emulate on: cpu (default) or cuda")
    p.add_argument("--schedules", type=int, default=2, metavar="K",
                   help="schedules per version and case; an output whose bits differ between them is "
                        "nondeterministic (default 2; 1 turns the check off)")
    g = p.add_argument_group(
        "model files (pair-free)", "gate a repository of model files such as pypto-lib with nothing registered "
        "(docs/pypto-lib.md): used when --repo (or the current directory's repository) is not equiv's own")
    g.add_argument("--repo", metavar="PATH", help="git repository whose changes to gate (default: the repository "
                                                  "of the current directory)")
    g.add_argument("--head", metavar="REV", default=None,
                   help="the revision to gate (default: the working tree, uncommitted and untracked files "
                        "included; HEAD in a bare repository); give it in CI")
    g.add_argument("--pair-free", action="store_true", help="gate model files pair-free even in equiv's repository")
    g.add_argument("--dry-run", action="store_true",
                   help="list the files (and why each is selected), entries unchanged or to run, shapes and "
                        "estimated cost; runs no kernel, golden or input building")
    g.add_argument("--model", metavar="NAME", help="config instance whose sizes the files see (FLASH, PRO, DEMO)")
    g.add_argument("--config", action="append", metavar="KEY=VALUE", help="config override (repeatable)")
    g.add_argument("--recipe", action="append", default=None,
                   help="input recipe(s) (repeatable; default: realistic and every adversarial recipe the "
                        "file's inputs take)")
    g.add_argument("--shapes", default="nominal",
                   help="shape policy: nominal (every mode at the file's defaults, default) or fuzz")
    p.set_defaults(func=run)


def _pair_free(args: argparse.Namespace) -> bool:
    """Gate model files pair-free: asked to, or the current repository is not an equiv checkout
    (no ``equiv/pair.py``: its changes are model files, not registered pairs)."""
    import os

    from equiv.pairfree import gate as pfg

    if args.pair_free or args.repo or args.head or args.dry_run:
        return True
    try:
        root = pfg.repo_root(".")
    except GateError:
        return False
    return not os.path.isfile(os.path.join(root, "equiv", "pair.py"))


def _has_work_tree(repo: str) -> bool:
    from equiv import git

    return (git.answer(repo, "rev-parse", "--is-inside-work-tree") or "").strip() == "true"


def run_pair_free(args: argparse.Namespace) -> int:
    """``equiv gate --repo R --base REV [--head REV]`` over the model files the change touches."""
    from equiv.commands.common import check_output_paths, options_from
    from equiv.commands.outputs import write_results
    from equiv.pairfree import gate as pfg
    from equiv.pairfree.budget import run_gate
    from equiv.summary import own_contract_text
    from equiv.progress import Progress
    from equiv.errors import SourceError
    from equiv.source.assignments import parse_assignments

    started = time.perf_counter()  # the budget is for the whole gate: selection and planning count
    if args.dry_run:
        args.report = args.junit = args.json = None  # a dry run writes nothing
    elif args.report == DEFAULT_REPORT:
        import os

        os.makedirs(os.path.dirname(DEFAULT_REPORT), exist_ok=True)  # the default place, in any repository
    check_output_paths({"--junit": args.junit, "--report": args.report, "--json": args.json})
    if args.examples is not None and args.examples < 0:
        raise UsageError("--examples must be ≥ 0")
    if args.time_budget is not None and args.time_budget <= 0:
        raise UsageError("--time-budget must be > 0")
    try:
        repo = pfg.repo_root(args.repo or ".")
        base = pfg.resolve(repo, args.base)
        # No --head: the working tree is head (what the engineer is about to push), where there is one.
        head = pfg.resolve(repo, args.head) if args.head else (
            None if _has_work_tree(repo) else pfg.resolve(repo, "HEAD"))
        config = parse_assignments(args.config, "--config")
    except (GateError, SourceError) as exc:
        raise UsageError(str(exc)) from None
    policy = pfg.Policy(shapes=args.shapes, examples=args.examples, model=args.model, config=config,
                        recipes=tuple(args.recipe) if getattr(args, "recipe", None) else None,
                        time_budget=args.time_budget or pfg.POLICY.time_budget)
    try:
        changes = pfg.changed_model_files(repo, base, head) if not args.files else [
            pfg.Change(f, f, "M") for f in args.files]
    except GateError as exc:
        raise UsageError(str(exc)) from None
    from equiv.pairfree import plan as planning

    planned = planning.plan_changes(repo, base, head, changes, pfg.overrides(policy), not policy.model).entries
    if getattr(args, "shard", None) is not None:
        # Entries to run are the unit of work: balanced by estimated cost, the same on every machine.
        from equiv.commands.check import shard_from

        k, n = shard_from(args)
        mine = {p.key for p in planning.shard(planned, k, n)}
        planned = [p for p in planned if p.key in mine or (p.unchanged and k == 1)]
        changes = [c for c in changes if any(p.file == c.head_path for p in planned)]
    where = f"{args.head} ({head[:8]})" if head else "the working tree (uncommitted and untracked files included)"
    print(f"equiv gate: {repo}: model files reached from {args.base} ({base[:8]}) to {where}: {len(changes)}")
    for c in changes:
        print(f"  {c.label}" + ("" if c.why == "changed" else f" ({c.why})"))
    if args.dry_run:
        print("\n".join(pfg.dry_run(repo, base, head, changes, policy, planned)))
        return 0
    print(f"policy: {policy.describe()}; selection and planning took {time.perf_counter() - started:.0f} s of it")
    progress = Progress()

    def log(line: str) -> None:
        progress.clear()
        print(line, flush=True)

    result = run_gate(repo, base, head, changes, policy, options_from(args), progress, log, planned,
                          started=started)
    progress.clear()
    if args.junit:
        from equiv.gate import write_junit

        write_junit(pfg.junit_xml(result), args.junit)
        print(f"JUnit XML written to {args.junit}", file=sys.stderr)
    checks = [r.to_dict() for r in result.results()]
    write_results(checks, args.json, args.report if checks else None, gate=result.to_dict())
    for e in result.entries:
        print(f"{e.outcome.upper():13} {e.file}:{e.entry}" + (f" ({e.seconds:.0f} s)" if e.seconds else ""))
        for reason in e.reasons[:8]:
            print(f"    {reason}")
        for line in own_contract_text(e.head):
            print(f"    {line}")
        if e.defects:
            print(f"    defects ({len(e.defects)}, of either side, shared ones included):")
            for line in e.defects:
                print(f"      {line}")
    for f, why in result.errors.items():
        print(f"{'CANNOT CHECK':13} {f}: {why}")
    word = result.word
    n = len(result.entries)
    # the headline counts every entry that did not pass on its merits
    tally = {o: sum(e.outcome == o for e in result.entries)
             for o in ("unchanged", "skipped", "cannot judge", "not checked")}
    print(f"gate: {word} — {n} entr{'y' if n == 1 else 'ies'} in {len(changes)} file{'s' if len(changes) != 1 else ''}"
          + "".join(f", {v} {k}" for k, v in tally.items() if v)
          + (f"; failing: {', '.join(f'{e.file}:{e.entry}' for e in result.entries if e.outcome == 'fail')}"
             if result.exit_code == 1 else ""))
    return result.exit_code


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from equiv import registry
    from equiv import gate
    from equiv.commands.common import check_output_paths, options_from
    from equiv.commands.outputs import write_results
    from equiv.progress import Progress

    if _pair_free(args):
        return run_pair_free(args)
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
        except GateError as exc:
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
    write_results([r.to_dict() for r in result.results], args.json, args.report if selection.pairs else None)
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

