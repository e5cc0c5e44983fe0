"""``equiv coverage --repo R [--rev REV] [PATH...]``: the DSL names and forms a repository's
kernel files use, and whether the emulator covers each (see `equiv.coverage`)."""

from __future__ import annotations

import argparse
import json

from equiv.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("coverage", help="census of the PyPTO DSL a repository uses vs. what the emulator covers",
                       description="Parse the kernel files under PATH (default: models) and list every "
                                   "pl.* / pld.* name, keyword and form they use with its count and whether "
                                   "the emulator covers it. Exit 1 while any is missing.",
                       epilog="examples:\n"
                              "  equiv coverage --repo ~/pypto-lib --rev main models\n"
                              "  equiv coverage --repo ~/pypto-lib --rev main --since 2026-06-01 models\n"
                              "  equiv coverage --repo ~/pypto-lib --rev main --since 2026-06-01 --weekly --missing",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", metavar="PATH", help="files or directories in the repository (default: models)")
    p.add_argument("--repo", default=".", help="the repository (default: the current directory)")
    p.add_argument("--rev", default=None, help="read the files at this git revision (default: the working tree)")
    p.add_argument("--since", metavar="DATE", default=None,
                   help="every first-parent revision of --rev (default HEAD) since DATE (YYYY-MM-DD): one line "
                        "per revision, then the census over their union (what the exit code counts)")
    p.add_argument("--weekly", action="store_true", help="with --since: only the last revision of each week")
    p.add_argument("--missing", action="store_true", help="list only the names the emulator does not cover")
    p.add_argument("--json", action="store_true", help="print the census as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from equiv.errors import CoverageError
    from equiv.coverage import coverage

    if args.weekly and not args.since:
        raise UsageError("--weekly needs --since DATE")
    if args.since:
        return _since(args)
    try:
        result = coverage(args.repo, args.rev, args.paths or ["models"])
    except CoverageError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        data = result.to_dict()
        if args.missing:
            data["names"] = [n for n in data["names"] if not n["covered"]]
        print(json.dumps(data, indent=1))
    else:
        print(result.render(missing_only=args.missing))
    return 0 if result.complete else 1


def _since(args: argparse.Namespace) -> int:
    from equiv.errors import CoverageError
    from equiv.coverage_history import history

    try:
        found = history(args.repo, args.since, args.paths or ["models"], args.rev or "HEAD", args.weekly)
    except CoverageError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        data = found.to_dict()
        if args.missing:
            data["union"]["names"] = [n for n in data["union"]["names"] if not n["covered"]]
        print(json.dumps(data, indent=1))
    else:
        print(found.render(missing_only=args.missing))
    return 0 if found.complete else 1
