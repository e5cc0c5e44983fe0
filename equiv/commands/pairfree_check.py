"""``equiv check --source PATH[:ENTRY] [--pre-rev A --retiled-rev B] --pair-free``: a model
file checked against itself at two revisions, nothing registered (docs/pypto-lib.md)."""

from __future__ import annotations

import argparse
import os
import shlex
from typing import Any

from equiv.errors import PairFreeError, ShapeError, SourceError, UsageError
from equiv.commands.outputs import write_results
from equiv.commands.common import request_from
from equiv.pair import BIT_EXACT
from equiv.progress import Progress
from equiv.source.ref import SourceRef
from equiv.source.assignments import parse_assignments
from equiv.summary import render, wrap
from equiv.commands.source_check import _inside_git, infer_pair_name, parse_contract


def wants_pair_free(args: argparse.Namespace) -> bool:
    """--pair-free, --model, a --source without :ENTRY, or a file no registered pair matches."""
    if args.pair_free or args.model:
        return True
    if args.name or args.pair_file or args.reference or args.inputs or args.pre_source or args.retiled_source:
        return False
    if not args.source:
        return False
    path, sep, entry = args.source.rpartition(":")
    if not sep or not entry.isidentifier():
        return True
    try:
        infer_pair_name(SourceRef.parse(args.source, repo=args.repo))
    except (UsageError, SourceError):
        return True
    return False


def pair_free_command(args: argparse.Namespace, path: str, entry: str | None) -> str:
    """The repro prefix of a pair-free check."""
    parts = ["equiv", "check", "--source", f"{path}:{entry}" if entry else path]
    for opt in ("pre_rev", "retiled_rev", "repo", "model", "contract"):
        v = getattr(args, opt, None)
        if v is not None:
            parts += [f"--{opt.replace('_', '-')}", v]
    parts.append("--pair-free")
    for c in args.config or ():
        parts += ["--config", c]
    return " ".join(shlex.quote(p) for p in parts)


def _head_vs_working_tree(args: argparse.Namespace, repo: str, path: str) -> tuple[str, str, str]:
    """No revisions given: the file at HEAD is pre, the file in the working tree retiled (what
    an engineer has changed and not committed). (repo, repo-relative path, what was chosen)."""
    from equiv import git

    top = git.answer(repo, "rev-parse", "--show-toplevel")
    if top is None:
        return repo, path, f"{repo} is not a git repository: {path} is checked against itself"
    root = top.strip()
    full = os.path.abspath(os.path.join(repo, path) if args.repo else path)
    rel = os.path.relpath(full, root)
    if not git.succeeds(root, "cat-file", "-e", f"HEAD:{rel}"):
        return root, rel, f"{rel} is not committed at HEAD: it is checked against itself (working tree)"
    args.pre_rev = "HEAD"
    return root, rel, (f"no revisions given: pre = {rel} at HEAD, retiled = {rel} in the working tree "
                       f"(--pre-rev/--retiled-rev choose others)")


def run_pair_free(args: argparse.Namespace) -> int:
    """``equiv check --source PATH[:ENTRY] --pre-rev A --retiled-rev B --pair-free``."""
    from equiv.pairfree import run as pf

    if not args.source:
        raise UsageError("--pair-free needs --source PATH[:ENTRY] (with --pre-rev/--retiled-rev)")
    if args.bind or args.pair_file or args.reference or args.inputs or args.pre_source or args.retiled_source:
        raise UsageError("--pair-free takes its entry, inputs, reference and shapes from the file: drop "
                         "--bind/--pair-file/--reference/--inputs/--pre-source/--retiled-source")
    if args.examples is not None and args.examples < 0:
        raise UsageError("--examples must be ≥ 0")
    path, sep, entry = args.source.rpartition(":")
    if not sep or not entry.isidentifier():
        path, entry = args.source, None
    repo = args.repo or "."
    if (args.pre_rev or args.retiled_rev) and not _inside_git(repo):
        raise UsageError(f"{repo} is not a git repository; give --repo PATH")
    if not (args.pre_rev or args.retiled_rev):
        repo, path, note = _head_vs_working_tree(args, repo, path)
        print(f"note: {note}")
    try:
        config = parse_assignments(args.config, "--config")
        contract = parse_contract(args.contract) if args.contract else BIT_EXACT
    except SourceError as exc:
        raise UsageError(str(exc)) from None
    progress = Progress()

    def log(line: str) -> None:
        progress.clear()
        print(line, flush=True)

    def shown(pair: Any, eo: Any) -> None:
        progress.clear()
        print("\n".join(wrap(pair.description)))
        print(render(eo.result))
        print(pf.outcome_line(eo), flush=True)
        print()

    try:
        target = pf.FileTarget(path, args.pre_rev, args.retiled_rev, repo, entry=entry, model=args.model,
                               config=config)
        request = request_from(args, fixed=None, contract=contract, contract_given=bool(args.contract),
                               progress=progress, log=log, keep_runs=bool(getattr(args, "save_cases", None)))
        outcome = pf.check_file(target, request, on_pair=shown, command=lambda e: pair_free_command(args, path, e))
    except (PairFreeError, SourceError) as exc:
        raise UsageError(str(exc)) from None
    except (ShapeError, ValueError, KeyError) as exc:
        raise UsageError(f"{path}: {exc}") from None
    progress.clear()
    one_revision = outcome.pre.identity() == outcome.retiled.identity()
    results = [e.result for e in outcome.entries if e.result is not None]
    write_results([r.to_dict() for r in results], args.json, args.report if results else None)
    if getattr(args, "save_cases", None):
        from equiv import cases

        for e in outcome.entries:
            if e.result is not None:
                cases.save_results(e.pair, e.result, args.save_cases)
    for note in outcome.notes:
        print(f"note: {note}")
    for e in outcome.entries:
        if e.result is None:
            print(pf.outcome_line(e))
    # Every defect of either side, shared ones included: an entry with defects is never just "equivalent".
    from equiv.pairfree.gate import defect_lines

    found = {e.entry: defect_lines(e.result, "pre", "pre") + defect_lines(e.result, "retiled", "retiled")
             for e in outcome.entries if e.result is not None and e.outcome in ("equivalent", "both-defect",
                                                                                "pre-defect")}
    if one_revision:
        found = {k: [line.removeprefix("retiled: ") for line in v if line.startswith("retiled: ")]
                 for k, v in found.items()}
    found = {k: v for k, v in found.items() if v}
    for name, lines in found.items():
        print(f"{name}: DEFECTS FOUND" + (" (one revision on both sides)" if one_revision else ""))
        for line in lines:
            print(f"    {line}")
    word = "defects found" if found and outcome.outcome in ("equivalent", "both-defect", "pre-defect") \
        else outcome.outcome
    print(f"result: {word.upper()} — {outcome.pre.label} vs {outcome.retiled.label}: "
          + ", ".join(f"{e.entry} {'defects found' if e.entry in found else e.outcome}" for e in outcome.entries))
    if found and args.strict and outcome.exit_code == 0:
        return 1
    return outcome.exit_code
